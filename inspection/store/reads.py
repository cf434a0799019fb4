"""The store's own reads (car summaries, deadlines, a frame's detections, rejected messages, counts) for the edge, the CLI and tests; the analysts' read layer is `inspection.analytics`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..car_state import DEFAULT_GRACE_S, CarState, car_state_case, overdue_before
from ..deadline import CarDeadline, car_deadline_from_row
from ..detections import Detections
from .models import (
    Car,
    Detection,
    Frame,
    RejectedMessageRow,
)
from .records import (
    CarNotFoundError,
    CarSummary,
    FrameNotFoundError,
    RejectedMessage,
)
from .writer import StoreDatabase


class StoreReads:
    """Typed answers read in one SQL style (SQLAlchemy Core/ORM selects)."""

    def __init__(self, db: StoreDatabase) -> None:
        self.db = db

    def _summary_select(self, now: datetime | None = None, grace_s: float = DEFAULT_GRACE_S) -> Any:
        per_frame = (
            select(
                Frame.car_id.label("car_id"),
                func.count(Frame.id).label("frames"),
                func.count(Frame.error).label("errors"),
                func.coalesce(func.sum(Frame.detection_count), 0).label("detections"),
                func.avg(Frame.latency_s).label("mean_latency"),
                func.max(Frame.latency_s).label("max_latency"),
                func.max(Frame.processed_at).label("last_processed"),
            )
            .group_by(Frame.car_id)
            .subquery()
        )
        return (
            select(
                Car,
                per_frame.c.frames,
                per_frame.c.errors,
                per_frame.c.detections,
                per_frame.c.mean_latency,
                per_frame.c.max_latency,
                per_frame.c.last_processed,
                car_state_case(Car, overdue_before(now or datetime.now(timezone.utc), grace_s)).label("state"),
            )
            .outerjoin(per_frame, per_frame.c.car_id == Car.car_id)
            .order_by(Car.first_captured_at, Car.car_id)
        )

    @staticmethod
    def _summary(row: Any) -> CarSummary:
        car: Car = row[0]
        last = car.completed_at or row.last_processed
        return CarSummary(
            car_id=car.car_id,
            frames=int(row.frames or 0),
            frames_expected=car.frames_expected,
            errors=int(row.errors or 0),
            detections=int(row.detections or 0),
            mean_frame_latency_s=None if row.mean_latency is None else float(row.mean_latency),
            max_frame_latency_s=None if row.max_latency is None else float(row.max_latency),
            car_latency_s=None if last is None else (last - car.first_captured_at).total_seconds(),
            first_captured_at=car.first_captured_at,
            deadline_at=car.deadline_at,
            deadline_s=(car.deadline_at - car.first_captured_at).total_seconds(),
            completed_at=car.completed_at,
            deadline_met=car.deadline_met,
            lateness_s=car.lateness_s,
            state=CarState(row.state),
            overdue_at=car.overdue_at,
            missing_frames=car.missing_frames,
        )

    def _read(self, statement: Any) -> list[Any]:
        with Session(self.db.engine) as session:
            return list(session.execute(statement).all())

    def overdue_cars(self, now: datetime | None = None, *, marked_only: bool = False) -> list[CarSummary]:
        """Cars still incomplete after their deadline (frames lost or stuck), oldest first.

        `marked_only`: only those an edge consumer has marked overdue (`overdue_at` set, with the
        frames missing then in `missing_frames`); otherwise every incomplete car whose deadline
        is before `now`, marked yet or not.
        """
        now = now or datetime.now(timezone.utc)
        statement = self._summary_select(now).where(Car.completed_at.is_(None))
        if marked_only:
            statement = statement.where(Car.overdue_at.is_not(None))
        else:
            statement = statement.where(Car.deadline_at < now)
        return [self._summary(row) for row in self._read(statement)]

    def car_deadline(self, car_id: str) -> CarDeadline | None:
        """The car's deadline verdict, None while it is incomplete."""
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(
                    Car.car_id, Car.completed_at, Car.deadline_at, Car.deadline_met, Car.lateness_s, Car.first_captured_at
                ).where(Car.car_id == car_id)
            ).first()
        if row is None:
            raise CarNotFoundError(f"no car {car_id!r} in the results database")
        return car_deadline_from_row(row)

    def frame_detections(self, car_id: str, camera: int, shot: int) -> Detections:
        """The stored detections of one frame (frame pixels), highest score first."""
        with self.db.engine.connect() as conn:
            frame_id = conn.execute(
                select(Frame.id).where(Frame.car_id == car_id, Frame.camera == camera, Frame.shot == shot)
            ).scalar()
            if frame_id is None:
                raise FrameNotFoundError(f"no frame car={car_id!r} cam={camera} shot={shot} in the results database")
            rows = conn.execute(
                select(
                    Detection.x1,
                    Detection.y1,
                    Detection.x2,
                    Detection.y2,
                    Detection.score,
                    Detection.class_id,
                    Detection.tile_index,
                )
                .where(Detection.frame_id == frame_id)
                .order_by(Detection.score.desc(), Detection.id)
            ).all()
        if not rows:
            return Detections.empty()
        table = np.asarray(rows, dtype=np.float64)
        return Detections(table[:, :4], table[:, 4], table[:, 5].astype(np.int32), table[:, 6].astype(np.int32))

    def rejected_messages(self, limit: int | None = None) -> list[RejectedMessage]:
        """Rejected (frameless, dead-lettered) messages, most recently received first."""
        statement = select(RejectedMessageRow).order_by(RejectedMessageRow.received_at.desc(), RejectedMessageRow.id.desc())
        if limit is not None:
            statement = statement.limit(limit)
        return [
            RejectedMessage(
                id=row.id,
                received_at=row.received_at,
                kafka_topic=row.kafka_topic,
                kafka_partition=row.kafka_partition,
                kafka_offset=row.kafka_offset,
                message_key=row.message_key,
                error_kind=row.error_kind,
                error=row.error,
                run_id=row.run_id,
            )
            for (row,) in self._read(statement)
        ]
