"""Line simulator schedule and frame handling, with an in-memory sink (Kafka is tested in integration)."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from inspection.config import LineConfig
from inspection.messages.contract import FrameMessage
from inspection.messages.images import decode_image
from synthetic.line import LineSimulator, car_id, shot_offsets_ns


class ListSink:
    def __init__(self) -> None:
        self.frames: list[FrameMessage] = []
        self.flushes = 0

    def send(self, frame: FrameMessage) -> None:
        self.frames.append(frame)

    def flush(self, timeout: float = 0) -> None:
        self.flushes += 1


def test_car_ids_and_shot_offsets() -> None:
    assert car_id(1) == "car-000001"
    assert car_id(123456) == "car-123456"
    line = LineConfig(cameras=5, shots_per_camera=19, takt_s=60.0)
    offsets = shot_offsets_ns(line)
    assert offsets[0] == 0 and len(offsets) == 19
    assert np.all(np.diff(offsets) > 0) and offsets[-1] < 60_000_000_000
    assert offsets[1] == 60_000_000_000 // 19


def test_fast_run_stamps_send_times_and_encodes_each_array_once() -> None:
    """--no-realtime: capture times are the clock when sent (never ahead of it: positive latencies),
    and each car's deadline is its first capture + takt."""
    line = LineConfig(cameras=3, shots_per_camera=4, takt_s=10.0, jpeg_quality=80)
    frames = [np.full((21, 27, 3), 40 * cam, np.uint8) for cam in range(3)]
    sink = ListSink()
    ticks = itertools.count(1_000, 7)
    records = LineSimulator(line, lambda car, cam, shot: frames[cam], sink, clock_ns=lambda: next(ticks)).run(
        3,
        start_car=5,
        realtime=False,
        start_ns=10**30,  # a schedule far in the future is not used
    )
    assert len(records) == len(sink.frames) == 3 * line.frames_per_car
    assert sink.flushes == 3  # one flush per car
    first_capture = {}
    for record, frame in zip(records, sink.frames):
        first_capture.setdefault(record.car_id, record.captured_at_ns)
        assert record.car_id == frame.car_id == car_id(record.car_index)
        assert (record.camera, record.shot) == (frame.camera, frame.shot)
        assert frame.captured_at_ns == record.captured_at_ns < record.produced_at_ns < 10**6
        assert frame.deadline_at_ns == first_capture[record.car_id] + 10_000_000_000
        assert frame.shots_per_car == 12
        assert record.payload_bytes == len(frame.payload)
    captures = [r.captured_at_ns for r in records]
    assert captures == sorted(captures) and len(set(captures)) == len(captures)
    # Cars come in order.
    assert [r.car_index for r in records] == sorted(r.car_index for r in records)
    by_camera = {}
    for frame in sink.frames:
        by_camera.setdefault(frame.camera, set()).add(id(frame.payload))
    assert all(len(ids) == 1 for ids in by_camera.values())  # same array -> encoded once
    assert decode_image(sink.frames[0].payload, (27, 21)).shape == (21, 27, 3)


def test_jpeg_bytes_pass_through_unchanged() -> None:
    line = LineConfig(cameras=1, shots_per_camera=2, takt_s=1.0)
    sink = ListSink()
    LineSimulator(line, lambda car, cam, shot: b"\xff\xd8 %d \xff\xd9" % shot, sink).run(1, realtime=False)
    assert [f.payload for f in sink.frames] == [b"\xff\xd8 0 \xff\xd9", b"\xff\xd8 1 \xff\xd9"]


def test_realtime_run_sends_no_frame_before_its_time_and_stops() -> None:
    line = LineConfig(cameras=2, shots_per_camera=2, takt_s=0.2)
    sink = ListSink()
    sim = LineSimulator(line, lambda car, cam, shot: b"\xff\xd8\xff\xd9", sink)
    offsets = shot_offsets_ns(line)

    def stop_after_first_car(record) -> None:
        if record.car_index == 1 and record.shot == 1 and record.camera == 1:
            sim.stop()

    start = time.time_ns()
    records = sim.run(None, realtime=True, start_ns=start, on_frame=stop_after_first_car)
    assert len(records) == line.frames_per_car  # stopped after car 1
    for record in records:
        assert record.captured_at_ns >= start + offsets[record.shot]
        assert record.produced_at_ns >= record.captured_at_ns
        assert record.deadline_at_ns == start + 200_000_000


def test_bad_source_output_is_named() -> None:
    line = LineConfig(cameras=1, shots_per_camera=1, takt_s=1.0)
    with pytest.raises(TypeError, match="car 1 cam 0 shot 0"):
        LineSimulator(line, lambda car, cam, shot: "not a frame", ListSink()).run(1, realtime=False)
