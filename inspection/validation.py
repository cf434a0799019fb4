"""What a frame must agree with beyond the contract: the line's geometry, the consumer's clock, its own bytes.

`FrameMessage` (messages/contract.py) bounds every header to what the store holds, whatever the site. This
module checks what depends on the configuration and on the time a consumer reads the record:

- camera in [0, line.cameras), shot in [0, line.shots_per_camera), and shots_per_car equal to
  line.frames_per_car: a car's geometry is fixed by config, never by its first frame;
- captured_at no further ahead of the consumer's clock than validation.max_future_s and no older
  than validation.max_age_s; deadline_at at or after captured_at, at most validation.max_deadline_s after;
- the payload's magic bytes match content_type.

`read_frame` is the one entry point for a polled record. It answers the frame (or None) and the
error (or None). A record whose headers fail (`MessageError`, `InvalidFrameError`) names no frame
of any car: it is parked with a rejected-message row and never counts toward a car. A record with
valid headers whose bytes are refused (too large, wrong content type; later: corrupt, wrong size)
keeps its frame: it is parked with an error row on that frame's slot, which counts as handled.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import LineConfig, Settings, ValidationConfig
from .messages.contract import FrameMessage, SourceRecord
from .messages.errors import ImageError, MessageError, PayloadTooLargeError, RecordRef

_MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
}


class InvalidFrameError(MessageError):
    """The headers are well-formed but disagree with the line or the clock: not a frame of any car."""

    kind = "invalid_frame"


class ContentTypeError(ImageError):
    """The payload's bytes are not what content_type says (e.g. PNG bytes labelled image/jpeg)."""

    kind = "content_type_mismatch"


def _utc(ns: int) -> str:
    try:
        return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return "out of range"


def sniff_content_type(payload: bytes) -> str | None:
    """The content type the payload's first bytes announce, None if neither JPEG nor PNG."""
    head = bytes(payload[:8])
    for content_type, magics in _MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return content_type
    return None


@dataclass(frozen=True)
class FrameValidator:
    """Checks of one site's configuration; `now_ns` is passed in (the consumer's clock, testable)."""

    line: LineConfig
    rules: ValidationConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> FrameValidator:
        return cls(settings.line, settings.validation)

    def check_headers(self, frame: FrameMessage, ref: RecordRef, now_ns: int) -> None:
        """Raise InvalidFrameError naming the header, its value, the bound and the config key."""
        line, rules = self.line, self.rules

        def refuse(problem: str, field: str) -> None:
            raise InvalidFrameError(problem, field=field, ref=ref)

        if frame.camera >= line.cameras:
            refuse(f"camera {frame.camera} outside the line's {line.cameras} cameras (configs: line.cameras)", "camera")
        if frame.shot >= line.shots_per_camera:
            refuse(
                f"shot {frame.shot} outside the line's {line.shots_per_camera} shots per camera (configs: line.shots_per_camera)",
                "shot",
            )
        if frame.shots_per_car != line.frames_per_car:
            refuse(
                f"shots_per_car={frame.shots_per_car} disagrees with the line's {line.frames_per_car} frames per car "
                f"({line.cameras} cameras × {line.shots_per_camera} shots; configs: line.cameras, line.shots_per_camera)",
                "shots_per_car",
            )
        ahead_s = (frame.captured_at_ns - now_ns) / 1e9
        if ahead_s > rules.max_future_s:
            refuse(
                f"captured_at_ns={frame.captured_at_ns} ({_utc(frame.captured_at_ns)}) is {ahead_s:.3g} s ahead of this "
                f"consumer's clock; at most {rules.max_future_s:g} s (configs: validation.max_future_s; check the camera's clock)",
                "captured_at_ns",
            )
        if -ahead_s > rules.max_age_s:
            refuse(
                f"captured_at_ns={frame.captured_at_ns} ({_utc(frame.captured_at_ns)}) is {-ahead_s:.3g} s old; "
                f"at most {rules.max_age_s:g} s (configs: validation.max_age_s)",
                "captured_at_ns",
            )
        allowed_s = (frame.deadline_at_ns - frame.captured_at_ns) / 1e9
        if allowed_s < 0:
            refuse(
                f"deadline_at_ns={frame.deadline_at_ns} ({_utc(frame.deadline_at_ns)}) is {-allowed_s:.3g} s before "
                f"captured_at_ns ({_utc(frame.captured_at_ns)}); a deadline follows the capture",
                "deadline_at_ns",
            )
        if allowed_s > rules.max_deadline_s:
            refuse(
                f"deadline_at_ns={frame.deadline_at_ns} ({_utc(frame.deadline_at_ns)}) is {allowed_s:.3g} s after the "
                f"capture; at most {rules.max_deadline_s:g} s (configs: validation.max_deadline_s)",
                "deadline_at_ns",
            )

    def check_payload(self, frame: FrameMessage, ref: RecordRef) -> None:
        """Raise ContentTypeError when the payload's magic bytes contradict content_type."""
        found = sniff_content_type(frame.payload)
        if found != frame.content_type:
            seen = f"starts like {found}" if found else f"starts with {bytes(frame.payload[:4]).hex(' ')} (neither JPEG nor PNG)"
            raise ContentTypeError(
                f"content_type says {frame.content_type} but the payload {seen}", field="content_type", ref=ref
            )


def read_frame(
    source: SourceRecord, validator: FrameValidator, now_ns: int, *, max_payload_bytes: int | None = None
) -> tuple[FrameMessage | None, MessageError | None]:
    """Decode and validate one record: (frame, None) when it may go on to decoding and detection;
    (frame, error) when its frame is known but its bytes are refused (park with an error row);
    (None, error) when the headers name no valid frame (park with a rejected-message row)."""
    ref = source.ref
    error: MessageError | None = None
    try:
        frame: FrameMessage | None = source.decode(max_payload_bytes)
    except PayloadTooLargeError as exc:
        error, frame = exc, None
        with contextlib.suppress(MessageError):  # the headers may still name the frame for its error row
            frame = source.decode(None)
    except MessageError as exc:
        return None, exc
    if frame is None:
        return None, error
    frame_ref = RecordRef(ref.topic, ref.partition, ref.offset, frame.car_id, frame.camera, frame.shot)
    try:
        validator.check_headers(frame, frame_ref, now_ns)
    except InvalidFrameError as exc:
        return None, exc
    if error is None:
        try:
            validator.check_payload(frame, frame_ref)
        except ContentTypeError as exc:
            error = exc
    return frame, error
