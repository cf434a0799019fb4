"""Records of one frame key are applied in offset order, whatever runs in parallel before persist.

A camera retake re-sends a frame (same car, camera and shot) with a newer image at a later offset
of the same partition; the later record is the newer truth and must be the one stored. The edge
prepares frames on several threads and detects on several detectors, so a cheap retake can reach
persist before an expensive earlier record of the same key. `KeyOrder` puts them back in order:

- the source calls `admit(job)` as it polls (poll order is offset order within a partition);
- persist calls `arrived(job)` and applies the jobs it answers, in that order: the job itself
  once every earlier admitted job of its key was applied, plus any later job of the key that had
  arrived early and waited for it.

Only jobs of the same key wait for each other (other keys and partitions flow on). Records that
name no frame have no key and pass straight through. A waiting job holds its detections and
payload only until its predecessor arrives; predecessors always arrive (each admitted job reaches
persist unless the chain failed, and then nothing is committed).
"""

from __future__ import annotations

import threading
from collections import deque

from .job import FrameJob

FrameKey = tuple[str, int, int]  # car_id, camera, shot
Ticket = tuple[str, int, int]  # topic, partition, offset


def frame_key(job: FrameJob) -> FrameKey | None:
    if job.frame is None:
        return None
    fid = job.frame.frame_id
    return (fid.car_id, fid.camera, fid.shot)


def _ticket(job: FrameJob) -> Ticket:
    topic, partition = job.tp
    return (topic, partition, job.offset)


class KeyOrder:
    """Per frame key, the jobs admitted and not yet applied, oldest first, and those that arrived early."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[FrameKey, deque[Ticket]] = {}
        self._early: dict[Ticket, list[FrameJob]] = {}  # a list: a redelivered record may be admitted twice

    def admit(self, job: FrameJob) -> None:
        """Record the job's place in its key's order (called in poll order)."""
        key = frame_key(job)
        if key is None:
            return
        with self._lock:
            self._pending.setdefault(key, deque()).append(_ticket(job))

    def arrived(self, job: FrameJob) -> list[FrameJob]:
        """The jobs to apply now, in order: none while an earlier job of the key is still on its way."""
        key = frame_key(job)
        with self._lock:
            queue = self._pending.get(key) if key is not None else None
            if queue is None or _ticket(job) not in queue:
                return [job]  # no key, or never admitted (the order is not this source's)
            self._early.setdefault(_ticket(job), []).append(job)
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
