"""Which offsets may be committed: only up to the highest contiguous offset whose results are durable."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

TP = tuple[str, int]


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)  # polled, not yet durable
    next_offset: int | None = None  # one past the highest offset polled
    committed: int | None = None  # the last offset committed (the next to read)


class OffsetTracker:
    """Thread-safe ledger of polled and durable offsets per partition.

    The commit point of a partition is its lowest pending offset (everything below it is durable),
    or one past the highest polled offset when nothing is pending.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._parts: dict[TP, _PartitionState] = {}

    def polled(self, tp: TP, offset: int) -> None:
        with self._lock:
            state = self._parts.setdefault(tp, _PartitionState())
            state.pending.add(offset)
            state.next_offset = max(state.next_offset or 0, offset + 1)

    def durable(self, tp: TP, offset: int) -> None:
        with self._lock:
            state = self._parts.get(tp)
            if state is not None:
                state.pending.discard(offset)
            self._lock.notify_all()

    def to_commit(self, partitions: list[TP] | None = None) -> list[TopicPartition]:
        """Commit points that moved since the last `committed` call."""
        with self._lock:
            out = []
            for tp in partitions if partitions is not None else list(self._parts):
                state = self._parts.get(tp)
                if state is None or state.next_offset is None:
                    continue
                point = min(state.pending) if state.pending else state.next_offset
                if point != state.committed:
                    out.append(TopicPartition(tp[0], tp[1], point))
            return out

    def committed(self, offsets: list[TopicPartition]) -> None:
        with self._lock:
            for tp in offsets:
                state = self._parts.get((tp.topic, tp.partition))
                if state is not None:
                    state.committed = tp.offset

    def pending(self, partitions: list[TP] | None = None) -> int:
        with self._lock:
            return self._pending_locked(partitions)

    def wait_durable(self, partitions: list[TP] | None, timeout_s: float) -> bool:
        """Block until nothing of `partitions` (all if None) is pending; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending_locked(partitions) == 0, timeout_s)

    def _pending_locked(self, partitions: list[TP] | None) -> int:
        keys = partitions if partitions is not None else list(self._parts)
        return sum(len(self._parts[k].pending) for k in keys if k in self._parts)

    def forget(self, partitions: list[TP]) -> None:
        with self._lock:
            for tp in partitions:
                self._parts.pop(tp, None)
            self._lock.notify_all()
