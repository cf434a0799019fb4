"""SQLAlchemy models of the results database: runs, cars, frames, detections, rejected messages.

Time is stored as real timestamp columns in UTC (`TIMESTAMP WITH TIME ZONE` on PostgreSQL,
ISO text `YYYY-MM-DD HH:MM:SS.ffffff` in UTC on SQLite) so analysts can query plain SQL;
durations are float seconds (`latency_s`, `lateness_s`). Python always sees timezone-aware
UTC datetimes, whatever the backend. Timestamps keep microseconds: the nanosecond capture
times of the Kafka headers lose their last three digits, latencies are computed from the
nanoseconds before rounding.

Boxes are xyxy in frame pixels (after stitching). The schema is created by the Alembic
migrations in `migrations/versions`; a test checks that they and these models agree.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Explicit constraint names keep migrations and models comparable on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CAR_ID_MAX = 64
ERROR_KIND_MAX = 32
KAFKA_TOPIC_MAX = 255
# Keys of broken messages are arbitrary bytes from the wire: keep enough to find the message.
MESSAGE_KEY_MAX = 255
IMAGE_DIR_MAX = 1024

# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in and out; naive datetimes are refused (ambiguous)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime (UTC)")
        value = value.astimezone(timezone.utc)
        # SQLite has no time zone type: store UTC wall time so text comparisons order correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ScoredBox:
    """The columns of a scored box in frame pixels (xyxy), shared by every table of boxes."""

    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    class_name: Mapped[str] = mapped_column(String(64), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    x1: Mapped[float] = mapped_column(Float, nullable=False)
    y1: Mapped[float] = mapped_column(Float, nullable=False)
    x2: Mapped[float] = mapped_column(Float, nullable=False)
    y2: Mapped[float] = mapped_column(Float, nullable=False)


class Run(Base):
    """One consumer process (or demo / evaluation run) writing results."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    backend: Mapped[str] = mapped_column(String(32), nullable=False)
    precision: Mapped[str] = mapped_column(String(16), nullable=False)
    config_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    consumer_id: Mapped[str] = mapped_column(String(255), nullable=False)
    # absolute directory the run's frames.image_uri are relative to (None: the run kept no images)
    image_dir: Mapped[str | None] = mapped_column(String(IMAGE_DIR_MAX), nullable=True)


class Car(Base):
    """One car on the line; completion is set once, by whichever consumer stores its last frame."""

    __tablename__ = "cars"
    # the dashboard's newest-first car list and "today" figures (migration 0004)
    __table_args__ = (Index(None, "first_captured_at", "car_id"),)

    car_id: Mapped[str] = mapped_column(String(CAR_ID_MAX), primary_key=True)
    frames_expected: Mapped[int] = mapped_column(Integer, nullable=False)
    frames_done: Mapped[int] = mapped_column(Integer, nullable=False)
    first_captured_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # processed_at of the car's last handled frame, set when frames_done reaches frames_expected
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deadline_met: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # completed_at - deadline_at in seconds: negative = early, positive = late
    lateness_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    # when an edge consumer found the car past its deadline (+ overdue.grace_s) with frames missing;
    # set once and kept when late frames complete the car afterwards (deadline_met false then)
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # the frames missing at that moment, e.g. "cam 1 shots 0-4; cam 3 shot 7"
    missing_frames: Mapped[str | None] = mapped_column(Text, nullable=True)


class Frame(Base):
    """One camera shot of one car: a detection result, or an error row (error set, no detections)."""

    __tablename__ = "frames"
    __table_args__ = (
        UniqueConstraint("car_id", "camera", "shot"),
        Index(None, "run_id"),
        # analyst time ranges and the dashboard's throughput/latency charts (migration 0004)
        Index(None, "captured_at"),
        Index(None, "processed_at"),
        # the problems page: error rows only, newest first (partial: errors are rare)
        Index(
            "ix_frames_processed_at_errors",
            "processed_at",
            postgresql_where=text("error IS NOT NULL"),
            sqlite_where=text("error IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    car_id: Mapped[str] = mapped_column(ForeignKey("cars.car_id"), nullable=False)
    camera: Mapped[int] = mapped_column(Integer, nullable=False)
    shot: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # processed_at - captured_at in seconds, from the nanosecond clocks
    latency_s: Mapped[float] = mapped_column(Float, nullable=False)
    image_uri: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(ERROR_KIND_MAX), nullable=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), nullable=False)
    kafka_topic: Mapped[str | None] = mapped_column(String(255), nullable=True)
    kafka_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detection_count: Mapped[int] = mapped_column(Integer, nullable=False)


class Detection(ScoredBox, Base):
    """One box of one frame, in frame pixels."""

    __tablename__ = "detections"
    __table_args__ = (
        Index(None, "frame_id"),
        Index(None, "class_id", "score"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), nullable=False)
    # tile of the 64-tile batch the box came from; -1 once merged across tiles
    tile_index: Mapped[int] = mapped_column(Integer, nullable=False, sort_order=1)  # after the box columns


class RejectedMessageRow(Base):
    """A Kafka message too broken to name a frame (no car/camera/shot), parked on the dead-letter topic.

    One row per message: (topic, partition, offset) is unique, a redelivery updates the row.
    """

    __tablename__ = "rejected_messages"
    __table_args__ = (
        UniqueConstraint("kafka_topic", "kafka_partition", "kafka_offset"),
        Index(None, "run_id"),
        Index(None, "received_at"),  # the problems page, newest first (migration 0004)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # when the consumer polled it (the latest delivery)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    kafka_topic: Mapped[str] = mapped_column(String(KAFKA_TOPIC_MAX), nullable=False)
    kafka_partition: Mapped[int] = mapped_column(Integer, nullable=False)
    kafka_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # decoded as UTF-8 with undecodable bytes replaced, truncated to MESSAGE_KEY_MAX characters
    message_key: Mapped[str | None] = mapped_column(String(MESSAGE_KEY_MAX), nullable=True)
    error_kind: Mapped[str] = mapped_column(String(ERROR_KIND_MAX), nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)


# --- issue 19: the inspection verdict of each car, its defects, and the line-signal outbox ----------

VERDICT_MAX = 16
RULES_HASH_MAX = 64
RULE_NAME_MAX = 128
MODEL_NAME_MAX = 128


class CarVerdict(Base):
    """A car's inspection verdict (ok / ng / incomplete / error), decided once and never rewritten.

    Written in the transaction that completes the car (or, for `incomplete`, the one that marks it
    overdue). `rules_hash` and `model` say which rule set and detector decided it, so a later rule
    change leaves this row as it was.
    """

    __tablename__ = "car_verdicts"
    __table_args__ = (Index(None, "decided_at"), Index(None, "verdict"))

    car_id: Mapped[str] = mapped_column(ForeignKey("cars.car_id"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(VERDICT_MAX), nullable=False)
    rules_hash: Mapped[str] = mapped_column(String(RULES_HASH_MAX), nullable=False)
    model: Mapped[str] = mapped_column(String(MODEL_NAME_MAX), nullable=False)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    defects: Mapped[int] = mapped_column(Integer, nullable=False)  # defect boxes the rules kept over all frames
    # why, in one line: "2 scratch >= count 2 (cam 1 shot 4, …)", "frames missing: cam 1 shots 0-4", "3 frames failed"
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # first captured -> decided, seconds
    car_latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class FrameDefect(ScoredBox, Base):
    """One box of a frame the rules looked at: a defect they kept (`kept`), or one an ignore mask removed.

    A copy of the detection (not a reference): a redelivered frame replaces its detections, the
    verdict's reasons stay as they were decided.
    """

    __tablename__ = "frame_defects"
    __table_args__ = (Index(None, "car_id"), Index(None, "frame_id"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    car_id: Mapped[str] = mapped_column(ForeignKey("car_verdicts.car_id", ondelete="CASCADE"), nullable=False)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), nullable=False)
    # the rule that kept it ("defect scratch: score >= 0.5, size >= 20 px") or the mask that removed it
    rule: Mapped[str] = mapped_column(String(RULE_NAME_MAX), nullable=False, sort_order=1)
    kept: Mapped[bool] = mapped_column(Boolean, nullable=False, sort_order=1)


class SignalOutbox(Base):
    """A decided car's line signal waiting to be published (transactional outbox).

    The row is inserted in the transaction that writes the verdict and deleted once every
    enabled sink (MQTT, OPC UA) took it; one row per car.
    """

    __tablename__ = "signal_outbox"
    __table_args__ = (UniqueConstraint("car_id"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    car_id: Mapped[str] = mapped_column(String(CAR_ID_MAX), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # the JSON message, as published
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
