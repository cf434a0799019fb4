"""What the store takes and answers: frame records, stored frames, overdue cars, prune counts; and the value rules (text every backend holds, times in nanoseconds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from ..deadline import CarDeadline
from ..detections import Detections
from ..messages.frame_id import FrameId
from .errors import RecordRefused
from .models import MESSAGE_KEY_MAX

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
INT32_MAX = 2**31 - 1  # INTEGER columns (camera, shot, frames_expected) on PostgreSQL
INT64_MAX = 2**63 - 1  # BIGINT; also the largest nanosecond time a datetime column takes here
MAX_ERROR_TEXT = 8000  # characters of an error kept on a frame or rejected-message row


def datetime_from_ns(ns: int) -> datetime:
    """UTC datetime of a Unix time in nanoseconds (truncated to microseconds, exact otherwise)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


@dataclass(frozen=True)
class FrameRecord:
    """Everything the store needs about one handled frame (from the Kafka message and the pipeline).

    Times are Unix nanoseconds: captured/deadline from the message headers, received when
    the consumer polled it, processed when its detections (or its error) were final.
    `frame_id` (validated on construction) says which frame; its `shots_per_car` is the number
    of frames expected for the whole car (cameras × shots).
    Give the encoded image as `image` (kept if the store has an ImageStore) or a ready
    `image_uri`, or neither.
    """

    frame_id: FrameId
    captured_at_ns: int
    deadline_at_ns: int
    received_at_ns: int
    processed_at_ns: int
    run_id: int
    width: int | None = None
    height: int | None = None
    image: bytes | None = None
    image_uri: str | None = None
    kafka_topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None

    def __post_init__(self) -> None:
        """Refuse (RecordRefused, a ValueError) what the columns cannot hold, before any SQL."""
        where = f"frame {self.label}"
        if not isinstance(self.frame_id, FrameId):
            raise RecordRefused(f"frame_id is {type(self.frame_id).__name__}, expected FrameId")
        for name in ("captured_at_ns", "deadline_at_ns", "received_at_ns", "processed_at_ns"):
            if not 0 <= getattr(self, name) <= INT64_MAX:
                raise RecordRefused(f"{where}: {name} must be Unix time in nanoseconds (0..2^63-1), got {getattr(self, name)}")
        if self.image is not None and self.image_uri is not None:
            raise RecordRefused(f"{where}: give either image bytes or an image_uri, not both")

    @property
    def latency_s(self) -> float:
        return (self.processed_at_ns - self.captured_at_ns) / 1e9

    @property
    def label(self) -> str:
        return self.frame_id.label


@dataclass(frozen=True)
class StoredFrame:
    """What one store call did. `completed` is set only for the call that completed the car."""

    row_id: int  # the frames row
    frame: FrameId
    detections: int
    replaced: bool  # a row for this frame existed (a redelivery); informational under races
    error_kind: str | None
    car_frames_done: int
    car_frames_expected: int
    completed: CarDeadline | None


@dataclass(frozen=True)
class OverdueCar:
    """A car the calling consumer just marked overdue (no other consumer marks it again)."""

    car_id: str
    deadline_at: datetime
    overdue_at: datetime
    frames_done: int
    frames_expected: int
    missing: tuple[tuple[int, int], ...]  # (camera, shot) pairs of the line geometry with no row
    missing_text: str


@dataclass(frozen=True)
class PruneCounts:
    """What `ResultStore.prune` deletes (or, in a dry run, would delete) from the database."""

    cars: int
    frames: int
    detections: int
    rejected: int
    images_cleared: int  # frames kept whose image_uri is cleared (their image is older than the images cutoff)
    # (image directory or None when the run recorded none, uri) of images no kept frame references any more
    image_files: tuple[tuple[str | None, str], ...]


def _sql_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters (SQLite can): replace them, as undecodable bytes are."""
    return text.replace("\x00", "\ufffd")


def error_text(message: str) -> str:
    """An error message as text every backend holds: NUL replaced, cut to MAX_ERROR_TEXT characters."""
    text = _sql_text(str(message))
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "\u2026"


def image_suffix(data: bytes) -> str:
    """The file suffix of an encoded frame: .png for PNG bytes, else .jpg (the contract's two types)."""
    return ".png" if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" else ".jpg"


def describe_missing(missing: Sequence[tuple[int, int]], shots_per_camera: int) -> str:
    """(camera, shot) pairs as text by camera with shot ranges: "cam 1 shots 0-4, 7; cam 3 all 19 shots"."""
    if not missing:
        return "none"
    by_camera: dict[int, list[int]] = {}
    for camera, shot in sorted(missing):
        by_camera.setdefault(camera, []).append(shot)
    parts = []
    for camera, shots in by_camera.items():
        if len(shots) == shots_per_camera > 1:
            parts.append(f"cam {camera} all {shots_per_camera} shots")
            continue
        ranges: list[str] = []
        start = prev = shots[0]
        for shot in [*shots[1:], None]:
            if shot is not None and shot == prev + 1:
                prev = shot
                continue
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            if shot is not None:
                start = prev = shot
        parts.append(f"cam {camera} shot{'s' if len(shots) > 1 else ''} {', '.join(ranges)}")
    return "; ".join(parts)


def _short(value: object, limit: int = 40) -> str:
    """A value for an error message: as is when short and printable, else a cut repr."""
    if isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def message_key_text(key: bytes | str | None) -> str | None:
    """A Kafka key as storable text: UTF-8 with undecodable bytes (and NUL) replaced by U+FFFD,
    cut to MESSAGE_KEY_MAX characters (the last one an ellipsis when cut)."""
    if key is None:
        return None
    text = _sql_text(key if isinstance(key, str) else bytes(key).decode("utf-8", errors="replace"))
    return text if len(text) <= MESSAGE_KEY_MAX else text[: MESSAGE_KEY_MAX - 1] + "\u2026"


DETECTION_COLUMNS = ("class_id", "class_name", "score", "x1", "y1", "x2", "y2", "tile_index")


def _detection_rows(detections: Detections, class_names: Mapping[int, str] | Sequence[str]) -> list[tuple[Any, ...]]:
    """One tuple per box in DETECTION_COLUMNS order, made column by column from the arrays
    (tolist), never through per-box objects: the DB-API takes rows of Python values."""
    if not len(detections):
        return []
    lookup = class_names if isinstance(class_names, Mapping) else dict(enumerate(class_names))
    ids = detections.class_id.tolist()
    names_of = {c: str(lookup.get(c, f"class_{c}")) for c in set(ids)}
    x1, y1, x2, y2 = detections.xyxy.astype(np.float64).T.tolist()
    return list(
        zip(
            ids,
            [names_of[c] for c in ids],
            detections.score.astype(np.float64).tolist(),
            x1,
            y1,
            x2,
            y2,
            detections.tile_index.tolist(),
        )
    )
