"""rejected_messages: Kafka messages too broken to name a frame (dead-lettered, no frame row).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Hand-written to match RejectedMessageRow in inspection/store/models.py (tests compare the two).
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "rejected_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kafka_topic", sa.String(255), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("message_key", sa.String(255), nullable=True),
        sa.Column("error_kind", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_messages"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_rejected_messages_run_id_runs"),
        sa.UniqueConstraint(
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            name="uq_rejected_messages_kafka_topic_kafka_partition_kafka_offset",
        ),
    )
    op.create_index("ix_rejected_messages_run_id", "rejected_messages", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_rejected_messages_run_id", table_name="rejected_messages")
    op.drop_table("rejected_messages")
