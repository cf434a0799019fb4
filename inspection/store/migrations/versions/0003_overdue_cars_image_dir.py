"""Overdue cars and the image directory of each run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

- cars.overdue_at: when an edge consumer found the car past its deadline with frames missing
  (set once; kept if late frames complete the car afterwards).
- cars.missing_frames: which frames were missing then ("cam 1 shots 0-4; cam 3 shot 7").
- runs.image_dir: the absolute directory the run's frames.image_uri are relative to.

Hand-written to match inspection/store/models.py (tests compare the two).
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("cars") as batch:
        batch.add_column(sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("missing_frames", sa.Text(), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("image_dir", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("image_dir")
    with op.batch_alter_table("cars") as batch:
        batch.drop_column("missing_frames")
        batch.drop_column("overdue_at")
