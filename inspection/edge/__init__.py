"""The edge consumer as named stages: source → prepare → infer → persist, wired by `pipeline.EdgePipeline`."""

from .pipeline import EdgePipeline, PipelineError, create_detectors
from .stats import PipelineStats

__all__ = ["EdgePipeline", "PipelineError", "PipelineStats", "create_detectors"]
