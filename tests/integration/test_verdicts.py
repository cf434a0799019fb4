"""Per-car inspection verdicts: written with their reasons in the transaction that decides the car,
once (an overdue car completing late stays incomplete), with one outbox row each; `rules check`
shows a new rule set's verdicts without writing. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from inspection.analytics import AnalyticsReader
from inspection.cli import app
from inspection.config import LineConfig
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.rules import RulesConfig, RuleSet
from inspection.rules.verdict import VerdictWriter
from inspection.store import FrameRecord, ResultStore, upgrade_database
from inspection.store.models import CarVerdict, FrameDefect, SignalOutbox
from inspection.store.repository import datetime_from_ns

S = 1_000_000_000
T0 = 1_765_000_000 * S
LINE = LineConfig(cameras=2, shots_per_camera=1)
NAMES = {1: "person", 3: "car"}
RULES = RulesConfig.model_validate(
    {
        "defects": [{"class": "person", "min_score": 0.5, "min_size_px": 10}],
        "cameras": {1: {"ignore": [{"name": "fixture", "points": [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]}]}},
    }
)


def record(car: str, camera: int, run_id: int, processed_s: float = 1.0) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car, camera, 0, LINE.frames_per_car),
        captured_at_ns=T0,
        deadline_at_ns=T0 + 10 * S,
        received_at_ns=T0 + int(processed_s * S),
        processed_at_ns=T0 + int(processed_s * S),
        run_id=run_id,
    )


def boxes(*rows: tuple[float, int, float, float, float, float]) -> Detections:
    table = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(table[:, 2:6], table[:, 0], table[:, 1].astype(np.int32))


def open_store(url: str, outbox_max: int = 100) -> ResultStore:
    upgrade_database(url)
    return ResultStore(url, verdicts=VerdictWriter(RuleSet.compile(RULES, NAMES), "ssd_test", outbox_max))


def test_verdicts_are_written_with_their_reasons_once_per_car(store_db_url: str) -> None:
    with open_store(store_db_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        person, small, car, masked = (
            (0.9, 1, 200, 200, 300, 400),
            (0.9, 1, 500, 500, 505, 505),
            (0.9, 3, 0, 0, 50, 50),
            (0.9, 1, 10, 10, 60, 60),
        )
        store.store_frame(record("ng", 0, run_id), boxes(person, small, car), NAMES)
        assert store.engine.connect().execute(select(func.count()).select_from(CarVerdict)).scalar_one() == 0  # not complete yet
        stored = store.store_frame(record("ng", 1, run_id), boxes(masked), NAMES)
        assert stored.completed is not None
        store.store_frame(record("ok", 0, run_id), boxes(car, small), NAMES)
        store.store_frame(record("ok", 1, run_id), boxes(masked), NAMES)  # only an ignored person
        store.store_frame(record("err", 0, run_id), boxes(person), NAMES)
        store.store_error(record("err", 1, run_id), "decode", "not a JPEG")
        store.store_frame(record("late", 0, run_id), boxes(person), NAMES)
        marked = store.mark_overdue(datetime_from_ns(T0 + 20 * S), 5.0, LINE.cameras, LINE.shots_per_camera)
        assert [m.car_id for m in marked] == ["late"]
        store.store_frame(record("late", 1, run_id, processed_s=30), boxes(), NAMES)  # completes late: stays incomplete
        with store.engine.connect() as conn:
            verdicts = {v.car_id: v for v in conn.execute(select(CarVerdict)).all()}
            defects = conn.execute(select(FrameDefect).order_by(FrameDefect.car_id, FrameDefect.kept)).all()
            outbox = conn.execute(select(SignalOutbox).order_by(SignalOutbox.id)).all()
    assert {c: v.verdict for c, v in verdicts.items()} == {"ng": "ng", "ok": "ok", "err": "error", "late": "incomplete"}
    assert verdicts["ng"].defects == 1 and "1 person" in verdicts["ng"].reason
    assert "frames failed: 1 decode" in verdicts["err"].reason
    assert "frames missing at the deadline: cam 1 shot 0" in verdicts["late"].reason
    assert {v.rules_hash for v in verdicts.values()} == {RULES.digest()} and {v.model for v in verdicts.values()} == {"ssd_test"}
    assert verdicts["ng"].car_latency_s == 1.0
    by_car = {(d.car_id, d.kept, d.rule) for d in defects}
    assert ("ng", True, "person: score >= 0.5, size >= 10 px") in by_car  # the rule that kept it
    assert ("ng", False, "ignore cam 1 fixture") in by_car and ("ok", False, "ignore cam 1 fixture") in by_car
    assert not any(d.car_id == "ok" and d.kept for d in defects) and len([d for d in defects if d.car_id == "ng"]) == 2
    assert [o.car_id for o in outbox] == ["ng", "ok", "err", "late"]  # one signal per decided car, in decision order
    signal = json.loads(outbox[0].payload)
    assert signal["verdict"] == "ng" and signal["rules_version"] == RULES.digest() and signal["model"] == "ssd_test"
    assert signal["defects"] == {
        "0": {
            "shot": [0],
            "class": ["person"],
            "score": [0.9],
            "xyxy": [[200.0, 200.0, 300.0, 400.0]],
            "rule": ["person: score >= 0.5, size >= 10 px"],
        }
    }
    assert signal["car_latency_s"] == 1.0 and signal["decided_at"]


def test_the_outbox_is_bounded_and_the_verdicts_stay(sqlite_url: str) -> None:
    with open_store(sqlite_url, outbox_max=2) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        for n in range(5):
            for cam in (0, 1):
                store.store_frame(record(f"car-{n}", cam, run_id), boxes(), NAMES)
        with store.engine.connect() as conn:
            assert [r.car_id for r in conn.execute(select(SignalOutbox.car_id).order_by(SignalOutbox.id))] == ["car-3", "car-4"]
            assert conn.execute(select(func.count()).select_from(CarVerdict)).scalar_one() == 5


def test_rules_check_shows_what_a_new_rule_set_would_decide_and_writes_nothing(sqlite_url: str, tmp_path) -> None:
    with open_store(sqlite_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        for cam in (0, 1):
            store.store_frame(record("c1", cam, run_id), boxes((0.9, 3, 0, 0, 50, 50)), NAMES)  # a car: ok under RULES
        before = AnalyticsReader(store.engine).counts()
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump({"defects": [{"class": "car", "min_score": 0.5}]}))
    env = {"INSPECTION__STORE__URL": sqlite_url, "INSPECTION__LINE__CAMERAS": "2", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["rules", "check", str(new)], env=env)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.split()[:1] == ["c1"])
    assert row.split()[:3] == ["c1", "ok", "ng"] and "2 car" in row
    assert "1 of 1 cars would change verdict" in result.output
    with ResultStore(sqlite_url) as store:
        assert AnalyticsReader(store.engine).counts() == before
        with store.engine.connect() as conn:
            assert conn.execute(select(CarVerdict.verdict)).scalar_one() == "ok"  # history not rewritten
