"""Retention in the database: old cars with their frames and detections, old rejected messages, image references (the files go in `inspection.retention`)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, not_, or_, select, update

from .errors import store_errors
from .models import (
    Car,
    Detection,
    Frame,
    RejectedMessageRow,
    Run,
)
from .records import (
    PruneCounts,
)
from .writer import StoreDatabase


class Pruner:
    """`prune`: one transaction, rolled back in a dry run."""

    def __init__(self, db: StoreDatabase) -> None:
        self.db = db

    def prune(self, rows_before: datetime | None, images_before: datetime | None, *, dry_run: bool = True) -> PruneCounts:
        """Delete cars first captured before `rows_before` (with their frames and detections) and
        rejected messages received before it; clear `image_uri` of kept frames captured before
        `images_before`. One transaction, rolled back in a dry run. Returns the counts and the
        image files nobody references afterwards (the caller deletes them, see retention.py)."""
        never = datetime(1, 1, 1, tzinfo=timezone.utc)
        rows_cut, images_cut = rows_before or never, images_before or never
        old_cars = select(Car.car_id).where(Car.first_captured_at < rows_cut)
        frame_gone = Frame.car_id.in_(old_cars)
        image_gone = and_(Frame.image_uri.is_not(None), or_(frame_gone, Frame.captured_at < images_cut))
        with store_errors("pruning old results"), self.db.writer.connect() as conn, conn.begin() as transaction:
            cars = conn.execute(select(func.count()).select_from(old_cars.subquery())).scalar_one()
            frames = conn.execute(select(func.count(Frame.id)).where(frame_gone)).scalar_one()
            detections = conn.execute(
                select(func.count(Detection.id)).where(Detection.frame_id.in_(select(Frame.id).where(frame_gone)))
            ).scalar_one()
            rejected = conn.execute(
                select(func.count(RejectedMessageRow.id)).where(RejectedMessageRow.received_at < rows_cut)
            ).scalar_one()
            cleared = conn.execute(select(func.count(Frame.id)).where(image_gone, not_(frame_gone))).scalar_one()
            candidates = set(
                conn.execute(
                    select(Run.image_dir, Frame.image_uri).join(Run, Run.id == Frame.run_id).where(image_gone).distinct()
                ).all()
            )
            kept = (
                set(
                    conn.execute(
                        select(Run.image_dir, Frame.image_uri)
                        .join(Run, Run.id == Frame.run_id)
                        .where(Frame.image_uri.in_([uri for _, uri in candidates]), not_(image_gone))
                        .distinct()
                    ).all()
                )
                if candidates
                else set()
            )
            files = tuple(sorted(((d, u) for d, u in candidates - kept), key=lambda item: (item[0] or "", item[1])))
            if not dry_run:
                conn.execute(update(Frame).where(image_gone, not_(frame_gone)).values(image_uri=None))
                conn.execute(delete(Detection).where(Detection.frame_id.in_(select(Frame.id).where(frame_gone))))
                conn.execute(delete(Frame).where(frame_gone))
                conn.execute(delete(Car).where(Car.first_captured_at < rows_cut))
                conn.execute(delete(RejectedMessageRow).where(RejectedMessageRow.received_at < rows_cut))
            else:
                transaction.rollback()
        return PruneCounts(int(cars), int(frames), int(detections), int(rejected), int(cleared), files)
