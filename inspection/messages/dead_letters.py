"""Dead letters: a refused record as written to the dead-letter topic, and read back.

The original key, value and headers travel unchanged, plus ``error``, ``error_kind`` and the
record's source topic/partition/offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .contract import INT_RE, EncodedRecord, Headers, KafkaRecord, SourceRecord, as_bytes_headers
from .errors import MessageError, error_kind

# A dead letter adds `error` & co. to the original record; its topic allows this much more.
DLQ_HEADROOM_BYTES = 64 * 1024
MAX_ERROR_CHARS = 4000

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
    ) -> DeadLetter:
        """Build the dead letter of a failed record; `kind` defaults to `error_kind(exc)`."""
        if isinstance(exc, BaseException):
            text, default_kind = str(exc) or type(exc).__name__, error_kind(exc)
        else:
            text, default_kind = exc, "error"
        return cls(
            key=key.encode("utf-8") if isinstance(key, str) else key,
            value=value,
            headers=tuple(as_bytes_headers(headers)),
            error=text[:MAX_ERROR_CHARS],
            error_kind=kind or default_kind,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
        )

    @classmethod
    def from_kafka(cls, msg: KafkaRecord, exc: BaseException | str, *, kind: str | None = None) -> DeadLetter:
        """The dead letter of a consumed confluent_kafka.Message that failed with `exc`."""
        return cls.from_error(
            exc,
            msg.key(),
            msg.value(),
            msg.headers(),
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            kind=kind,
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
    def decode(cls, key: bytes | None, value: bytes | None, headers: Headers | None) -> DeadLetter:
        """Split a dead-letter record back into the original record and the error description."""
        pairs = as_bytes_headers(headers)
        meta = {n: v.decode("utf-8", "replace") for n, v in pairs if n in DLQ_HEADER_NAMES and v is not None}
        if "error" not in meta:
            raise MessageError("header 'error' is missing; not a dead-letter record", field="error")

        def as_int(name: str) -> int | None:
            text = meta.get(name)
            return int(text) if text is not None and INT_RE.fullmatch(text) else None

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


def dead_letter_of(source: SourceRecord, exc: BaseException | str, *, kind: str | None = None) -> DeadLetter:
    """The dead letter of a polled record that failed with `exc`."""
    return DeadLetter.from_error(
        exc,
        source.key,
        source.value,
        source.headers,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        kind=kind,
    )
