"""Deadline accounting: the verdict function, and cars read back from a real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from inspection.analytics import AnalyticsReader
from inspection.deadline import evaluate_car
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.store import FrameRecord, ResultStore, upgrade_database
from tests.stored import overdue_car_ids

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


def _frame(car_id: str, camera: int, run_id: int, processed_s: float, deadline_s: float) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car_id, camera, 0, 2),
        captured_at_ns=T0,
        deadline_at_ns=T0 + int(deadline_s * S),
        received_at_ns=T0,
        processed_at_ns=T0 + int(processed_s * S),
        run_id=run_id,
    )


def test_deadlines_read_back_from_the_store(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    with ResultStore(store_db_url) as store:
        run = store.start_run("m", "b", "fp32", "h", host="t", consumer_id="c")
        completed = []
        for car_id, deadline_s in (("car-000001", 10.0), ("car-000003", 1.0)):
            for camera in range(2):
                stored = store.store_frame(_frame(car_id, camera, run, 1.0 + 2.41 * camera, deadline_s), Detections(), {})
                if stored.completed is not None:
                    completed.append(stored.completed)
        assert (len(completed), sum(not c.met for c in completed)) == (2, 1)
        assert completed[-1].describe() == "car car-000003 missed its deadline by 2.41 s"
        reader = AnalyticsReader(store.engine)
        for done in completed:  # the verdict decided in the transaction is the one read back
            car = reader.car_row(done.car_id)
            assert (car.completed_at, car.deadline_at, car.deadline_met) == (done.completed_at, done.deadline_at, done.met)
            assert car.lateness_s == pytest.approx(done.lateness_s)
        assert reader.car_row("car-000001").lateness_s == pytest.approx(3.41 - 10.0)
        # an incomplete car has no verdict until it is complete, and is overdue once its deadline passes
        store.store_frame(_frame("car-000009", 0, run, 1.0, 5.0), Detections(), {})
        car = reader.car_row("car-000009")
        assert car.deadline_met is None and car.lateness_s is None
        before, after = car.deadline_at - timedelta(seconds=1), car.deadline_at + timedelta(seconds=1)
        assert overdue_car_ids(store.engine, now=before, grace_s=0) == []
        assert overdue_car_ids(store.engine, now=after, grace_s=0) == ["car-000009"]
    assert np.isclose(max(c.lateness_s for c in completed), 2.41)
