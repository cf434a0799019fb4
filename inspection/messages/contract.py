"""The Kafka contract (schema version 1): one camera frame per record, metadata in headers.

Record layout (see ARCHITECTURE.md, "The Kafka contract"):

- key: ``"{car_id}:{camera}"`` (UTF-8), so one camera's shots stay in order on one partition
  while a car's cameras spread over partitions;
- value: the encoded image (JPEG by default);
- headers (UTF-8 text): ``schema``=1, ``car_id``, ``camera``, ``shot``, ``shots_per_car``,
  ``captured_at_ns``, ``deadline_at_ns``, ``content_type``.

`FrameMessage.decode` checks everything a consumer relies on and raises `MessageError` naming the
field, what was expected and which record it was. Every header is bounded to what the results
store holds, whatever the site: integers of at most 19 digits (refused before `int()`), the frame's
identity as `FrameId` keeps it (camera, shot and shots_per_car below 2^31, car_id printable and at
most 64 characters), times below 2^63 ns; values quoted in errors are cut (`short_text`). What
depends on the site's line and the consumer's clock is checked by `validation.py`; the payload's
image by `images.py`. A refused record goes to the dead-letter topic (`dead_letters.py`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from .errors import MessageError, PayloadTooLargeError, RecordRef
from .frame_id import FrameId, FrameIdError
from .text import short_text

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

# Bounds of the contract beyond the frame's identity (FrameId), what the results store holds.
TIME_NS_MAX = 2**63 - 1  # captured_at_ns, deadline_at_ns: 64-bit nanoseconds (until 2262)
INT_DIGITS_MAX = 19  # decimal digits of the largest 64-bit integer; longer texts are refused before int()

# Key, headers and record-batch framing of one frame record take a few hundred bytes; this
# headroom keeps a payload at the limit deliverable under `message.max.bytes`.
RECORD_OVERHEAD_BYTES = 16 * 1024

Headers = Sequence[tuple[str, bytes | str | None]]

INT_RE = re.compile(r"-?[0-9]+")


def payload_limit(message_max_bytes: int) -> int:
    """Largest image payload (bytes) a frame record may carry under `kafka.message_max_bytes`.

    Producers refuse larger payloads and consumers reject them, so both sides agree.
    """
    return message_max_bytes - RECORD_OVERHEAD_BYTES


class EncodedRecord(NamedTuple):
    """What goes to / comes from Kafka: key, value and headers in confluent-kafka's shapes."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


@dataclass(frozen=True, kw_only=True)
class FrameMessage:
    """One camera frame on the `frames` topic.

    `frame_id` says which frame of which car (see `FrameId`: camera and shot 0-based, `shots_per_car`
    the frames of the whole car over all cameras, 5 cameras × 19 shots = 95, so a consumer knows
    when a car is complete).
    `captured_at_ns` / `deadline_at_ns` are wall-clock nanoseconds since the Unix epoch; the
    deadline is the next car's arrival. Construction validates all fields (raises MessageError).
    """

    frame_id: FrameId
    captured_at_ns: int
    deadline_at_ns: int
    content_type: str = "image/jpeg"
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _validate(self, RecordRef(car_id=self.car_id, camera=self.camera, shot=self.shot))

    # The identity's parts, read through: the frame's identity is `frame_id`, validated once.
    @property
    def car_id(self) -> str:
        return self.frame_id.car_id

    @property
    def camera(self) -> int:
        return self.frame_id.camera

    @property
    def shot(self) -> int:
        return self.frame_id.shot

    @property
    def shots_per_car(self) -> int:
        return self.frame_id.shots_per_car

    @property
    def key(self) -> str:
        return self.frame_id.key

    @property
    def label(self) -> str:
        """Frame identity, "car=... cam=... shot=...", for log lines and error messages."""
        return self.frame_id.label

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
    ) -> FrameMessage:
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
                    f"header {name!r} is missing (schema {SCHEMA_VERSION} needs {', '.join(HEADER_NAMES)}; present: {present})",
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
            frame_id=_frame_id(ref, car_id, camera, shot, shots_per_car),
            captured_at_ns=captured,
            deadline_at_ns=deadline,
            content_type=content_type,
            payload=b"" if value is None else bytes(value),
        )
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key_text != frame.key:
            raise MessageError(
                f'key {key_text!r} does not match the headers; expected {frame.key!r} ("car_id:camera")',
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
    def from_kafka(cls, msg: KafkaRecord, *, max_payload_bytes: int | None = None) -> FrameMessage:
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
    def from_kafka(cls, msg: KafkaRecord) -> SourceRecord:
        key = msg.key()
        return cls(
            key=key.encode("utf-8") if isinstance(key, str) else key,
            value=msg.value(),
            headers=tuple(as_bytes_headers(msg.headers())),
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
        )

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.topic, self.partition, self.offset)

    def decode(self, max_payload_bytes: int | None = None) -> FrameMessage:
        """`FrameMessage.decode` of this record, errors naming its topic/partition/offset."""
        return FrameMessage.decode(
            self.key,
            self.value,
            self.headers,
            max_payload_bytes=max_payload_bytes,
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
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
    if not INT_RE.fullmatch(stripped):
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


def _frame_id(ref: RecordRef, car_id: str, camera: int, shot: int, shots_per_car: int) -> FrameId:
    try:
        return FrameId(car_id, camera, shot, shots_per_car)
    except FrameIdError as exc:
        raise MessageError(exc.problem, field=exc.field, ref=ref) from None


def _construct(ref: RecordRef, **fields: Any) -> FrameMessage:
    # Validation in __post_init__ only knows car/camera/shot; re-raise with topic/partition/offset.
    try:
        return FrameMessage(**fields)
    except MessageError as exc:
        raise type(exc)(exc.problem, field=exc.field, ref=ref) from None


def _validate(msg: FrameMessage, ref: RecordRef) -> None:
    """The contract's own bounds: what every record must keep whatever the line (see validation.py for those)."""
    if not isinstance(msg.frame_id, FrameId):
        raise MessageError(f"frame_id is {type(msg.frame_id).__name__}, expected FrameId", field="frame_id", ref=ref)
    for name in ("captured_at_ns", "deadline_at_ns"):
        value = getattr(msg, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MessageError(f"{name}={short_text(value)} must be an integer", field=name, ref=ref)
        if value < 0:
            raise MessageError(f"{name}={value} is negative; expected a value >= 0", field=name, ref=ref)
        if value > TIME_NS_MAX:
            raise MessageError(
                f"{name}={short_text(value)} is out of range; at most 2^63-1 ns (the year 2262)", field=name, ref=ref
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


def as_bytes_headers(headers: Headers | None) -> list[tuple[str, bytes | None]]:
    return [
        (name, raw if raw is None else raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)) for name, raw in headers or ()
    ]
