"""Persist stage. The rule, in one place: every record is stored or parked; only an unavailable database stops a consumer.

`FrameWriter` is the persist stage's whole decision:

- `store(...)` writes a frame and its detections. If the store refuses the content
  (`RecordRefused`: NaN boxes, a value no column holds, a car registered with another frame count)
  the record is parked instead.
- `park(...)` writes the original record to the dead-letter topic with the error, then an error row
  on the frame's slot when the frame is known (it counts as handled toward its car), else a
  `rejected_messages` row. If the error row is refused too, the rejected row records both errors; if
  even that is refused, the dead letter alone keeps the record (logged) and the offset still moves on.

Every database write goes through one `RetryPolicy`: `StoreUnavailable` is retried with a capped
backoff and, when retries run out, raised to the caller, which stops without committing the record.
A failed dead-letter write (broker unreachable) is raised as well. Nothing else escapes.

`PersistStage` takes each record's last step (steps.py): a `Detected` frame to store or a `Parked`
record. It applies the records of one frame key in offset order (`ordering.KeyOrder`: a camera
retake at a later offset is the newer truth and wins), runs the writer on each (frames to store
are group-committed: several in one transaction, at most one record per frame key in a batch), then
marks the record's offset durable (the source commits up to it), counts it and tells the metrics, the
car's completion log line and `on_stored`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from ..detections import Detections
from ..health import Readiness
from ..kafka.offsets import OffsetTracker
from ..messages.contract import SourceRecord
from ..messages.dead_letters import DeadLetter, dead_letter_of
from ..messages.errors import error_kind
from ..metrics import PipelineMetrics
from ..store import FrameRecord, RecordRefused, ResultStore, RetryPolicy, StoredFrame, StoreUnavailable
from ..store.models import ERROR_KIND_MAX
from ..tiling import TileGrid
from .ordering import KeyOrder, frame_key
from .stats import PipelineStats
from .steps import Detected, Final, Outcome, Parked
from .timing import FrameTimings

log = logging.getLogger(__name__)

T = TypeVar("T")


class DeadLetterSink(Protocol):
    """Where parked records go: `inspection.kafka.DeadLetterProducer` (durable before it returns)."""

    def send(self, letter: DeadLetter) -> tuple[int, int]: ...


class FrameWriter:
    """Store or park each record; `run_id` and `class_names` are the consumer's."""

    def __init__(
        self,
        store: ResultStore,
        dead_letters: DeadLetterSink,
        retry: RetryPolicy,
        *,
        run_id: int | None,
        class_names: Mapping[int, str] | Sequence[str],
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.retry = retry
        self.run_id = run_id
        self.class_names = class_names

    def _write(self, write: Callable[[], T], what: str) -> T:
        try:
            return self.retry.call(write, what=f"database write of {what}")
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"database {self.store.where} failed storing {what} after {self.retry.attempts} attempt(s): {exc}"
            ) from exc

    def store_frame(self, source: SourceRecord, record: FrameRecord, detections: Detections, received_at_ns: int) -> Outcome:
        """Write the frame and its detections; park it when the store refuses the content."""
        try:
            stored = self._write(lambda: self.store.store_frame(record, detections, self.class_names), record.label)
        except RecordRefused as exc:
            log.warning("frame %s refused by the store, parking it: %s", record.label, exc)
            plain = dataclasses.replace(record, image=None, width=None, height=None)
            return self.park(source, exc, plain, received_at_ns)
        return Outcome(stored)

    def store_frames(self, items: Sequence[tuple[SourceRecord, FrameRecord, Detections, int]]) -> list[Outcome]:
        """Several frames in one transaction (group commit). When the store refuses one of them, each is
        written on its own instead, so only that one is parked."""
        if len(items) == 1:
            return [self.store_frame(*items[0])]
        try:
            stored = self._write(
                lambda: self.store.store_frames([(record, dets) for _, record, dets, _ in items], self.class_names),
                f"{len(items)} frames from {items[0][1].label}",
            )
        except RecordRefused:
            return [self.store_frame(*item) for item in items]
        return [Outcome(each) for each in stored]

    def park(self, source: SourceRecord, error: BaseException, record: FrameRecord | None, received_at_ns: int) -> Outcome:
        """Dead letter, then an error row (record known) or a rejected row; the offset may move on after."""
        kind = error_kind(error)[:ERROR_KIND_MAX]
        text = str(error) or type(error).__name__
        self.dead_letters.send(dead_letter_of(source, error, kind=kind))
        if record is not None:
            try:
                stored = self._write(lambda: self.store.store_error(record, kind, text), f"the error row of {record.label}")
                return Outcome(stored, kind, text)
            except RecordRefused as refused:
                text = f"{text}; its error row was refused too: {refused}"
        where = f"rejected record {source.topic}[{source.partition}]@{source.offset}"
        try:
            self._write(
                lambda: self.store.store_rejected(
                    source.topic or "",
                    source.partition if source.partition is not None else -1,
                    source.offset if source.offset is not None else -1,
                    source.key,
                    kind,
                    text,
                    received_at_ns,
                    run_id=self.run_id,
                ),
                where,
            )
        except RecordRefused as refused:
            log.error("%s: no row could hold it (%s); it is kept on the dead-letter topic only", where, refused)
        return Outcome(None, kind, text)


class PersistStage:
    """Store a `Detected` frame or park a `Parked` record (`FrameWriter`), then mark its offset durable and account for it.

    Group commit: with `batch_frames` > 1 a frame to store waits while more records are queued for this
    stage (`backlog()`), up to `batch_frames`, and they are written in one transaction; a frame is
    never held while the queue is empty, and `flush()` writes what is held when the stage stops.
    Offsets are marked durable only after their frame's transaction committed.

    Retake order (`order`): `KeyOrder` decides which records are ready (one waits while an earlier record
    of its frame key is still on its way); only ready frames join the batch, in the order released, and a
    second record of a key already in the batch flushes it first, so a later retake is always written
    after (and wins over) the earlier one. A parked record flushes the batch before it is written.

    `StoreUnavailable` (retries exhausted) and a failed dead-letter write propagate: the runner
    stops the consumer and the offsets of the frames held are never committed.
    """

    def __init__(
        self,
        writer: FrameWriter,
        offsets: OffsetTracker,
        grid: TileGrid,
        stats: PipelineStats,
        metrics: PipelineMetrics,
        readiness: Readiness,
        on_stored: Callable[[StoredFrame, Final], None] | None = None,
        timings: FrameTimings | None = None,
        *,
        order: KeyOrder | None = None,
        batch_frames: int = 1,
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self.writer = writer
        self.timings = timings
        self.order = order
        self.batch_frames = batch_frames
        self.backlog = backlog
        self._held: list[tuple[Detected, FrameRecord]] = []
        self.offsets = offsets
        self.grid = grid
        self.stats = stats
        self.metrics = metrics
        self.readiness = readiness
        self.on_stored = on_stored

    def __call__(self, step: Final) -> None:
        """Apply the records `KeyOrder` releases (this one, or none while an earlier record of its frame key is
        still on its way, plus later ones of the key that waited for it), batching frames to store."""
        step.clock.mark("persist_start")
        for ready in self.order.arrived(step) if self.order is not None else [step]:
            self.apply(ready)
        if self._held and (len(self._held) >= self.batch_frames or self.backlog() == 0):
            self.flush()

    def apply(self, step: Final) -> None:
        """Park a parked record, after what is held; hold a detected frame for the next batch (written at once
        without group commit). A batch holds one record per frame key: a second record of a held key (a retake)
        flushes the batch first, so the records of a key are written in the order `KeyOrder` released them."""
        if isinstance(step, Parked):
            self.flush()
            self._done(step, self.park(step))
            return
        try:
            row = self.row(step)
        except RecordRefused as exc:  # validation keeps records in bounds: the last guard, parked without a row
            self.flush()
            self._done(step, self.writer.park(step.source, exc, None, step.received_at_ns))
            return
        key = frame_key(step)
        if any(frame_key(held) == key for held, _ in self._held):
            self.flush()
        self._held.append((step, row))
        if len(self._held) >= self.batch_frames:
            self.flush()

    def flush(self) -> None:
        """Write the frames held in one transaction, then mark them durable."""
        if not self._held:
            return
        held, self._held = self._held, []
        now = time.time_ns()  # processed_at: when the frames' transaction is written, not when they were queued
        items = [
            (step.source, dataclasses.replace(row, processed_at_ns=now), step.detections, step.received_at_ns)
            for step, row in held
        ]
        for (step, _), outcome in zip(held, self.writer.store_frames(items)):
            self._done(step, outcome)

    def park(self, parked: Parked) -> Outcome:
        """Dead letter and an error row on the frame's slot (frame known and its row can be built), else a rejected row."""
        row = None
        if parked.frame is not None:
            try:
                row = self.row(parked)
            except RecordRefused:
                pass  # out of every column's range: the rejected row keeps the record, with its own reason
        return self.writer.park(parked.source, parked.error, row, parked.received_at_ns)

    def row(self, step: Final) -> FrameRecord:
        """The store's row of the step's frame: with image and size when detected, bare when parked (raises
        RecordRefused when a value no column holds)."""
        frame = step.frame
        assert frame is not None
        detected = isinstance(step, Detected)
        return FrameRecord(
            frame_id=frame.frame_id,
            captured_at_ns=frame.captured_at_ns,
            deadline_at_ns=frame.deadline_at_ns,
            received_at_ns=step.received_at_ns,
            processed_at_ns=time.time_ns(),
            run_id=self.writer.run_id,
            width=self.grid.frame_width if detected else None,
            height=self.grid.frame_height if detected else None,
            image=frame.payload if detected else None,
            kafka_topic=step.source.topic,
            kafka_partition=step.source.partition,
            kafka_offset=step.source.offset,
        )

    def _done(self, step: Final, outcome: Outcome) -> None:
        step.clock.mark("written")
        self._account(step, outcome)
        self.offsets.durable(step.tp, step.offset)
        self.readiness.progress()
        self.metrics.last_progress.set_to_current_time()
        step.clock.mark("durable")
        for stage, seconds in step.stage_s.items():
            self.stats.stage_totals_s[stage] += seconds
            self.metrics.stage_seconds.labels(stage).observe(seconds)
        if self.timings is not None:
            self.timings.add(step.frame.frame_id.car_id if step.frame is not None else "", step.clock)

    def _account(self, step: Final, outcome: Outcome) -> None:
        stored = outcome.stored
        if outcome.parked is not None:
            self.stats.frames_parked += 1
            self.metrics.frames_parked.labels(outcome.parked).inc()
        else:
            assert stored is not None and step.frame is not None
            self.stats.frames_stored += 1
            self.stats.detections += stored.detections
            self.metrics.frames_stored.inc()
            self.metrics.detections.inc(stored.detections)
            self.metrics.frame_latency.observe((time.time_ns() - step.frame.captured_at_ns) / 1e9)
        if stored is None:
            return
        if stored.completed is not None:
            done = stored.completed
            self.stats.cars_completed.append(done)
            self.metrics.cars_completed.labels("met" if done.met else "missed").inc()
            line = f"{done.describe()}: {stored.car_frames_done}/{stored.car_frames_expected} frames"
            if done.car_latency_s is not None:
                line += f", car latency {done.car_latency_s:.2f} s"
            log.log(logging.INFO if done.met else logging.WARNING, line)
        if self.on_stored is not None:
            self.on_stored(stored, step)
