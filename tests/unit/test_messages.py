"""The Kafka frame contract: encode/decode round trips, validation errors, image decoding, dead letters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.messages.contract import HEADER_NAMES, TIME_NS_MAX, FrameMessage, payload_limit
from inspection.messages.dead_letters import DLQ_HEADER_NAMES, DeadLetter
from inspection.messages.errors import ImageError, ImageSizeError, MessageError, PayloadTooLargeError, error_kind
from inspection.messages.frame_id import CAR_ID_MAX_CHARS, INDEX_MAX, FrameId
from inspection.messages.images import decode_image, encode_image, image_size
from inspection.tiling import FrameSizeError


def make_frame(**overrides) -> FrameMessage:
    identity = dict(car_id="car-000017", camera=2, shot=5, shots_per_car=95)
    identity.update({name: overrides.pop(name) for name in list(overrides) if name in identity})
    fields = dict(
        captured_at_ns=1_700_000_000_000_000_000,
        deadline_at_ns=1_700_000_060_000_000_000,
        payload=b"\xff\xd8fake-jpeg\xff\xd9",
    )
    fields.update(overrides)
    return FrameMessage(frame_id=FrameId(**identity), **fields)


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def replace_header(headers, name, value):
    return [(n, value if n == name else v) for n, v in headers]


# ----------------------------------------------------------------------------- round trip

# Printable text: the contract refuses control, format, separator and unassigned characters in car_id.
car_ids = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp", "Zs")),
    min_size=1,
    max_size=CAR_ID_MAX_CHARS,
)


@st.composite
def frames(draw) -> FrameMessage:
    shots_per_car = draw(st.integers(1, 10_000))
    captured = draw(st.integers(0, 2**63 - 1))
    return FrameMessage(
        frame_id=FrameId(draw(car_ids), draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, shots_per_car - 1)), shots_per_car),
        captured_at_ns=captured,
        deadline_at_ns=draw(st.integers(0, 2**63 - 1)),
        content_type=draw(st.sampled_from(["image/jpeg", "image/png"])),
        payload=draw(st.binary(min_size=1, max_size=256)),
    )


@given(frames())
@settings(max_examples=200, deadline=None)
def test_encode_decode_round_trip(frame: FrameMessage) -> None:
    key, value, headers = frame.encode()
    assert key == f"{frame.car_id}:{frame.camera}".encode()
    assert [name for name, _ in headers] == list(HEADER_NAMES)
    assert all(isinstance(v, bytes) for _, v in headers)
    assert FrameMessage.decode(key, value, headers) == frame


def test_headers_are_utf8_text() -> None:
    frame = make_frame(car_id="wagen-ä")
    headers = dict(frame.headers())
    assert headers["schema"] == b"1"
    assert headers["car_id"] == "wagen-ä".encode()
    assert headers["camera"] == b"2"
    assert headers["shot"] == b"5"
    assert headers["shots_per_car"] == b"95"
    assert headers["captured_at_ns"] == b"1700000000000000000"
    assert headers["content_type"] == b"image/jpeg"
    assert frame.key == "wagen-ä:2"


def test_decode_accepts_str_key_and_last_duplicate_header() -> None:
    key, value, headers = make_frame().encode()
    headers = headers + [("shot", b"6")]
    decoded = FrameMessage.decode(key.decode(), value, headers)
    assert decoded.shot == 6


def test_repr_leaves_payload_out() -> None:
    assert "fake-jpeg" not in repr(make_frame())


# ----------------------------------------------------------------------------- bad records


@pytest.mark.parametrize("name", HEADER_NAMES)
def test_missing_header_names_field(name: str) -> None:
    key, value, headers = make_frame().encode()
    headers = [(n, v) for n, v in headers if n != name]
    with pytest.raises(MessageError) as info:
        FrameMessage.decode(key, value, headers, topic="frames", partition=3, offset=42)
    assert info.value.field == name
    assert f"header {name!r} is missing" in str(info.value)
    assert "frames[3]@42" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("camera", b"two", "'camera'='two' is not an integer"),
        ("shot", b"5.0", "'shot'='5.0' is not an integer"),
        ("shots_per_car", b"", "'shots_per_car'='' is not an integer"),
        ("captured_at_ns", b"1e9", "not an integer"),
        ("deadline_at_ns", b"0x10", "not an integer"),
        ("camera", b"-1", "camera=-1 is negative"),
        ("captured_at_ns", b"-5", "captured_at_ns=-5 is negative"),
        ("shot", b"95", "shot=95 is out of range; expected 0 <= shot < shots_per_car=95"),
        ("shots_per_car", b"0", "shots_per_car=0"),
        ("schema", b"2", "'schema'='2' is not a known schema version"),
        ("content_type", b"image/webp", "content_type 'image/webp' is not supported"),
        ("car_id", b"   ", "car_id '   ' must be a non-empty string"),
        ("car_id", b"\xff\xfe", "'car_id' is not valid UTF-8"),
        ("shot", None, "header 'shot' is missing"),
        # bounded to what the store holds, before int() (Python refuses > 4300 digits)
        ("camera", b"7" * 5000, "header 'camera' has 5000 digits; expected a 0-based camera index of at most 19 digits"),
        ("captured_at_ns", b"1" + b"0" * 25, "has 26 digits"),
        ("camera", str(2**31).encode(), "camera=2147483648 is out of range; at most 2^31-1"),
        ("shots_per_car", str(2**63).encode(), "shots_per_car=9223372036854775808 is out of range"),
        ("deadline_at_ns", str(2**63).encode(), "at most 2^63-1 ns (the year 2262)"),
        ("car_id", b"c" * 65, "car_id of 65 characters is too long; at most 64"),
        ("car_id", b"car\x00-1", "holds the control/unprintable character U+0000"),
        ("car_id", b"car\n-1", "holds the control/unprintable character U+000A"),
    ],
)
def test_garbled_header_names_field_and_expectation(name: str, value: bytes | None, expected: str) -> None:
    key, payload, headers = make_frame().encode()
    if name == "car_id" and value is not None:
        key = value + b":2"  # a key matching the bad car_id, so the car_id check itself is reached
    headers = replace_header(headers, name, value)
    with pytest.raises(MessageError) as info:
        FrameMessage.decode(key, payload, headers, partition=1, offset=7)
    assert info.value.field == name
    assert expected in str(info.value)
    assert "@7" in str(info.value)


def test_contract_bounds_agree_with_the_store_columns() -> None:
    from inspection.store.models import CAR_ID_MAX, Car, Frame

    assert CAR_ID_MAX_CHARS == CAR_ID_MAX == Car.__table__.c.car_id.type.length
    assert INDEX_MAX == 2**31 - 1 and TIME_NS_MAX == 2**63 - 1
    # camera and shot are INTEGER (32-bit on PostgreSQL); the contract keeps them in that range
    assert type(Frame.__table__.c.camera.type).__name__ == "Integer" == type(Frame.__table__.c.shot.type).__name__


def test_hostile_header_values_are_short_in_messages() -> None:
    key, value, headers = make_frame().encode()
    headers = replace_header(headers, "car_id", ("x" * 10_000).encode())
    with pytest.raises(MessageError) as info:
        FrameMessage.decode(b"x", value, headers)
    assert len(str(info.value)) < 300  # the value is cut, not copied into every log line and dead letter


def test_error_identifies_frame_when_known() -> None:
    key, value, headers = make_frame().encode()
    headers = replace_header(headers, "shots_per_car", b"many")
    with pytest.raises(MessageError) as info:
        FrameMessage.decode(key, value, headers, topic="frames", partition=0, offset=9)
    assert str(info.value).startswith("frame car=car-000017 cam=2 shot=5, record frames[0]@9:")


@pytest.mark.parametrize("key", [None, b"car-000017:3", b"car-000018:2"])
def test_key_must_match_headers(key: bytes | None) -> None:
    _, value, headers = make_frame().encode()
    with pytest.raises(MessageError, match=r"expected 'car-000017:2'") as info:
        FrameMessage.decode(key, value, headers)
    assert info.value.field == "key"


@pytest.mark.parametrize("value", [None, b""])
def test_empty_payload_rejected(value: bytes | None) -> None:
    key, _, headers = make_frame().encode()
    with pytest.raises(MessageError, match="payload is empty") as info:
        FrameMessage.decode(key, value, headers)
    assert info.value.field == "payload"


def test_oversized_payload_rejected_with_limit() -> None:
    key, _, headers = make_frame().encode()
    with pytest.raises(PayloadTooLargeError, match="payload of 2001 bytes exceeds the limit of 2000 bytes") as info:
        FrameMessage.decode(key, b"x" * 2001, headers, max_payload_bytes=2000)
    assert "kafka.message_max_bytes" in str(info.value)
    assert error_kind(info.value) == "payload_too_large"
    assert FrameMessage.decode(key, b"x" * 2000, headers, max_payload_bytes=2000).payload == b"x" * 2000


def test_payload_limit_leaves_headroom() -> None:
    assert 0 < payload_limit(8 * 1024 * 1024) < 8 * 1024 * 1024


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(camera=-1), "camera"),
        (dict(shot=95), "shot"),
        (dict(car_id=""), "car_id"),
        (dict(payload=b""), "payload"),
        (dict(camera=True), "camera"),
        (dict(shots_per_car=1.5), "shots_per_car"),
    ],
)
def test_construction_validates(overrides: dict, field: str) -> None:
    with pytest.raises(MessageError) as info:
        make_frame(**overrides)
    assert info.value.field == field


# ----------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def frame_jpeg() -> tuple[np.ndarray, bytes]:
    rgb = gradient(2700, 2100)
    return rgb, encode_image(rgb, 90)


def test_image_round_trip_is_rgb(frame_jpeg) -> None:
    rgb, jpeg = frame_jpeg
    decoded = decode_image(jpeg, (2700, 2100))
    assert decoded.shape == (2100, 2700, 3) and decoded.dtype == np.uint8
    # Channel order survives (a BGR/RGB swap would put the x-gradient into the blue channel).
    error = np.abs(decoded.astype(np.int16) - rgb).mean(axis=(0, 1))
    assert error.max() < 4


def test_image_size_reads_jpeg_and_png_headers(frame_jpeg) -> None:
    assert image_size(frame_jpeg[1]) == (2700, 2100)
    import cv2

    ok, png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))
    assert ok and image_size(png.tobytes()) == (40, 30)
    assert decode_image(png.tobytes(), (40, 30)).shape == (30, 40, 3)
    assert image_size(b"not an image") is None


def test_wrong_size_names_both_sizes() -> None:
    jpeg = encode_image(gradient(1920, 1080), 80)
    with pytest.raises(ImageSizeError) as info:
        decode_image(jpeg, (2700, 2100), what="frame car=17 cam=2 shot=5")
    message = str(info.value)
    assert "frame car=17 cam=2 shot=5 is 1920×1080, grid expects 2700×2100" in message
    assert "grid.frame_width" in message
    assert isinstance(info.value, FrameSizeError) and isinstance(info.value, MessageError)
    assert error_kind(info.value) == "bad_frame_size"


def test_truncated_jpeg_is_image_error(frame_jpeg) -> None:
    jpeg = frame_jpeg[1]
    with pytest.raises(ImageError, match="truncated"):
        decode_image(jpeg[: len(jpeg) // 2], (2700, 2100))


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9", b"GIF89a garbage", bytes(range(256)) * 4, b""],
)
def test_corrupt_image_is_image_error(payload: bytes) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(payload, (2700, 2100))
    assert error_kind(info.value) == "bad_image"
    assert not isinstance(info.value, ImageSizeError)


def test_encode_image_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        encode_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        encode_image(np.zeros((10, 10, 3), np.uint8), quality=0)


# ----------------------------------------------------------------------------- dead letters


def test_dead_letter_round_trip_keeps_original_record() -> None:
    key, value, headers = make_frame().encode()
    headers = replace_header(headers, "camera", b"two")
    try:
        FrameMessage.decode(key, value, headers, topic="frames", partition=4, offset=123)
    except MessageError as exc:
        letter = DeadLetter.from_error(exc, key, value, headers, topic="frames", partition=4, offset=123)
    out_key, out_value, out_headers = letter.encode()
    assert out_key == key and out_value == value
    assert out_headers[: len(headers)] == headers
    assert [n for n, _ in out_headers[len(headers) :]] == list(DLQ_HEADER_NAMES)
    back = DeadLetter.decode(out_key, out_value, out_headers)
    assert back == letter
    assert back.error_kind == "bad_message"
    assert "'camera'='two' is not an integer" in back.error
    assert (back.source_topic, back.source_partition, back.source_offset) == ("frames", 4, 123)


def test_dead_letter_of_dead_letter_replaces_error_headers() -> None:
    first = DeadLetter.from_error(ValueError("first"), b"k", b"v", [("schema", b"1")], topic="frames", partition=0, offset=1)
    second = DeadLetter.from_error("second", *first.encode(), topic="frames.dlq", partition=0, offset=0, kind="replay")
    back = DeadLetter.decode(*second.encode())
    assert back.headers == (("schema", b"1"),)
    assert (back.error, back.error_kind, back.source_topic) == ("second", "replay", "frames.dlq")


def test_dead_letter_keeps_null_header_and_caps_error() -> None:
    letter = DeadLetter.from_error(RuntimeError("x" * 10_000), None, None, [("h", None)])
    _, _, headers = letter.encode()
    assert headers[0] == ("h", None)
    assert len(letter.error) <= 4000 and letter.error_kind == "RuntimeError"


def test_dead_letter_decode_needs_error_header() -> None:
    with pytest.raises(MessageError, match="'error' is missing"):
        DeadLetter.decode(b"k", b"v", [("schema", b"1")])
