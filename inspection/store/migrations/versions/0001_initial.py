"""Initial schema: runs, cars, frames, detections.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Hand-written to match inspection/store/models.py (tests compare the two after upgrade).
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UTC_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("consumer_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "cars",
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("frames_expected", sa.Integer(), nullable=False),
        sa.Column("frames_done", sa.Integer(), nullable=False),
        sa.Column("first_captured_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("deadline_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("completed_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("deadline_met", sa.Boolean(), nullable=True),
        sa.Column("lateness_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("car_id", name="pk_cars"),
    )
    op.create_table(
        "frames",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("camera", sa.Integer(), nullable=False),
        sa.Column("shot", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("captured_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("received_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("processed_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("latency_s", sa.Float(), nullable=False),
        sa.Column("image_uri", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(32), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kafka_topic", sa.String(255), nullable=True),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("detection_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_frames"),
        sa.ForeignKeyConstraint(["car_id"], ["cars.car_id"], name="fk_frames_car_id_cars"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_frames_run_id_runs"),
        sa.UniqueConstraint("car_id", "camera", "shot", name="uq_frames_car_id_camera_shot"),
    )
    op.create_index("ix_frames_run_id", "frames", ["run_id"])
    op.create_table(
        "detections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("tile_index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"], name="fk_detections_frame_id_frames", ondelete="CASCADE"),
    )
    op.create_index("ix_detections_frame_id", "detections", ["frame_id"])
    op.create_index("ix_detections_class_id_score", "detections", ["class_id", "score"])


def downgrade() -> None:
    op.drop_index("ix_detections_class_id_score", table_name="detections")
    op.drop_index("ix_detections_frame_id", table_name="detections")
    op.drop_table("detections")
    op.drop_index("ix_frames_run_id", table_name="frames")
    op.drop_table("frames")
    op.drop_table("cars")
    op.drop_table("runs")
