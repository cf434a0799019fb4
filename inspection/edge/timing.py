"""Where a frame's time goes: monotonic marks carried along a record's path, and their collection across workers.

Every step of a record (`steps.py`) carries its one `FrameClock`: a small int64 array of
`time.perf_counter_ns()` marks, one slot per point of the record's path (`MARKS`), set by the stage
that passes it. A span is the time from the latest earlier mark that was set to its own mark, so the
spans of a frame always add up to its wall time in this worker (first mark to last), whichever marks
a path skips (a parked record skips decode and detect; the CPU preparer has no JPEG check or GPU lock).

`FrameTimings` keeps the marks of every persisted frame with its car, camera and shot (only when
asked: `pipeline.timing_dir` or a collector handed to the pipeline), and writes them to one `.npz`
per worker process at the end of its run, so a benchmark reads the split of all workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The points of a record's path, in order. The span ending at each mark (after the first) is named in SPANS.
MARKS = (
    "poll_start",  # the source called poll()
    "polled",  # poll returned this record
    "read",  # headers validated (validation.read_frame)
    "prepare_start",  # a prepare thread took it (queue wait before)
    "checked",  # strict 1/8-scale JPEG check done (GPU decode only)
    "locked",  # the nvJPEG lock acquired (GPU decode only)
    "decoded",  # JPEG decoded (GPU: bytes to the device + nvJPEG)
    "prepared",  # tiled into the pooled batch
    "detect_start",  # an infer thread took it
    "detected",  # network + post-processing done (host batch: its copy to the device included)
    "stitched",  # stitched into frame pixels
    "looked",  # second look at cut objects done (crops from the same batch; a pass-through when off)
    "persist_start",  # the persist thread took it
    "written",  # its transaction committed (or parked)
    "durable",  # offset marked durable, counted
)
SPANS = (
    "fetch",
    "validate",
    "queue_prepare",
    "jpeg_check",
    "gpu_lock",
    "decode",
    "tile",
    "queue_detect",
    "detect",
    "stitch",
    "second_look",
    "queue_persist",
    "db_write",
    "account",
)
_INDEX = {name: i for i, name in enumerate(MARKS)}


@dataclass
class FrameClock:
    """The marks of one record (0: not reached)."""

    ns: np.ndarray = field(default_factory=lambda: np.zeros(len(MARKS), dtype=np.int64))

    def mark(self, name: str, at_ns: int | None = None) -> int:
        now = time.perf_counter_ns() if at_ns is None else at_ns
        self.ns[_INDEX[name]] = now
        return now

    def seconds(self, start: str, end: str) -> float:
        return float(self.ns[_INDEX[end]] - self.ns[_INDEX[start]]) / 1e9

    def spans_s(self) -> dict[str, float]:
        """The spans whose mark was set, in seconds (they sum to `wall_s`)."""
        spans = spans_ns(self.ns[None])[0]
        return {name: float(spans[i]) / 1e9 for i, name in enumerate(SPANS) if self.ns[i + 1]}

    def wall_s(self) -> float:
        return float(self.ns.max() - self.ns[0]) / 1e9


def spans_ns(marks: np.ndarray) -> np.ndarray:
    """(frames, len(MARKS)) marks -> (frames, len(SPANS)) spans: each set mark minus the latest earlier set mark."""
    before = np.maximum.accumulate(marks, axis=1)[:, :-1]
    later = marks[:, 1:]
    return np.where(later > 0, later - before, 0)


@dataclass
class FrameTimings:
    """The marks of persisted frames (one row each), for a benchmark's split; not kept in production."""

    car_ids: list[str] = field(default_factory=list)
    marks: list[np.ndarray] = field(default_factory=list)
    commit_s: float = 0.0  # offset commits of this worker, in all
    commits: int = 0

    def add(self, car_id: str, clock: FrameClock) -> None:
        self.car_ids.append(car_id)
        self.marks.append(clock.ns)

    def dump(self, folder: Path) -> Path:
        """`timings-<pid>.npz` in `folder` (one file per worker process)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"timings-{os.getpid()}.npz"
        marks = np.stack(self.marks) if self.marks else np.zeros((0, len(MARKS)), np.int64)
        np.savez(path, car_ids=np.asarray(self.car_ids, dtype=str), marks=marks, commit_s=self.commit_s, commits=self.commits)
        return path


@dataclass(frozen=True)
class StageSplit:
    """Mean ms per frame of each span over the chosen frames, their mean wall time, and the commits."""

    frames: int
    ms_per_frame: dict[str, float]
    wall_ms_per_frame: float
    p99_ms: dict[str, float]
    commit_ms_per_frame: float

    @classmethod
    def of(cls, parts: Iterable[FrameTimings | dict[str, np.ndarray]], car_ids: Iterable[str]) -> StageSplit:
        wanted = set(car_ids)
        rows: list[np.ndarray] = []
        commit_s, all_frames = 0.0, 0
        for part in parts:
            if isinstance(part, FrameTimings):
                ids, marks, c = np.asarray(part.car_ids, dtype=str), part.marks, part.commit_s
                marks = np.stack(marks) if marks else np.zeros((0, len(MARKS)), np.int64)
            else:
                ids, marks, c = part["car_ids"], part["marks"], float(part["commit_s"])
            rows.append(marks[np.isin(ids, list(wanted))])
            commit_s += c
            all_frames += len(ids)
        marks = np.concatenate(rows) if rows else np.zeros((0, len(MARKS)), np.int64)
        if not len(marks):
            return cls(0, {}, 0.0, {}, 0.0)
        spans = spans_ns(marks) / 1e6
        wall = (marks.max(axis=1) - marks[:, 0]) / 1e6
        return cls(
            frames=len(marks),
            ms_per_frame={s: round(float(spans[:, i].mean()), 3) for i, s in enumerate(SPANS)},
            wall_ms_per_frame=round(float(wall.mean()), 3),
            p99_ms={s: round(float(np.percentile(spans[:, i], 99)), 3) for i, s in enumerate(SPANS)},
            commit_ms_per_frame=round(commit_s / max(all_frames, 1) * 1e3, 3),  # amortised over every frame of the run
        )


def load_timings(folder: Path) -> list[dict[str, np.ndarray]]:
    """Every worker's dumped timings in `folder`."""
    parts = []
    for path in sorted(folder.glob("timings-*.npz")):
        with np.load(path) as data:
            parts.append({k: data[k] for k in data.files})
    return parts


@dataclass
class OwnerTimings:
    """The GPU owner's side of every request (layout gpu_owner): when the worker sent it, when a detector
    thread took it, when its answer was ready, and which thread. Dumped like `FrameTimings`
    (`owner-<pid>.npz`), so the split says whether the owner is saturated or waits for work."""

    rows: list[tuple[int, int, int, int]] = field(default_factory=list)  # (sent, taken, answered, thread)

    def add(self, sent_ns: int, taken_ns: int, answered_ns: int, thread: int) -> None:
        self.rows.append((sent_ns, taken_ns, answered_ns, thread))  # list.append: atomic across the owner's threads

    def dump(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"owner-{os.getpid()}.npz"
        np.savez(path, rows=np.asarray(self.rows, dtype=np.int64).reshape(-1, 4))
        return path


@dataclass(frozen=True)
class OwnerSplit:
    """Per request: time queued for the owner (sent -> taken, IPC included) and its detection (taken -> answered:
    host-to-device copy, network, post-processing, device-to-host); `busy` = detection time / (threads × window)."""

    requests: int
    threads: int
    queue_ms: float
    queue_p99_ms: float
    detect_ms: float
    detect_p99_ms: float
    busy: float

    @classmethod
    def of(cls, folder: Path) -> OwnerSplit | None:
        parts = []
        for path in sorted(folder.glob("owner-*.npz")):
            with np.load(path) as data:
                parts.append(data["rows"])
        rows = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
        if not len(rows):
            return None
        queued, detected = (rows[:, 1] - rows[:, 0]) / 1e6, (rows[:, 2] - rows[:, 1]) / 1e6
        threads = len(np.unique(rows[:, 3]))
        window = float(rows[:, 2].max() - rows[:, 1].min()) / 1e6
        return cls(
            requests=len(rows),
            threads=threads,
            queue_ms=round(float(queued.mean()), 3),
            queue_p99_ms=round(float(np.percentile(queued, 99)), 3),
            detect_ms=round(float(detected.mean()), 3),
            detect_p99_ms=round(float(np.percentile(detected, 99)), 3),
            busy=round(float(detected.sum()) / (threads * window), 3) if window > 0 else 0.0,
        )
