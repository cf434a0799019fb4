"""Stage marks carried with each frame's job: spans, their sum, and the split over workers' dumps."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.edge.timing import (
    MARKS,
    SPANS,
    FrameClock,
    FrameTimings,
    OwnerSplit,
    OwnerTimings,
    StageSplit,
    load_timings,
    spans_ns,
)


def clock_with(**marks_ms: float) -> FrameClock:
    clock = FrameClock()
    for name, ms in marks_ms.items():
        clock.mark(name, int(ms * 1e6))
    return clock


def test_spans_of_a_full_path_sum_to_the_wall_time() -> None:
    clock = clock_with(**{name: 1000 + 2 * i for i, name in enumerate(MARKS)})
    spans = clock.spans_s()
    assert list(spans) == list(SPANS) and all(v == pytest.approx(0.002) for v in spans.values())
    assert sum(spans.values()) == pytest.approx(clock.wall_s()) == pytest.approx(0.002 * (len(MARKS) - 1))


def test_a_skipped_mark_charges_its_time_to_the_next_set_one() -> None:
    # a refused record: read at 2 ms, straight to persist at 10 ms, written at 15, durable at 16
    clock = clock_with(poll_start=1, polled=1.5, read=2, persist_start=10, written=15, durable=16)
    spans = clock.spans_s()
    assert set(spans) == {"fetch", "validate", "queue_persist", "db_write", "account"}
    assert spans["queue_persist"] == pytest.approx(0.008) and spans["db_write"] == pytest.approx(0.005)
    assert sum(spans.values()) == pytest.approx(clock.wall_s())


def test_spans_ns_is_vectorised_over_frames() -> None:
    marks = np.stack([clock_with(poll_start=1, polled=3, durable=10).ns, clock_with(poll_start=5, polled=6, read=7).ns])
    spans = spans_ns(marks)
    assert spans.shape == (2, len(SPANS)) and (spans.sum(axis=1) == [9_000_000, 2_000_000]).all()


def test_split_keeps_only_the_chosen_cars_of_every_worker_dump(tmp_path) -> None:
    for worker, car in enumerate(["car-a", "car-b"]):
        timings = FrameTimings()
        timings.add(car, clock_with(poll_start=0.5, polled=1, detect_start=2, detected=2 + 4 * (worker + 1), durable=20))
        timings.add("warm-up", clock_with(poll_start=0.5, polled=1, detected=500, durable=600))
        timings.commit_s, timings.commits = 0.004, 2
        timings.dump(tmp_path / str(worker))
    parts = load_timings(tmp_path / "0") + load_timings(tmp_path / "1")
    split = StageSplit.of(parts, ["car-a", "car-b"])
    assert split.frames == 2 and split.ms_per_frame["detect"] == pytest.approx(6.0)  # (4 + 8) / 2
    assert split.wall_ms_per_frame == pytest.approx(19.5) and sum(split.ms_per_frame.values()) == pytest.approx(19.5)
    assert split.commit_ms_per_frame == pytest.approx(2.0)  # 8 ms of commits over the 4 frames the workers handled
    assert StageSplit.of(parts, ["no such car"]).frames == 0


def test_the_owner_split_counts_queueing_detection_and_busy_share_over_its_threads(tmp_path) -> None:
    # two threads over a 100 ms window: thread 0 detects 10 ms four times, thread 1 detects 20 ms once
    owner = OwnerTimings()
    ms = 1_000_000
    for k in range(4):
        owner.add(sent_ns=k * 25 * ms, taken_ns=(k * 25 + 2) * ms, answered_ns=(k * 25 + 12) * ms, thread=0)
    owner.add(sent_ns=40 * ms, taken_ns=82 * ms, answered_ns=102 * ms, thread=1)
    owner.dump(tmp_path)
    split = OwnerSplit.of(tmp_path)
    assert split is not None and split.requests == 5 and split.threads == 2
    assert split.queue_ms == pytest.approx((4 * 2 + 42) / 5) and split.detect_ms == pytest.approx((4 * 10 + 20) / 5)
    assert split.busy == pytest.approx(60 / (2 * 100))  # 60 ms of detection in 2 threads × 100 ms (2 -> 102)
    assert OwnerSplit.of(tmp_path / "none") is None
