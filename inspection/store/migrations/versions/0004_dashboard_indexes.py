"""Indexes for the analyst dashboard and read layer (inspection/analytics): newest cars, time
ranges of frames, error rows, rejected messages by time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

Hand-written to match the indexes declared in inspection/store/models.py (tests compare the two).
Only indexes: nothing is rewritten, so the upgrade is quick on a small database; on a large
PostgreSQL one each CREATE INDEX holds a write lock on its table while it builds.
"""

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ERRORS_ONLY = sa.text("error IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_cars_first_captured_at_car_id", "cars", ["first_captured_at", "car_id"])
    op.create_index("ix_frames_captured_at", "frames", ["captured_at"])
    op.create_index("ix_frames_processed_at", "frames", ["processed_at"])
    op.create_index(
        "ix_frames_processed_at_errors",
        "frames",
        ["processed_at"],
        postgresql_where=ERRORS_ONLY,
        sqlite_where=ERRORS_ONLY,
    )
    op.create_index("ix_rejected_messages_received_at", "rejected_messages", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_rejected_messages_received_at", table_name="rejected_messages")
    op.drop_index("ix_frames_processed_at_errors", table_name="frames")
    op.drop_index("ix_frames_processed_at", table_name="frames")
    op.drop_index("ix_frames_captured_at", table_name="frames")
    op.drop_index("ix_cars_first_captured_at_car_id", table_name="cars")
