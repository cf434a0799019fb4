"""The Kafka contract (schema version 1): one camera frame per record, metadata in headers.

Record layout (see ARCHITECTURE.md, "The Kafka contract"):

- key: ``"{car_id}:{camera}"`` (UTF-8), so one camera's shots stay in order on one partition
  while a car's cameras spread over partitions;
- value: the encoded image (JPEG by default);
- headers (UTF-8 text): ``schema``=1, ``car_id``, ``camera``, ``shot``, ``shots_per_car``,
  ``captured_at_ns``, ``deadline_at_ns``, ``content_type``.

`FrameMessage.decode` checks everything a consumer relies on and raises `MessageError` naming the
field, what was expected and which record it was. Every header is bounded to what the results
store holds, whatever the site: integers of at most 19 digits (refused before `int()`), camera,
shot and shots_per_car below 2^31, times below 2^63 ns, car_id printable and at most 64 characters;
values quoted in errors are cut (`short_text`). What depends on the site's line and the consumer's
clock is checked by `validation.py`; `decode_image` turns the payload into an RGB
array and raises `ImageError` / `ImageSizeError`. A record failing either goes to the dead-letter
topic as a `DeadLetter`: the original key, value and headers plus ``error``, ``error_kind`` and
the record's source topic/partition/offset.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, Sequence

import cv2
import numpy as np
import simplejpeg

from .tiling import FrameSizeError

SCHEMA_VERSION = 1

# Header names of schema version 1, in the order producers write them.
HEADER_NAMES: tuple[str, ...] = (
    "schema",
    "car_id",
    "camera",
    "shot",
    "shots_per_car",
    "captured_at_ns",
    "deadline_at_ns",
    "content_type",
)
CONTENT_TYPES: tuple[str, ...] = ("image/jpeg", "image/png")

# Bounds of the contract, what the results store holds (tests check they agree with its columns).
CAR_ID_MAX_CHARS = 64  # cars.car_id VARCHAR(64)
INDEX_MAX = 2**31 - 1  # camera, shot, shots_per_car: INTEGER columns
TIME_NS_MAX = 2**63 - 1  # captured_at_ns, deadline_at_ns: 64-bit nanoseconds (until 2262)
INT_DIGITS_MAX = 19  # decimal digits of the largest 64-bit integer; longer texts are refused before int()

# Key, headers and record-batch framing of one frame record take a few hundred bytes; this
# headroom keeps a payload at the limit deliverable under `message.max.bytes`.
RECORD_OVERHEAD_BYTES = 16 * 1024
# A dead letter adds `error` & co. to the original record; its topic allows this much more.
DLQ_HEADROOM_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4000

Headers = Sequence[tuple[str, bytes | str | None]]

_INT_RE = re.compile(r"-?[0-9]+")


def payload_limit(message_max_bytes: int) -> int:
    """Largest image payload (bytes) a frame record may carry under `kafka.message_max_bytes`.

    Producers refuse larger payloads and consumers reject them, so both sides agree.
    """
    return message_max_bytes - RECORD_OVERHEAD_BYTES


# ----------------------------------------------------------------------------- errors


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
            parts.append(
                "frame " + " ".join(
                    f"{name}={short_text(value, quote=False)}"
                    for name, value in (("car", self.car_id), ("cam", self.camera), ("shot", self.shot))
                    if value is not None
                )
            )
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


# ----------------------------------------------------------------------------- frame message


class EncodedRecord(NamedTuple):
    """What goes to / comes from Kafka: key, value and headers in confluent-kafka's shapes."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True, kw_only=True)
class FrameMessage:
    """One camera frame on the `frames` topic.

    camera and shot are 0-based: `shot` indexes the camera's shots of this car. `shots_per_car`
    is the number of frames the whole car produces over all cameras (5 cameras × 19 shots = 95),
    so a consumer knows when a car is complete; shot < shots_per_car always holds.
    `captured_at_ns` / `deadline_at_ns` are wall-clock nanoseconds since the Unix epoch; the
    deadline is the next car's arrival. Construction validates all fields (raises MessageError).
    """

    car_id: str
    camera: int
    shot: int
    shots_per_car: int
    captured_at_ns: int
    deadline_at_ns: int
    content_type: str = "image/jpeg"
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _validate(self, RecordRef(car_id=self.car_id, camera=self.camera, shot=self.shot))

    @property
    def key(self) -> str:
        return f"{self.car_id}:{self.camera}"

    @property
    def label(self) -> str:
        """Frame identity, "car=... cam=... shot=...", for log lines and error messages."""
        return f"car={self.car_id} cam={self.camera} shot={self.shot}"

    def headers(self) -> list[tuple[str, bytes]]:
        values = (
            SCHEMA_VERSION,
            self.car_id,
            self.camera,
            self.shot,
            self.shots_per_car,
            self.captured_at_ns,
            self.deadline_at_ns,
            self.content_type,
        )
        return [(name, str(value).encode("utf-8")) for name, value in zip(HEADER_NAMES, values)]

    def encode(self) -> EncodedRecord:
        return EncodedRecord(self.key.encode("utf-8"), self.payload, self.headers())

    @classmethod
    def decode(
        cls,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None,
        *,
        max_payload_bytes: int | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> "FrameMessage":
        """Parse and validate a record; raises MessageError naming the field and the record.

        `max_payload_bytes` (usually `payload_limit(kafka.message_max_bytes)`) rejects larger
        payloads with PayloadTooLargeError. A header given twice counts with its last value
        (Kafka's `lastHeader` rule).
        """
        ref = RecordRef(topic=topic, partition=partition, offset=offset)
        texts = _header_texts(headers, ref)

        def require(name: str) -> str:
            if name not in texts:
                present = ", ".join(sorted(texts)) or "none"
                raise MessageError(
                    f"header {name!r} is missing (schema {SCHEMA_VERSION} needs {', '.join(HEADER_NAMES)}; "
                    f"present: {present})",
                    field=name,
                    ref=ref,
                )
            return texts[name]

        schema = require("schema")
        if schema.strip() != str(SCHEMA_VERSION):
            raise MessageError(
                f"header 'schema'={schema!r} is not a known schema version (this consumer reads {SCHEMA_VERSION})",
                field="schema",
                ref=ref,
            )
        car_id = require("car_id")
        ref = RecordRef(topic, partition, offset, car_id=car_id)
        camera = _parse_count(require("camera"), "camera", "a 0-based camera index", ref)
        ref = RecordRef(topic, partition, offset, car_id=car_id, camera=camera)
        shot = _parse_count(require("shot"), "shot", "a 0-based shot index", ref)
        ref = RecordRef(topic, partition, offset, car_id=car_id, camera=camera, shot=shot)
        shots_per_car = _parse_count(require("shots_per_car"), "shots_per_car", "the car's frame count", ref)
        captured = _parse_count(require("captured_at_ns"), "captured_at_ns", "nanoseconds since the epoch", ref)
        deadline = _parse_count(require("deadline_at_ns"), "deadline_at_ns", "nanoseconds since the epoch", ref)
        content_type = require("content_type")

        frame = _construct(
            ref,
            car_id=car_id,
            camera=camera,
            shot=shot,
            shots_per_car=shots_per_car,
            captured_at_ns=captured,
            deadline_at_ns=deadline,
            content_type=content_type,
            payload=b"" if value is None else bytes(value),
        )
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key_text != frame.key:
            raise MessageError(
                f"key {key_text!r} does not match the headers; expected {frame.key!r} (\"car_id:camera\")",
                field="key",
                ref=ref,
            )
        if max_payload_bytes is not None and len(frame.payload) > max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(frame.payload)} bytes exceeds the limit of {max_payload_bytes} bytes "
                "(configs: kafka.message_max_bytes, agreed by producer, topic and consumer)",
                field="payload",
                ref=ref,
            )
        return frame

    @classmethod
    def from_kafka(cls, msg: "KafkaRecord", *, max_payload_bytes: int | None = None) -> "FrameMessage":
        """`decode` a confluent_kafka.Message (error-free), with its topic/partition/offset for errors."""
        return cls.decode(
            msg.key(),
            msg.value(),
            msg.headers(),
            max_payload_bytes=max_payload_bytes,
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
        )


@dataclass(frozen=True)
class SourceRecord:
    """A record as polled, before any decoding: what a dead letter and a rejected row are made of."""

    key: bytes | None
    value: bytes | None = field(repr=False)
    headers: tuple[tuple[str, bytes | None], ...] = ()
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    @classmethod
    def from_kafka(cls, msg: "KafkaRecord") -> "SourceRecord":
        key = msg.key()
        return cls(
            key=key.encode("utf-8") if isinstance(key, str) else key,
            value=msg.value(),
            headers=tuple(_as_bytes_headers(msg.headers())),
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
        )

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.topic, self.partition, self.offset)

    def decode(self, max_payload_bytes: int | None = None) -> "FrameMessage":
        """`FrameMessage.decode` of this record, errors naming its topic/partition/offset."""
        return FrameMessage.decode(
            self.key, self.value, self.headers, max_payload_bytes=max_payload_bytes,
            topic=self.topic, partition=self.partition, offset=self.offset,
        )

    def dead_letter(self, exc: BaseException | str, *, kind: str | None = None) -> "DeadLetter":
        return DeadLetter.from_error(
            exc, self.key, self.value, self.headers,
            topic=self.topic, partition=self.partition, offset=self.offset, kind=kind,
        )


class KafkaRecord(Protocol):
    """The parts of confluent_kafka.Message this module reads."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


def _header_texts(headers: Headers | None, ref: RecordRef) -> dict[str, str]:
    texts: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:
            continue  # a null header value counts as absent; `require` reports it
        if isinstance(raw, str):
            texts[name] = raw
            continue
        try:
            texts[name] = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(f"header {name!r} is not valid UTF-8: {bytes(raw)[:40]!r}", field=name, ref=ref) from None
    return texts


def _parse_count(text: str, name: str, meaning: str, ref: RecordRef) -> int:
    stripped = text.strip()
    if not _INT_RE.fullmatch(stripped):
        raise MessageError(
            f"header {name!r}={short_text(text)} is not an integer; expected {meaning} (decimal digits)",
            field=name,
            ref=ref,
        )
    digits = len(stripped.lstrip("-"))
    if digits > INT_DIGITS_MAX:  # bounded before int(): Python refuses > 4300 digits, and no column holds them
        raise MessageError(
            f"header {name!r} has {digits} digits; expected {meaning} of at most {INT_DIGITS_MAX} digits (a 64-bit integer)",
            field=name,
            ref=ref,
        )
    return int(stripped)


def short_text(value: object, limit: int = 40, *, quote: bool = True) -> str:
    """A header value for an error message: its repr (bare when `quote` is off and the value is
    short printable text), cut to `limit` characters so a hostile value cannot flood logs and rows."""
    if not quote and isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) <= limit:
        return str(value)
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _construct(ref: RecordRef, **fields: Any) -> FrameMessage:
    # Validation in __post_init__ only knows car/camera/shot; re-raise with topic/partition/offset.
    try:
        return FrameMessage(**fields)
    except MessageError as exc:
        raise type(exc)(exc.problem, field=exc.field, ref=ref) from None


def _validate(msg: FrameMessage, ref: RecordRef) -> None:
    """The contract's own bounds: what every record must keep whatever the line (see validation.py for those)."""
    if not isinstance(msg.car_id, str) or not msg.car_id.strip():
        raise MessageError(f"car_id {short_text(msg.car_id)} must be a non-empty string", field="car_id", ref=ref)
    if len(msg.car_id) > CAR_ID_MAX_CHARS:
        raise MessageError(
            f"car_id of {len(msg.car_id)} characters is too long; at most {CAR_ID_MAX_CHARS}", field="car_id", ref=ref
        )
    if not msg.car_id.isprintable():
        bad = next(c for c in msg.car_id if not c.isprintable())
        raise MessageError(
            f"car_id {short_text(msg.car_id)} holds the control/unprintable character U+{ord(bad):04X}; "
            "expected printable text",
            field="car_id",
            ref=ref,
        )
    for name in ("camera", "shot", "shots_per_car", "captured_at_ns", "deadline_at_ns"):
        value = getattr(msg, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MessageError(f"{name}={short_text(value)} must be an integer", field=name, ref=ref)
        if value < 0:
            raise MessageError(f"{name}={value} is negative; expected a value >= 0", field=name, ref=ref)
        limit = TIME_NS_MAX if name.endswith("_ns") else INDEX_MAX
        if value > limit:
            what = "2^63-1 ns (the year 2262)" if name.endswith("_ns") else "2^31-1"
            raise MessageError(f"{name}={short_text(value)} is out of range; at most {what}", field=name, ref=ref)
    if msg.shots_per_car == 0:
        raise MessageError("shots_per_car=0; a car has at least one frame", field="shots_per_car", ref=ref)
    if msg.shot >= msg.shots_per_car:
        raise MessageError(
            f"shot={msg.shot} is out of range; expected 0 <= shot < shots_per_car={msg.shots_per_car}",
            field="shot",
            ref=ref,
        )
    if msg.content_type not in CONTENT_TYPES:
        raise MessageError(
            f"content_type {short_text(msg.content_type)} is not supported; expected one of {', '.join(CONTENT_TYPES)}",
            field="content_type",
            ref=ref,
        )
    if not isinstance(msg.payload, (bytes, bytearray, memoryview)):
        raise MessageError(f"payload is {type(msg.payload).__name__}, expected bytes", field="payload", ref=ref)
    if len(msg.payload) == 0:
        raise MessageError("payload is empty; expected an encoded image", field="payload", ref=ref)


# ----------------------------------------------------------------------------- images


def image_size(payload: bytes) -> tuple[int, int] | None:
    """(width, height) read from a JPEG's SOF or a PNG's IHDR header without decoding; None if unknown."""
    if payload[:8] == b"\x89PNG\r\n\x1a\n" and len(payload) >= 24:
        width, height = struct.unpack(">II", payload[16:24])
        return int(width), int(height)
    if payload[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(payload)
    while i + 4 <= n:
        if payload[i] != 0xFF:
            return None
        marker = payload[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", payload[i + 2 : i + 4])
        # SOF0..SOF15 carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", payload[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def _check_size(width: int, height: int, expected_wh: tuple[int, int] | None, what: str) -> None:
    if expected_wh is not None and (width, height) != tuple(expected_wh):
        ew, eh = expected_wh
        raise ImageSizeError(
            f"{what} is {width}×{height}, grid expects {ew}×{eh} (configs: grid.frame_width / grid.frame_height)",
            field="payload",
        )


def check_frame_size(payload: bytes, expected_wh: tuple[int, int] | None, what: str = "frame") -> None:
    """Refuse a wrong-size frame from its image header alone, before any decoding (ImageSizeError)."""
    size = image_size(payload)
    if size is not None:
        _check_size(*size, expected_wh, what)


def decode_image(
    payload: bytes,
    expected_wh: tuple[int, int] | None = None,
    *,
    what: str = "frame",
) -> np.ndarray:
    """Decode a JPEG/PNG payload to an (H, W, 3) uint8 RGB array.

    `expected_wh` = (width, height) of the configured grid; a mismatch raises ImageSizeError
    before the (costly) decode when the header reveals the size. A corrupt or truncated image
    raises ImageError. `what` names the frame in messages (e.g. `FrameMessage.label`).
    Callers re-raise with the record's RecordRef for dead letters.
    """
    data = bytes(payload)
    if not data:
        raise ImageError(f"{what}: payload is empty", field="payload")
    is_jpeg = data[:2] == b"\xff\xd8"
    if is_jpeg and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        # libjpeg fills a truncated scan with grey and only warns; a missing EOI marker catches it.
        raise ImageError(f"{what}: JPEG is truncated (no end-of-image marker) after {len(data)} bytes", field="payload")
    check_frame_size(data, expected_wh, what)
    if is_jpeg:
        try:
            # libjpeg-turbo in strict mode: a damaged scan is an error, not a grey-filled frame
            # (OpenCV only prints libjpeg's "premature end of data segment" warning and returns it).
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
        except ValueError as exc:
            raise ImageError(f"{what}: corrupt JPEG of {len(data)} bytes ({exc})", field="payload") from None
        _check_size(image.shape[1], image.shape[0], expected_wh, what)
        return image
    buf = np.frombuffer(data, np.uint8)
    try:
        if hasattr(cv2, "IMREAD_COLOR_RGB"):
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
        else:  # OpenCV < 4.10
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if image is not None:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:
        raise ImageError(f"{what}: image cannot be decoded ({exc})", field="payload") from None
    if image is None:
        kind = "JPEG" if is_jpeg else "image (not JPEG/PNG?)"
        raise ImageError(f"{what}: corrupt {kind} of {len(data)} bytes, OpenCV cannot decode it", field="payload")
    _check_size(image.shape[1], image.shape[0], expected_wh, what)
    return image


def encode_image(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG-encode an (H, W, 3) uint8 RGB array (quality 1..100)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_image needs an (H, W, 3) uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality} out of range 1..100 (configs: line.jpeg_quality)")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV failed to JPEG-encode an array of shape {rgb.shape}")
    return buf.tobytes()


# ----------------------------------------------------------------------------- dead letters

DLQ_HEADER_NAMES: tuple[str, ...] = ("error", "error_kind", "source_topic", "source_partition", "source_offset")


@dataclass(frozen=True)
class DeadLetter:
    """A record that could not be processed, as written to the dead-letter topic.

    The original key, value and headers travel unchanged (value may be any bytes, even
    corrupt); `error` says what was wrong, `error_kind` classifies it (see `error_kind()`).
    """

    key: bytes | None
    value: bytes | None = field(repr=False)
    headers: tuple[tuple[str, bytes | None], ...]
    error: str
    error_kind: str
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None

    @classmethod
    def from_error(
        cls,
        exc: BaseException | str,
        key: bytes | str | None,
        value: bytes | None,
        headers: Headers | None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        kind: str | None = None,
    ) -> "DeadLetter":
        """Build the dead letter of a failed record; `kind` defaults to `error_kind(exc)`."""
        if isinstance(exc, BaseException):
            text, default_kind = str(exc) or type(exc).__name__, error_kind(exc)
        else:
            text, default_kind = exc, "error"
        return cls(
            key=key.encode("utf-8") if isinstance(key, str) else key,
            value=value,
            headers=tuple(_as_bytes_headers(headers)),
            error=text[:MAX_ERROR_CHARS],
            error_kind=kind or default_kind,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
        )

    @classmethod
    def from_kafka(cls, msg: KafkaRecord, exc: BaseException | str, *, kind: str | None = None) -> "DeadLetter":
        """The dead letter of a consumed confluent_kafka.Message that failed with `exc`."""
        return cls.from_error(
            exc, msg.key(), msg.value(), msg.headers(),
            topic=msg.topic(), partition=msg.partition(), offset=msg.offset(), kind=kind,
        )

    def dlq_headers(self) -> list[tuple[str, bytes]]:
        extra = [("error", self.error), ("error_kind", self.error_kind)]
        for name, value in (
            ("source_topic", self.source_topic),
            ("source_partition", self.source_partition),
            ("source_offset", self.source_offset),
        ):
            if value is not None:
                extra.append((name, str(value)))
        return [(name, text.encode("utf-8")) for name, text in extra]

    def encode(self) -> EncodedRecord:
        """Original headers (any earlier dead-letter headers dropped) followed by this one's.

        Null header values of the original stay null (confluent-kafka accepts None).
        """
        original = [(n, v) for n, v in self.headers if n not in DLQ_HEADER_NAMES]
        return EncodedRecord(self.key, self.value, original + self.dlq_headers())

    @classmethod
    def decode(cls, key: bytes | None, value: bytes | None, headers: Headers | None) -> "DeadLetter":
        """Split a dead-letter record back into the original record and the error description."""
        pairs = _as_bytes_headers(headers)
        meta = {n: v.decode("utf-8", "replace") for n, v in pairs if n in DLQ_HEADER_NAMES and v is not None}
        if "error" not in meta:
            raise MessageError("header 'error' is missing; not a dead-letter record", field="error")

        def as_int(name: str) -> int | None:
            text = meta.get(name)
            return int(text) if text is not None and _INT_RE.fullmatch(text) else None

        return cls(
            key=key,
            value=value,
            headers=tuple((n, v) for n, v in pairs if n not in DLQ_HEADER_NAMES),
            error=meta["error"],
            error_kind=meta.get("error_kind", "error"),
            source_topic=meta.get("source_topic"),
            source_partition=as_int("source_partition"),
            source_offset=as_int("source_offset"),
        )


def _as_bytes_headers(headers: Headers | None) -> list[tuple[str, bytes | None]]:
    return [
        (name, raw if raw is None else raw.encode("utf-8") if isinstance(raw, str) else bytes(raw))
        for name, raw in headers or ()
    ]
