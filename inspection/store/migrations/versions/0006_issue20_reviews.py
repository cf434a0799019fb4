"""reviews, review_decisions, review_boxes, shadow_frames, shadow_detections, shadow_verdicts,
model_swaps: the analyst's loop
and a candidate model's results, beside the detections (inspection/store/review_models.py).

Revision ID: 0006
Revises: 0005 (issue 19's verdicts)
Create Date: 2026-12-07

Hand-written to match inspection/store/review_models.py (tests compare the two). Only new tables.
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _box() -> list[sa.Column]:
    return [sa.Column(name, sa.Float(), nullable=False) for name in ("x1", "y1", "x2", "y2")]


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("rules_version", sa.String(64), nullable=True),
        sa.Column("verdict_seen", sa.String(16), nullable=True),
        sa.Column("score_threshold", sa.Float(), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"], name="fk_reviews_frame_id_frames", ondelete="CASCADE"),
    )
    op.create_index("ix_reviews_frame_id_reviewed_at", "reviews", ["frame_id", "reviewed_at"])
    op.create_index("ix_reviews_reviewed_at", "reviews", ["reviewed_at"])
    op.create_index("ix_reviews_car_id", "reviews", ["car_id"])
    op.create_table(
        "review_decisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("review_id", BIG_ID, nullable=False),
        sa.Column("detection_id", sa.BigInteger(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        *_box(),
        sa.PrimaryKeyConstraint("id", name="pk_review_decisions"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_review_decisions_review_id_reviews", ondelete="CASCADE"),
    )
    op.create_index("ix_review_decisions_review_id", "review_decisions", ["review_id"])
    op.create_index("ix_review_decisions_detection_id", "review_decisions", ["detection_id"])
    op.create_table(
        "review_boxes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("review_id", BIG_ID, nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        *_box(),
        sa.PrimaryKeyConstraint("id", name="pk_review_boxes"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], name="fk_review_boxes_review_id_reviews", ondelete="CASCADE"),
    )
    op.create_index("ix_review_boxes_review_id", "review_boxes", ["review_id"])
    op.create_table(
        "shadow_frames",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("camera", sa.Integer(), nullable=False),
        sa.Column("shot", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kafka_topic", sa.String(255), nullable=True),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("error_kind", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("detection_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_frames"),
        sa.UniqueConstraint("model", "car_id", "camera", "shot", name="uq_shadow_frames_model_car_id_camera_shot"),
    )
    op.create_index("ix_shadow_frames_car_id", "shadow_frames", ["car_id"])
    op.create_table(
        "shadow_detections",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("shadow_frame_id", BIG_ID, nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        *_box(),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_detections"),
        sa.ForeignKeyConstraint(
            ["shadow_frame_id"],
            ["shadow_frames.id"],
            name="fk_shadow_detections_shadow_frame_id_shadow_frames",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_shadow_detections_shadow_frame_id", "shadow_detections", ["shadow_frame_id"])
    op.create_table(
        "shadow_verdicts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("rules_hash", sa.String(64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("defects", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_verdicts"),
        sa.UniqueConstraint("model", "car_id", name="uq_shadow_verdicts_model_car_id"),
    )
    op.create_table(
        "model_swaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("swapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_model", sa.String(128), nullable=False),
        sa.Column("to_model", sa.String(128), nullable=False),
        sa.Column("from_run_id", sa.Integer(), nullable=True),
        sa.Column("frames_before", sa.Integer(), nullable=False),
        sa.Column("config", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_swaps"),
        sa.ForeignKeyConstraint(["from_run_id"], ["runs.id"], name="fk_model_swaps_from_run_id_runs"),
    )


def downgrade() -> None:
    op.drop_table("model_swaps")
    op.drop_table("shadow_verdicts")
    op.drop_table("shadow_detections")
    op.drop_table("shadow_frames")
    op.drop_table("review_boxes")
    op.drop_table("review_decisions")
    op.drop_table("reviews")
