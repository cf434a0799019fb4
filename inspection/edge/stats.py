"""`PipelineStats`: what one edge consumer has done so far (read by callers while it runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .timing import SPANS


@dataclass
class PipelineStats:
    """Counters with one writer each: the persist stage writes the frame counts, the source `commits`."""

    frames_stored: int = 0
    frames_parked: int = 0
    detections: int = 0
    cars_completed: list[Any] = field(default_factory=list)
    stage_totals_s: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in SPANS})
    commits: int = 0
    commit_s: float = 0.0  # time in offset commits (the source's thread), in all

    @property
    def frames_handled(self) -> int:
        return self.frames_stored + self.frames_parked
