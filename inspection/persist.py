"""The rule, in one place: every record is stored or parked; only an unavailable database stops a consumer.

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
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence, TypeVar

from .detections import Detections
from .messages import DeadLetter, SourceRecord, error_kind
from .store import FrameRecord, RecordRefused, ResultStore, RetryPolicy, StoredFrame, StoreUnavailable
from .store.models import ERROR_KIND_MAX

log = logging.getLogger(__name__)

T = TypeVar("T")


class DeadLetterSink(Protocol):
    """Where parked records go: `inspection.kafka.DeadLetterProducer` (durable before it returns)."""

    def send(self, letter: DeadLetter) -> tuple[int, int]: ...


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

    def park(self, source: SourceRecord, error: BaseException, record: FrameRecord | None, received_at_ns: int) -> Outcome:
        """Dead letter, then an error row (record known) or a rejected row; the offset may move on after."""
        kind = error_kind(error)[:ERROR_KIND_MAX]
        text = str(error) or type(error).__name__
        self.dead_letters.send(source.dead_letter(error, kind=kind))
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
                    source.topic or "", source.partition if source.partition is not None else -1,
                    source.offset if source.offset is not None else -1, source.key, kind, text,
                    received_at_ns, run_id=self.run_id,
                ),
                where,
            )
        except RecordRefused as refused:
            log.error("%s: no row could hold it (%s); it is kept on the dead-letter topic only", where, refused)
        return Outcome(None, kind, text)
