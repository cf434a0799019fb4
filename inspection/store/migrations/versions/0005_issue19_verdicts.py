"""Inspection verdicts, their defects, and the line-signal outbox (issue 19).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

- car_verdicts: one per decided car (ok / ng / incomplete / error) with the rule set's hash,
  the model, decided_at, the number of defects, a one-line reason and the car's latency.
- frame_defects: the boxes the rules kept (kept = true, with the rule that kept them) or an
  ignore mask removed (kept = false), copied from the detections of each frame.
- signal_outbox: decided cars waiting to be published to the line (MQTT, OPC UA).

Hand-written to match inspection/store/models.py (tests compare the two).
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "car_verdicts",
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("rules_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("defects", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("car_latency_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["car_id"], ["cars.car_id"], name="fk_car_verdicts_car_id_cars"),
        sa.PrimaryKeyConstraint("car_id", name="pk_car_verdicts"),
    )
    op.create_index("ix_car_verdicts_decided_at", "car_verdicts", ["decided_at"])
    op.create_index("ix_car_verdicts_verdict", "car_verdicts", ["verdict"])
    op.create_table(
        "frame_defects",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("kept", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["car_id"], ["car_verdicts.car_id"], name="fk_frame_defects_car_id_car_verdicts", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"], name="fk_frame_defects_frame_id_frames", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_frame_defects"),
    )
    op.create_index("ix_frame_defects_car_id", "frame_defects", ["car_id"])
    op.create_index("ix_frame_defects_frame_id", "frame_defects", ["frame_id"])
    op.create_table(
        "signal_outbox",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("car_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_signal_outbox"),
        sa.UniqueConstraint("car_id", name="uq_signal_outbox_car_id"),
    )
    op.create_index("ix_signal_outbox_created_at", "signal_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_signal_outbox_created_at", table_name="signal_outbox")
    op.drop_table("signal_outbox")
    op.drop_index("ix_frame_defects_frame_id", table_name="frame_defects")
    op.drop_index("ix_frame_defects_car_id", table_name="frame_defects")
    op.drop_table("frame_defects")
    op.drop_index("ix_car_verdicts_verdict", table_name="car_verdicts")
    op.drop_index("ix_car_verdicts_decided_at", table_name="car_verdicts")
    op.drop_table("car_verdicts")
