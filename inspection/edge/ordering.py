"""Records of one frame key are applied in offset order, whatever runs in parallel before persist.

A camera retake re-sends a frame (same car, camera and shot) with a newer image at a later offset
of the same partition; the later record is the newer truth and must be the one stored. The edge
prepares frames on several threads and detects on several detectors, so a cheap retake can reach
persist before an expensive earlier record of the same key. `KeyOrder` puts them back in order:

- the source calls `admit(step)` with each record's first step as it polls (poll order is offset
  order within a partition);
- persist calls `arrived(step)` with each record's last step (`Detected` or `Parked`) and applies the
  steps it answers, in that order: this one once every earlier admitted record of its key was applied,
  plus any later one of the key that had arrived early and waited for it.

Only records of the same key wait for each other (other keys and partitions flow on). Records that
name no frame have no key and pass straight through. A parked record of a known frame keeps its
place too: it skipped prepare and infer, so it often arrives before an earlier record of its key.
A waiting step holds its detections and payload only until its predecessor arrives; predecessors
always arrive (each admitted record reaches persist unless the chain failed, and then nothing is
committed).
"""

from __future__ import annotations

import threading
from collections import deque

from .steps import Final, Step

FrameKey = tuple[str, int, int]  # car_id, camera, shot
Ticket = tuple[str, int, int]  # topic, partition, offset


def frame_key(step: Step) -> FrameKey | None:
    if step.frame is None:
        return None
    fid = step.frame.frame_id
    return (fid.car_id, fid.camera, fid.shot)


def _ticket(step: Step) -> Ticket:
    topic, partition = step.tp
    return (topic, partition, step.offset)


class KeyOrder:
    """Per frame key, the records admitted and not yet applied, oldest first, and those that arrived early."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[FrameKey, deque[Ticket]] = {}
        self._early: dict[Ticket, list[Final]] = {}  # a list: a redelivered record may be admitted twice

    def admit(self, step: Step) -> None:
        """Record the record's place in its key's order (called in poll order)."""
        key = frame_key(step)
        if key is None:
            return
        with self._lock:
            self._pending.setdefault(key, deque()).append(_ticket(step))

    def arrived(self, step: Final) -> list[Final]:
        """The steps to apply now, in order: none while an earlier record of the key is still on its way."""
        key = frame_key(step)
        with self._lock:
            queue = self._pending.get(key) if key is not None else None
            if queue is None or _ticket(step) not in queue:
                return [step]  # no key, or never admitted (the order is not this source's)
            self._early.setdefault(_ticket(step), []).append(step)
            ready = []
            while queue and queue[0] in self._early:
                ticket = queue.popleft()
                early = self._early[ticket]
                ready.append(early.pop(0))
                if not early:
                    del self._early[ticket]
            if not queue:
                del self._pending[key]  # type: ignore[arg-type]
            return ready
