"""Line simulator: cars arrive every `line.takt_s`; each car's cameras fire together at evenly
spaced shots, and every frame goes to Kafka as a `FrameMessage`.

Schedule of car k (k = 0 for the first car of a run, started at `start_ns`):
car start = start_ns + k·takt; shot s fires at car start + s·takt / shots_per_camera; all
`line.cameras` cameras fire at once; deadline = car start + takt (the next car's arrival).

`realtime=True` sleeps to keep that schedule and stamps `captured_at_ns` with the clock when the
frame is sent. `realtime=False` sends as fast as possible: each frame is stamped with the clock
when it is sent (a capture time is never in the future, so latencies are positive) and a car's
deadline is its first frame's capture + takt, so the verdict says whether the consumers handled the
burst within one takt. Either way every frame's record (`ProducedFrame`) carries the wall-clock
time it was produced, for latency accounting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from inspection.config import LineConfig
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image

from .sources import FrameSource

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where frames go: `inspection.kafka.FrameProducer` (anything with send/flush)."""

    def send(self, frame: FrameMessage) -> None: ...
    def flush(self, timeout: float = ...) -> object: ...


@dataclass(frozen=True)
class ProducedFrame:
    """One frame the simulator sent."""

    car_id: str
    car_index: int
    camera: int
    shot: int
    captured_at_ns: int
    deadline_at_ns: int
    produced_at_ns: int  # wall clock (time.time_ns) when it was handed to the producer
    payload_bytes: int


def car_id(index: int) -> str:
    """Line car id of a car index: 17 -> "car-000017"."""
    return f"car-{index:06d}"


def shot_offsets_ns(line: LineConfig) -> np.ndarray:
    """(shots_per_camera,) int64 offsets of the shots from the car's start, evenly spread over the takt."""
    takt_ns = int(round(line.takt_s * 1e9))
    return (np.arange(line.shots_per_camera, dtype=np.int64) * takt_ns) // line.shots_per_camera


class LineSimulator:
    """Produce cars of frames from `frame_source` into `producer` following `line`'s schedule.

    Frames the source returns as arrays are JPEG-encoded at `line.jpeg_quality`; the same array
    object returned again (a cached frame) is encoded only once.
    """

    _ENCODE_CACHE = 16

    def __init__(
        self,
        line: LineConfig,
        frame_source: FrameSource,
        producer: FrameSink,
        *,
        flush_timeout_s: float = 60.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.line = line
        self.frame_source = frame_source
        self.producer = producer
        self.flush_timeout_s = flush_timeout_s
        self._clock_ns = clock_ns
        self._stop = threading.Event()
        self._encoded: OrderedDict[int, tuple[np.ndarray, bytes]] = OrderedDict()

    def stop(self) -> None:
        """Ask a running `run` to end after the current shot (thread- and signal-safe)."""
        self._stop.set()

    def _payload(self, frame: np.ndarray | bytes, where: str) -> bytes:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            return bytes(frame)
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frame source returned {type(frame).__name__} for {where}; expected an RGB array or JPEG bytes")
        hit = self._encoded.get(id(frame))
        if hit is not None and hit[0] is frame:
            self._encoded.move_to_end(id(frame))
            return hit[1]
        payload = encode_image(frame, self.line.jpeg_quality)
        # Holding the array keeps its id from being reused by another frame.
        self._encoded[id(frame)] = (frame, payload)
        if len(self._encoded) > self._ENCODE_CACHE:
            self._encoded.popitem(last=False)
        return payload

    def _wait_until(self, target_ns: int) -> None:
        delay_s = (target_ns - self._clock_ns()) / 1e9
        if delay_s > 0:
            self._stop.wait(delay_s)

    def run(
        self,
        cars: int | None = 1,
        *,
        start_car: int = 1,
        realtime: bool = True,
        start_ns: int | None = None,
        on_frame: Callable[[ProducedFrame], None] | None = None,
    ) -> list[ProducedFrame]:
        """Produce `cars` cars (None: until `stop()`), numbered from `start_car`; returns every frame sent.

        The producer is flushed after each car, so a DeliveryError surfaces within one car.
        `start_ns` (wall clock, default now) anchors the schedule; `on_frame` sees each record as it is sent.
        """
        if cars is not None and cars < 0:
            raise ValueError(f"cars={cars} must be >= 0")
        self._stop.clear()
        line = self.line
        takt_ns = int(round(line.takt_s * 1e9))
        offsets = shot_offsets_ns(line)
        origin = self._clock_ns() if start_ns is None else start_ns
        records: list[ProducedFrame] = []
        k = 0
        while (cars is None or k < cars) and not self._stop.is_set():
            index = start_car + k
            car = car_id(index)
            car_start = origin + k * takt_ns
            # realtime: the schedule's; otherwise fixed by the car's first frame (sent now, not on a future schedule)
            deadline: int | None = car_start + takt_ns if realtime else None
            late_ns = 0
            for shot in range(line.shots_per_camera):
                if self._stop.is_set():
                    break
                # Render and encode before the shot's time so sending keeps the schedule.
                payloads = [
                    self._payload(self.frame_source(index, cam, shot), f"car {index} cam {cam} shot {shot}")
                    for cam in range(line.cameras)
                ]
                scheduled = car_start + int(offsets[shot])
                if realtime:
                    self._wait_until(scheduled)
                    if self._stop.is_set():
                        break
                for cam, payload in enumerate(payloads):
                    now = self._clock_ns()
                    captured = now
                    if deadline is None:
                        deadline = captured + takt_ns
                    late_ns = max(late_ns, now - scheduled) if realtime else 0
                    self.producer.send(
                        FrameMessage(
                            frame_id=FrameId(car, cam, shot, line.frames_per_car),
                            captured_at_ns=captured,
                            deadline_at_ns=deadline,
                            payload=payload,
                        )
                    )
                    record = ProducedFrame(car, index, cam, shot, captured, deadline, self._clock_ns(), len(payload))
                    records.append(record)
                    if on_frame is not None:
                        on_frame(record)
            self.producer.flush(self.flush_timeout_s)
            if late_ns > takt_ns // (2 * line.shots_per_camera):
                log.warning(
                    "%s: shots sent up to %.2f s behind schedule (frame source or producer slower than the line)",
                    car,
                    late_ns / 1e9,
                )
            k += 1
        return records
