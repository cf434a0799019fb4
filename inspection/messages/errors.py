"""Why a record is refused, and where it came from: `RecordRef`, `MessageError` and its kinds.

Every refusal names the record (`RecordRef.describe`: the frame as far as its headers were read,
then topic[partition]@offset) and the offending field; `error_kind` is the short machine-readable
kind written to the dead letter and the error row.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tiling import FrameSizeError
from .text import frame_label, short_text


@dataclass(frozen=True)
class RecordRef:
    """Where a record came from; any part may be unknown."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    car_id: str | None = None
    camera: int | None = None
    shot: int | None = None

    def describe(self) -> str:
        parts = []
        if self.car_id is not None or self.camera is not None or self.shot is not None:
            car = None if self.car_id is None else short_text(self.car_id, quote=False)
            parts.append("frame " + frame_label(car, self.camera, self.shot))
        if self.topic is not None or self.partition is not None or self.offset is not None:
            where = self.topic if self.topic is not None else "?"
            if self.partition is not None:
                where += f"[{self.partition}]"
            if self.offset is not None:
                where += f"@{self.offset}"
            parts.append(f"record {where}")
        return ", ".join(parts) if parts else "record"


class MessageError(ValueError):
    """A Kafka record breaks the frame contract. Such records go to the dead-letter topic.

    `field` names the offending part ("car_id", "shot", "key", "payload", ...), `ref` the record.
    """

    kind = "bad_message"

    def __init__(self, problem: str, *, field: str, ref: RecordRef | None = None) -> None:
        self.problem = problem
        self.field = field
        self.ref = ref or RecordRef()
        super().__init__(f"{self.ref.describe()}: {problem}")


class PayloadTooLargeError(MessageError):
    """The image payload exceeds the agreed limit (`payload_limit(kafka.message_max_bytes)`)."""

    kind = "payload_too_large"


class ImageError(MessageError):
    """The payload is not a decodable image (corrupt or truncated JPEG, unknown format)."""

    kind = "bad_image"


class ImageSizeError(ImageError, FrameSizeError):
    """The image decodes but its size differs from the configured grid."""

    kind = "bad_frame_size"


def error_kind(exc: BaseException) -> str:
    """Short machine-readable kind of a failure, written to the dead letter's `error_kind` header."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) else type(exc).__name__
