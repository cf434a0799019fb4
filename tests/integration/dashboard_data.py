"""A results database with known contents for the dashboard and read-layer tests, written through
the store's own write path (ResultStore + ImageStore), with real JPEG frames.

Cars (5 cameras; frames_expected as given; times relative to NOW):
- "c-ok": 5 × 2 frames, on time (met); frame cam 4 shot 1 is an error row ("decode").
- "c-late": 5 × 2 frames, the last stored after the deadline (missed).
- "c-partial": 3 of 10 frames, deadline passed (overdue).
- "c-fresh": 1 of 10 frames, deadline ahead (in_flight).
- HOSTILE ids: one frame each, on time (met).
One rejected message. Boxes: frame (cam, shot) of a car holds `boxes_of(cam, shot)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from inspection.config import StoreConfig
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import FrameRecord, ResultStore
from inspection.tiling import TileGrid

S_NS = 10**9
CLASS_NAMES = {1: "person", 3: "car", 44: "bottle"}
HOSTILE = ("<script>alert(1)</script>", "x'; DROP TABLE frames;--")
CAMERAS = 5


@dataclass(frozen=True)
class Populated:
    url: str
    images: Path
    now: datetime
    frame_ids: dict[tuple[str, int, int], int]


def boxes_of(cam: int, shot: int) -> Detections:
    """2 + cam + shot boxes: person, car, bottle in turn, scores 0.95, 0.85, ... (>= 0.3)."""
    n = 2 + cam + shot
    ids = [(1, 3, 44)[k % 3] for k in range(n)]
    scores = [max(0.3, 0.95 - 0.1 * k) for k in range(n)]
    xyxy = np.array([[100 + 200 * k, 50 + 100 * k, 250 + 200 * k, 300 + 100 * k] for k in range(n)], dtype=np.float32)
    return Detections(xyxy, np.array(scores, np.float32), np.array(ids, np.int32), np.full(n, -1, np.int32))


def jpeg_frames() -> list[bytes]:
    from synthetic.photos import PhotoFrameSource

    source = PhotoFrameSource(TileGrid())
    return [encode_image(source(1, cam, 0), 80) for cam in range(CAMERAS)]


def populate(url: str, images: Path, now_ns: int) -> Populated:
    jpegs = jpeg_frames()
    ids: dict[tuple[str, int, int], int] = {}
    with ResultStore.open(StoreConfig(url=url, image_dir=images)) as store:
        run_id = store.start_run("ssd_mobilenet_v2_coco", "onnxruntime", "fp32", "cafe", host="h", consumer_id="h:1")

        def put(
            car: str,
            cam: int,
            shot: int,
            expected: int,
            first_ns: int,
            deadline_ns: int,
            processed_ns: int,
            error: str | None = None,
        ) -> None:
            captured = first_ns + (cam * 2 + shot) * S_NS
            record = FrameRecord(
                FrameId(car, cam, shot, expected),
                captured,
                deadline_ns,
                captured + S_NS // 10,
                processed_ns,
                run_id,
                width=2700,
                height=2100,
                image=jpegs[cam],
                kafka_topic="frames",
                kafka_partition=cam,
                kafka_offset=100 + cam * 2 + shot,
            )
            stored = (
                store.store_error(record, "decode", error)
                if error
                else store.store_frame(record, boxes_of(cam, shot), CLASS_NAMES)
            )
            ids[car, cam, shot] = stored.row_id

        t0 = now_ns - 3600 * S_NS
        for cam in range(CAMERAS):
            for shot in range(2):
                put(
                    "c-ok",
                    cam,
                    shot,
                    10,
                    t0,
                    t0 + 60 * S_NS,
                    t0 + (20 + cam + shot) * S_NS,
                    error="not a JPEG: <b>bad</b> bytes" if (cam, shot) == (4, 1) else None,
                )
        t1 = t0 + 60 * S_NS
        for cam in range(CAMERAS):
            for shot in range(2):
                put("c-late", cam, shot, 10, t1, t1 + 30 * S_NS, t1 + (40 + cam + shot) * S_NS)
        t2 = t1 + 60 * S_NS
        for cam, shot in ((0, 0), (1, 0), (2, 1)):
            put("c-partial", cam, shot, 10, t2, t2 + 60 * S_NS, t2 + 5 * S_NS)
        t3 = t2 + 60 * S_NS
        for k, car in enumerate(HOSTILE):
            put(car, 0, 0, 1, t3 + k * S_NS, t3 + 60 * S_NS, t3 + (k + 2) * S_NS)
        t4 = now_ns - 5 * S_NS
        put("c-fresh", 0, 0, 10, t4, t4 + 600 * S_NS, t4 + 2 * S_NS)
        store.store_rejected(
            "frames", 3, 4242, b"\xff<i>key</i>", "headers", "no car_id header <img src=x>", now_ns - 60 * S_NS, run_id
        )
    return Populated(url, images, datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc), ids)
