"""Overdue marking: incomplete cars past their deadline, marked exactly once across consumers, with the frames missing."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from .errors import store_errors
from .models import (
    Car,
    Frame,
)
from .records import (
    OverdueCar,
    describe_missing,
)
from .writer import StoreDatabase


class OverdueMarker:
    """`mark_overdue`."""

    def __init__(self, db: StoreDatabase) -> None:
        self.db = db

    def mark_overdue(
        self, now: datetime, grace_s: float, cameras: int, shots_per_camera: int, *, limit: int = 500
    ) -> list[OverdueCar]:
        """Mark incomplete cars whose deadline passed more than `grace_s` ago as overdue; return those
        this call marked, with the (camera, shot) pairs of the line's geometry that have no frame row.

        Exactly once across consumers: the UPDATE only takes rows with `overdue_at IS NULL`; on
        PostgreSQL the candidates are locked first (`FOR UPDATE SKIP LOCKED`, in car order), so two
        consumers checking at once neither deadlock nor both mark a car, and a car whose last frame
        is being stored (its row locked) is left for the next check; SQLite runs writers one at a time.
        """
        cutoff = now - timedelta(seconds=grace_s)
        with store_errors("marking overdue cars"), self.db.writer.begin() as conn:
            candidates = (
                select(Car.car_id)
                .where(Car.completed_at.is_(None), Car.overdue_at.is_(None), Car.deadline_at < cutoff)
                .order_by(Car.car_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(conn.execute(candidates).scalars())
            if not ids:
                return []
            marked = conn.execute(
                update(Car)
                .where(Car.car_id.in_(ids), Car.completed_at.is_(None), Car.overdue_at.is_(None))
                .values(overdue_at=now)
                .returning(Car.car_id, Car.deadline_at, Car.frames_done, Car.frames_expected)
            ).all()
            if not marked:
                return []
            present: dict[str, set[tuple[int, int]]] = {row.car_id: set() for row in marked}
            for car_id, camera, shot in conn.execute(
                select(Frame.car_id, Frame.camera, Frame.shot).where(Frame.car_id.in_(list(present)))
            ):
                present[car_id].add((camera, shot))
            out = []
            for row in sorted(marked, key=lambda r: r.car_id):
                missing = tuple(
                    (c, s) for c in range(cameras) for s in range(shots_per_camera) if (c, s) not in present[row.car_id]
                )
                text = describe_missing(missing, shots_per_camera)
                conn.execute(update(Car).where(Car.car_id == row.car_id).values(missing_frames=text))
                out.append(
                    OverdueCar(row.car_id, row.deadline_at, now, int(row.frames_done), int(row.frames_expected), missing, text)
                )
        return out
