"""Tables of the analyst's loop, written beside the detections and never over them (migrations 0006/0007).

- `reviews`: one row per frame review (who, when, the model of the run that made the boxes, the
  rules version and the car verdict the reviewer was shown, the operating threshold, which queue
  bucket the frame came from, a free-text note).
- `review_decisions`: confirm / reject of one stored detection, with a reason code; the box is
  copied so the review stays readable if a redelivered frame replaces its detection rows.
- `review_boxes`: a box the model missed, drawn by the reviewer, with a class and a reason code.
- `shadow_frames` / `shadow_detections` / `shadow_verdicts`: a candidate model's results and car
  verdicts on the line's frames, tagged with the model's name, apart from the deployed model's
  `frames` / `detections` / `car_verdicts`.

The latest review of a frame is the one that counts (export, eval); older ones stay as history.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import CAR_ID_MAX, ERROR_KIND_MAX, KAFKA_TOPIC_MAX, Base, BigIntId, ScoredBox, UTCDateTime

REVIEWER_MAX = 64
MODEL_MAX = 128
REASON_MAX = 32
NOTE_MAX = 2000
VERDICT_MAX = 16
RULES_VERSION_MAX = 64


class ReviewRow(Base):
    __tablename__ = "reviews"
    __table_args__ = (Index(None, "frame_id", "reviewed_at"), Index(None, "reviewed_at"), Index(None, "car_id"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    frame_id: Mapped[int] = mapped_column(ForeignKey("frames.id", ondelete="CASCADE"), nullable=False)
    car_id: Mapped[str] = mapped_column(String(CAR_ID_MAX), nullable=False)
    reviewer: Mapped[str] = mapped_column(String(REVIEWER_MAX), nullable=False)
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    rules_version: Mapped[str | None] = mapped_column(String(RULES_VERSION_MAX), nullable=True)
    verdict_seen: Mapped[str | None] = mapped_column(String(VERDICT_MAX), nullable=True)
    score_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    queue: Mapped[str] = mapped_column(String(16), nullable=False)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class ReviewDecisionRow(ScoredBox, Base):
    __tablename__ = "review_decisions"
    __table_args__ = (Index(None, "review_id"), Index(None, "detection_id"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), nullable=False)
    # no foreign key: a redelivered frame replaces its detection rows; the copy below keeps the box
    detection_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    decision: Mapped[str] = mapped_column(String(8), nullable=False)
    reason_code: Mapped[str | None] = mapped_column(String(REASON_MAX), nullable=True)


class ReviewBoxRow(Base):
    __tablename__ = "review_boxes"
    __table_args__ = (Index(None, "review_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), nullable=False)
    class_id: Mapped[int] = mapped_column(Integer, nullable=False)
    class_name: Mapped[str] = mapped_column(String(64), nullable=False)
    reason_code: Mapped[str] = mapped_column(String(REASON_MAX), nullable=False)
    x1: Mapped[float] = mapped_column(Float, nullable=False)
    y1: Mapped[float] = mapped_column(Float, nullable=False)
    x2: Mapped[float] = mapped_column(Float, nullable=False)
    y2: Mapped[float] = mapped_column(Float, nullable=False)


class ShadowFrameRow(Base):
    """One frame as a shadow model saw it: keyed by (model, car, camera, shot) like `frames`."""

    __tablename__ = "shadow_frames"
    __table_args__ = (UniqueConstraint("model", "car_id", "camera", "shot"), Index(None, "car_id"))

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    car_id: Mapped[str] = mapped_column(String(CAR_ID_MAX), nullable=False)
    camera: Mapped[int] = mapped_column(Integer, nullable=False)
    shot: Mapped[int] = mapped_column(Integer, nullable=False)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    kafka_topic: Mapped[str | None] = mapped_column(String(KAFKA_TOPIC_MAX), nullable=True)
    kafka_partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kafka_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(ERROR_KIND_MAX), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    detection_count: Mapped[int] = mapped_column(Integer, nullable=False)


class ShadowDetectionRow(ScoredBox, Base):
    __tablename__ = "shadow_detections"
    __table_args__ = (Index(None, "shadow_frame_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    shadow_frame_id: Mapped[int] = mapped_column(ForeignKey("shadow_frames.id", ondelete="CASCADE"), nullable=False)


class ShadowVerdictRow(Base):
    """A car's verdict as the shadow model's boxes and the configured rules decide it."""

    __tablename__ = "shadow_verdicts"
    __table_args__ = (UniqueConstraint("model", "car_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    car_id: Mapped[str] = mapped_column(String(CAR_ID_MAX), nullable=False)
    verdict: Mapped[str] = mapped_column(String(VERDICT_MAX), nullable=False)
    rules_hash: Mapped[str] = mapped_column(String(RULES_VERSION_MAX), nullable=False)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    defects: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)


class ModelSwapRow(Base):
    """A promotion: the edge drained the old model's work, reloaded its config, resumed with the new model."""

    __tablename__ = "model_swaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    swapped_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    from_model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    to_model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    from_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)  # with --workers: worker 0's run
    frames_before: Mapped[int] = mapped_column(
        Integer, nullable=False
    )  # frames the old model handled in this edge command (all its workers)
    config: Mapped[str] = mapped_column(String(1024), nullable=False)  # the config file that changed
