"""The record's path through the edge as typed steps, each stage taking one and answering the next.

    Kafka record ─ source.receive ─▶ Received ─ PrepareStage ─▶ Prepared ─ InferStage ─▶ Detected ─┐
                        │                            │                                              ├─ PersistStage ─▶ Outcome
                        └──────────── Parked ◀───────┘ (the error branch: straight to persist) ─────┘

- `Received`: a record whose headers name a valid frame of the line (`validation.read_frame`).
- `Prepared`: its tiles, in a batch lent by the preparer's pool (not a copy) until the infer stage returns it.
- `Detected`: its detections in frame pixels (stitched, second look taken); the batch is back in the pool.
- `Parked`: a record refused at the source (headers, size, content type) or by decoding, with the reason.
  It skips every stage between (the runner routes it, `route`) and persist parks it: a dead letter, then
  an error row on its frame's slot (frame known) or a rejected-message row; its offset is then durable.
- `Outcome`: what persist made of it: a frame row with detections, or parked (with or without a row).
  The store may still refuse a `Detected` frame's content (NaN boxes): it is parked then, its outcome says so.

Every step carries the record as polled (`source`, for dead letters and offsets), when it was polled and
its `FrameClock` (one clock for the whole path: the stages mark it in place). Steps are frozen: a stage
makes the next step, it never fills in fields of the one it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..detections import Detections
from ..messages.contract import FrameMessage, SourceRecord
from ..store import StoredFrame
from .timing import FrameClock


@dataclass(frozen=True)
class Step:
    """What every step of one record carries. `frame` is the frame its headers name: always set but on a
    `Parked` record that names none."""

    source: SourceRecord
    received_at_ns: int
    clock: FrameClock
    frame: FrameMessage | None

    @property
    def tp(self) -> tuple[str, int]:
        return (self.source.topic or "", self.source.partition if self.source.partition is not None else -1)

    @property
    def offset(self) -> int:
        return self.source.offset if self.source.offset is not None else -1

    @property
    def stage_s(self) -> dict[str, float]:
        """Seconds of each span this record passed (see `timing.MARKS`)."""
        return self.clock.spans_s()

    def describe(self) -> str:
        return f"frame {self.frame.label}" if self.frame is not None else self.source.ref.describe()

    def parked(self, error: BaseException) -> Parked:
        """This record on the error branch: `error` is the input's fault."""
        return Parked(self.source, self.received_at_ns, self.clock, self.frame, error)


@dataclass(frozen=True)
class Received(Step):
    """A record whose headers name a valid frame of the line; its payload is still the encoded image."""

    frame: FrameMessage

    def prepared(self, batch: Any) -> Prepared:
        return Prepared(self.source, self.received_at_ns, self.clock, self.frame, batch)


@dataclass(frozen=True)
class Prepared(Step):
    """The frame's tile batch: a host array, or a device tensor when the preparer is on the GPU. Lent by the
    preparer's pool (with the GPU owner, a slot of the worker's shared slab); the infer stage returns it."""

    frame: FrameMessage
    batch: Any

    def detected(self, detections: Detections) -> Detected:
        return Detected(self.source, self.received_at_ns, self.clock, self.frame, detections)


@dataclass(frozen=True)
class Detected(Step):
    """The frame's detections in frame pixels, ready to store."""

    frame: FrameMessage
    detections: Detections


@dataclass(frozen=True)
class Parked(Step):
    """A record refused for a fault of its own (`error`), on its way to persist to be parked."""

    error: BaseException


# What persist takes: the end of the record's path either way.
Final = Detected | Parked


@dataclass(frozen=True)
class Outcome:
    """What became of one record: stored (frame row with detections), or parked with `kind`."""

    stored: StoredFrame | None  # the frame row written: detections, or the error row of a parked frame
    parked: str | None = None  # error kind of a parked record
    error: str | None = None

    @property
    def rejected(self) -> bool:
        """Parked without a frame row (a rejected-message row, or the dead letter alone)."""
        return self.parked is not None and self.stored is None


def route(step: Any) -> str | None:
    """The stage a step skips ahead to (`StageRunner`'s `route`): a parked record goes straight to persist."""
    return "persist" if isinstance(step, Parked) else None
