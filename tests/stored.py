"""What a test's results database holds, read through the analytics layer (as the dashboard reads it):
the store itself only writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from inspection.analytics import AnalyticsReader, NotFoundError, queries
from inspection.analytics.models import FrameBoxes


def frame_boxes(engine: Engine, car_id: str, camera: int, shot: int) -> FrameBoxes:
    """The stored boxes of one frame (frame pixels), highest score first."""
    with engine.connect() as conn:
        frames = queries.run(conn, queries.CAR_FRAMES, car_id=car_id)
    found = [f.frame_id for f in frames if (f.camera, f.shot) == (camera, shot)]
    if not found:
        raise NotFoundError(f"no frame car={car_id!r} cam={camera} shot={shot}")
    return AnalyticsReader(engine).frame_boxes(found[0])


def rejected(engine: Engine, **params: Any) -> list[Any]:
    """Rows of REJECTED_MESSAGES: the rejected messages, newest first."""
    with engine.connect() as conn:
        return queries.run(conn, queries.REJECTED_MESSAGES, **params)


def overdue_car_ids(engine: Engine, *, now: datetime | None = None, grace_s: float | None = None) -> list[str]:
    """The cars whose state is overdue at `now` (CARS' status), oldest first."""
    with engine.connect() as conn:
        return [r.car_id for r in queries.run(conn, queries.CARS, now=now, grace_s=grace_s) if r.status == "overdue"]


def marked_overdue(engine: Engine) -> list[str]:
    """The incomplete cars a consumer has marked overdue, oldest first."""
    with engine.connect() as conn:
        rows = queries.run(conn, queries.CARS)
    return [r.car_id for r in rows if r.overdue_at is not None and r.completed_at is None]
