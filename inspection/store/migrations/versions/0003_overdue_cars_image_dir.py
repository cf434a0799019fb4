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

from collections.abc import Sequence
from typing import Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Plain ADD / DROP COLUMN (SQLite >= 3.35 has both): a batch "move and copy" would drop and
# recreate `cars`, which the frames' foreign keys forbid while the migration runs.


def upgrade() -> None:
    op.add_column("cars", sa.Column("overdue_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("cars", sa.Column("missing_frames", sa.Text(), nullable=True))
    op.add_column("runs", sa.Column("image_dir", sa.String(1024), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "image_dir")
    op.drop_column("cars", "missing_frames")
    op.drop_column("cars", "overdue_at")
