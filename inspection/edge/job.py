"""`FrameJob`: one polled record on its way through the edge stages, and the stage names it is timed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..detections import Detections
from ..messages.contract import FrameMessage, SourceRecord
from .timing import SPANS, FrameClock

# Per-frame spans every job's clock yields (timing.SPANS), summed in `PipelineStats.stage_totals_s`.
STAGES = SPANS


@dataclass
class FrameJob:
    """A record as polled (`source`), its frame when the headers name one, and what each stage added.

    `error` is the input's fault (the record is parked at persist); `batch` is the prepared tile
    batch, owned by the preparer's pool until the infer stage releases it.
    """

    source: SourceRecord
    received_at_ns: int
    frame: FrameMessage | None = None
    error: BaseException | None = None
    batch: Any = None
    detections: Detections | None = None
    clock: FrameClock = field(default_factory=FrameClock)

    @property
    def stage_s(self) -> dict[str, float]:
        """Seconds of each span this job passed (see `timing.MARKS`)."""
        return self.clock.spans_s()

    @property
    def tp(self) -> tuple[str, int]:
        return (self.source.topic or "", self.source.partition if self.source.partition is not None else -1)

    @property
    def offset(self) -> int:
        return self.source.offset if self.source.offset is not None else -1

    def describe(self) -> str:
        return f"frame {self.frame.label}" if self.frame is not None else self.source.ref.describe()
