"""Deadline accounting: the verdict function, its log lines, and cars read back from a real database."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select

from inspection.analytics import AnalyticsReader
from inspection.deadline import CarDeadline, car_deadline_from_row, evaluate_car, log_car_deadline
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.store import FrameRecord, ResultStore, upgrade_database
from inspection.store.models import Car

NOON = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def test_a_car_completed_after_its_deadline_is_late_by_the_difference() -> None:
    late = evaluate_car("car-000003", NOON + timedelta(seconds=62.41), NOON + timedelta(seconds=60))
    assert not late.met and late.lateness_s == pytest.approx(2.41)
    assert late.describe() == "car car-000003 missed its deadline by 2.41 s"
    early = evaluate_car("car-000004", NOON + timedelta(seconds=30), NOON + timedelta(seconds=60))
    assert early.met and early.lateness_s == pytest.approx(-30.0)
    on_the_dot = evaluate_car("car-000005", NOON, NOON)
    assert on_the_dot.met and on_the_dot.lateness_s == 0.0


def test_late_cars_are_logged_as_warnings_with_how_late(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="inspection.deadline")
    log_car_deadline(evaluate_car("car-000003", NOON + timedelta(seconds=2.41), NOON))
    log_car_deadline(evaluate_car("car-000004", NOON, NOON + timedelta(seconds=1.5)))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "car car-000003 missed its deadline by 2.41 s"),
        (logging.INFO, "car car-000004 met its deadline with 1.50 s to spare"),
    ]


def _frame(car_id: str, camera: int, run_id: int, processed_s: float, deadline_s: float) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car_id, camera, 0, 2),
        captured_at_ns=T0,
        deadline_at_ns=T0 + int(deadline_s * S),
        received_at_ns=T0,
        processed_at_ns=T0 + int(processed_s * S),
        run_id=run_id,
    )


def test_deadlines_read_back_from_the_store(store_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    upgrade_database(store_db_url)
    with ResultStore(store_db_url) as store:
        run = store.start_run("m", "b", "fp32", "h", host="t", consumer_id="c")
        completed = []
        for car_id, deadline_s in (("car-000001", 10.0), ("car-000003", 1.0)):
            for camera in range(2):
                stored = store.store_frame(_frame(car_id, camera, run, 1.0 + 2.41 * camera, deadline_s), Detections(), {})
                if stored.completed is not None:
                    log_car_deadline(stored.completed)
                    completed.append(stored.completed)
        assert (len(completed), sum(not c.met for c in completed)) == (2, 1)
        late = store.car_deadline("car-000003")
        assert isinstance(late, CarDeadline) and not late.met
        assert late.describe() == "car car-000003 missed its deadline by 2.41 s"
        assert late == completed[-1]
        with store.engine.connect() as conn:
            row = conn.execute(select(Car).where(Car.car_id == "car-000001")).one()
        verdict = car_deadline_from_row(row)
        assert verdict is not None and verdict.met and verdict.lateness_s == pytest.approx(3.41 - 10.0)
        # an incomplete car has no verdict until it is complete, and is overdue once its deadline passes
        store.store_frame(_frame("car-000009", 0, run, 1.0, 5.0), Detections(), {})
        assert store.car_deadline("car-000009") is None
        deadline_at = AnalyticsReader(store.engine).car_row("car-000009").deadline_at
        assert store.overdue_cars(now=deadline_at - timedelta(seconds=1)) == []
        assert [c.car_id for c in store.overdue_cars(now=deadline_at + timedelta(seconds=1))] == ["car-000009"]
    assert np.isclose(max(c.lateness_s for c in completed), 2.41)
