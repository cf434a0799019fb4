"""The edge consumer as named stages: source → prepare → infer → persist, wired by `pipeline.EdgePipeline`;
the record's path through them as typed steps (`steps`: Received → Prepared → Detected → Outcome, or Parked)."""

from .pipeline import EdgePipeline, PipelineError, create_detectors
from .stats import PipelineStats

__all__ = ["EdgePipeline", "PipelineError", "PipelineStats", "create_detectors"]
