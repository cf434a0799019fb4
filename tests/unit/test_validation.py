"""Line-level validation of frames (geometry, clock, content type) and the parking decision of read_frame."""

from __future__ import annotations

import pytest

from inspection.config import LineConfig, ValidationConfig
from inspection.messages.contract import FrameMessage, SourceRecord
from inspection.messages.errors import MessageError, PayloadTooLargeError
from inspection.messages.frame_id import FrameId
from inspection.validation import ContentTypeError, FrameValidator, InvalidFrameError, read_frame, sniff_content_type

S = 1_000_000_000
NOW = 1_800_000_000 * S
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
VALIDATOR = FrameValidator(
    LineConfig(cameras=5, shots_per_camera=19), ValidationConfig(max_future_s=30, max_age_s=3600, max_deadline_s=600)
)


def source(**overrides: object) -> SourceRecord:
    fields: dict[str, object] = dict(
        car_id="17", camera=2, shot=5, shots_per_car=95, captured_at_ns=NOW - S, deadline_at_ns=NOW + 59 * S, payload=JPEG
    )
    headers = {k: overrides.pop(k) for k in list(overrides) if k.startswith("raw_")}
    fields.update(overrides)
    identity = FrameId(*(fields.pop(name) for name in ("car_id", "camera", "shot", "shots_per_car")))  # type: ignore[arg-type]
    key, value, encoded = FrameMessage(frame_id=identity, **fields).encode()  # type: ignore[arg-type]
    encoded = [(n, headers.get(f"raw_{n}", v)) for n, v in encoded]  # type: ignore[misc]
    return SourceRecord(key, value, tuple(encoded), "frames", 0, 12)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            dict(camera=7),
            "camera",
            "frame car=17 cam=7 shot=5, record frames[0]@12: camera 7 outside the line's 5 cameras (configs: line.cameras)",
        ),
        (dict(shot=19), "shot", "shot 19 outside the line's 19 shots per camera (configs: line.shots_per_camera)"),
        (
            dict(shot=0, shots_per_car=1),
            "shots_per_car",
            "shots_per_car=1 disagrees with the line's 95 frames per car (5 cameras × 19 shots",
        ),
        (dict(shot=2, shots_per_car=10**9), "shots_per_car", "shots_per_car=1000000000 disagrees"),
        (dict(captured_at_ns=7_258_118_400 * S, deadline_at_ns=7_258_118_460 * S), "captured_at_ns", "(2200-01-01T00:00:00Z) is"),
        (
            dict(captured_at_ns=NOW + 31 * S, deadline_at_ns=NOW + 90 * S),
            "captured_at_ns",
            "31 s ahead of this consumer's clock; at most 30 s",
        ),
        (dict(captured_at_ns=NOW - 3601 * S), "captured_at_ns", "s old; at most 3600 s (configs: validation.max_age_s)"),
        (dict(deadline_at_ns=NOW - 2 * S), "deadline_at_ns", "1 s before captured_at_ns"),
        (dict(deadline_at_ns=NOW + 601 * S), "deadline_at_ns", "at most 600 s (configs: validation.max_deadline_s)"),
    ],
)
def test_headers_that_disagree_with_the_line_name_no_frame(overrides: dict, field: str, message: str) -> None:
    frame, error = read_frame(source(**overrides), VALIDATOR, NOW)
    assert frame is None, "a frame refused for its headers must not be counted on any car"
    assert isinstance(error, InvalidFrameError) and error.kind == "invalid_frame" and error.field == field
    assert message in str(error)


def test_a_valid_frame_passes_and_its_bounds_are_inclusive() -> None:
    frame, error = read_frame(
        source(camera=4, shot=18, captured_at_ns=NOW + 30 * S, deadline_at_ns=NOW + 630 * S), VALIDATOR, NOW
    )
    assert error is None and frame is not None and (frame.camera, frame.shot) == (4, 18)
    frame, error = read_frame(source(deadline_at_ns=NOW - S), VALIDATOR, NOW)  # deadline == capture
    assert error is None


def test_contract_errors_name_no_frame() -> None:
    frame, error = read_frame(source(raw_camera=b"7" * 5000), VALIDATOR, NOW)
    assert frame is None and isinstance(error, MessageError) and "5000 digits" in str(error)


def test_bytes_that_contradict_the_content_type_keep_their_frame() -> None:
    frame, error = read_frame(source(payload=PNG), VALIDATOR, NOW)
    assert frame is not None and isinstance(error, ContentTypeError) and error.kind == "content_type_mismatch"
    assert "content_type says image/jpeg but the payload starts like image/png" in str(error)
    frame, error = read_frame(source(payload=b"GIF89a-not-a-frame"), VALIDATOR, NOW)
    assert isinstance(error, ContentTypeError) and "neither JPEG nor PNG" in str(error)
    frame, error = read_frame(source(payload=PNG, content_type="image/png"), VALIDATOR, NOW)
    assert error is None


def test_too_large_payload_keeps_its_frame_unless_its_headers_are_refused() -> None:
    frame, error = read_frame(source(), VALIDATOR, NOW, max_payload_bytes=4)
    assert frame is not None and isinstance(error, PayloadTooLargeError)
    frame, error = read_frame(source(camera=9), VALIDATOR, NOW, max_payload_bytes=4)
    assert frame is None and isinstance(error, InvalidFrameError)


def test_sniff_content_type() -> None:
    assert sniff_content_type(JPEG) == "image/jpeg" and sniff_content_type(PNG) == "image/png"
    assert sniff_content_type(b"") is None and sniff_content_type(b"\xff\xd8") is None
