"""One car state: the store's summary and gauge, the analytics read layer (dashboard, API, the demo's
table reads the summary) and Grafana's text all come from inspection.car_state and agree, on SQLite
and PostgreSQL, before the deadline, within the grace period, after it, once marked and once complete."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from inspection.analytics.queries import CARS, run
from inspection.analytics.reader import AnalyticsReader
from inspection.car_state import CAR_STATE_SQL, CarState
from inspection.config import LineConfig, OverdueConfig
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.metrics import PipelineMetrics
from inspection.overdue import OverdueWatcher
from inspection.store import FrameRecord, ResultStore, upgrade_database

S = 1_000_000_000
LINE = LineConfig(cameras=1, shots_per_camera=2)
GRACE_S = 5.0
T0 = int(datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc).timestamp()) * S
DEADLINE = datetime(2026, 12, 7, 12, 0, 10, tzinfo=timezone.utc)


def record(car: str, shot: int, run_id: int, processed_s: float = 1.0) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car, 0, shot, LINE.frames_per_car),
        captured_at_ns=T0,
        deadline_at_ns=T0 + 10 * S,
        received_at_ns=T0 + int(processed_s * S),
        processed_at_ns=T0 + int(processed_s * S),
        run_id=run_id,
    )


def states_everywhere(store: ResultStore, now: datetime) -> dict[str, set[str]]:
    """car -> the set of states every reader reports at `now` (one element when they agree)."""
    reader = AnalyticsReader(store.engine, cameras=LINE.cameras, clock=lambda: now)
    seen: dict[str, set[str]] = {}
    for car in ("early", "late", "partial"):
        seen.setdefault(car, set()).add(AnalyticsReader(store.engine).car_row(car, now=now, grace_s=GRACE_S).verdict)
        seen[car].add(reader.car(car).car.verdict)
    with store.engine.connect() as conn:
        for row in run(conn, CARS, now=now, grace_s=GRACE_S):
            seen[row.car_id].add(row.status)
    for item in reader.cars().items:
        seen[item.car_id].add(item.verdict)
    gauge = AnalyticsReader(store.engine).car_states(now=now, grace_s=GRACE_S)
    partial = next(iter(seen["partial"]))
    assert (gauge.in_flight, gauge.overdue) == {CarState.IN_FLIGHT: (1, 0), CarState.OVERDUE: (0, 1)}.get(partial, (0, 0))
    return seen


def test_every_reader_reports_the_same_state_across_the_deadline_and_the_grace(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    with ResultStore(store_db_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        empty = Detections.empty()
        for shot in (0, 1):
            store.store_frame(record("early", shot, run_id), empty, [])
            store.store_frame(record("late", shot, run_id, processed_s=12.0), empty, [])
        store.store_frame(record("partial", 0, run_id), empty, [])
        expected_partial = {
            DEADLINE - timedelta(seconds=1): CarState.IN_FLIGHT,
            DEADLINE + timedelta(seconds=GRACE_S / 2): CarState.IN_FLIGHT,  # within the grace: not overdue yet anywhere
            DEADLINE + timedelta(seconds=GRACE_S + 0.5): CarState.OVERDUE,
        }
        for now, partial in expected_partial.items():
            seen = states_everywhere(store, now)
            assert seen == {"early": {"met"}, "late": {"missed"}, "partial": {partial.value}}, now
        # The watcher marks it at the same moment; once marked it stays overdue for every reader.
        watcher = OverdueWatcher(store, LINE, OverdueConfig(grace_s=GRACE_S), PipelineMetrics())
        marked_at = DEADLINE + timedelta(seconds=GRACE_S + 1)
        assert [c.car_id for c in watcher.check(marked_at)] == ["partial"]
        assert states_everywhere(store, marked_at)["partial"] == {"overdue"}
        # Completing it late makes it missed everywhere.
        store.store_frame(record("partial", 1, run_id, processed_s=30.0), empty, [])
        assert states_everywhere(store, marked_at + timedelta(seconds=30)) == {
            "early": {"met"},
            "late": {"missed"},
            "partial": {"missed"},
        }


@pytest.mark.postgres
def test_grafana_text_of_the_state_runs_on_postgresql(postgres_url: str) -> None:
    """The same expression with now() (Grafana's form) agrees with the bound form on PostgreSQL."""
    from inspection.analytics.grafana import _VERDICT_NOW

    upgrade_database(postgres_url)
    with ResultStore(postgres_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        store.store_frame(record("partial", 0, run_id), Detections.empty(), [])
        with store.engine.connect() as conn:
            grafana = conn.execute(text(f"SELECT {_VERDICT_NOW} FROM cars AS c")).scalar_one()
            bound = conn.execute(
                text(f"SELECT {CAR_STATE_SQL} FROM cars AS c"),
                {"overdue_before": datetime.now(timezone.utc) - timedelta(seconds=GRACE_S)},
            ).scalar_one()
        assert grafana == bound == "overdue"  # its deadline (2026-12-07 12:00:10) is long past
