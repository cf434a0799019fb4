"""Overdue cars: a car past its deadline with frames missing is marked once (state, metric, one
warning naming the missing frames) and still completes, late, when they arrive.

Store-level checks on SQLite and PostgreSQL (two watchers at once: each car reported exactly
once), then the edge consumer on the real broker with a car whose producer stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import generate_latest

from inspection.analytics import AnalyticsReader
from inspection.config import LineConfig, ModelConfig, OverdueConfig
from inspection.detect import create_detector
from inspection.detections import Detections
from inspection.edge import EdgePipeline
from inspection.kafka import ensure_topics
from inspection.kafka.admin import producer_config
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.metrics import PipelineMetrics
from inspection.overdue import OverdueWatcher
from inspection.store import FrameRecord, ResultStore, upgrade_database
from inspection.store.repository import describe_missing
from inspection.tiling import TileGrid
from synthetic.photos import PhotoFrameSource
from tests.integration.test_pipeline import make_settings
from tests.stored import marked_overdue

pytestmark = pytest.mark.timeout(600)

S = 1_000_000_000
LINE = LineConfig(cameras=2, shots_per_camera=3, takt_s=60)


def frame(car: str, camera: int, shot: int, run_id: int, t0: int, deadline_s: float = 10.0, late: bool = False) -> FrameRecord:
    processed = time.time_ns() if late else t0 + S
    return FrameRecord(
        frame_id=FrameId(car, camera, shot, LINE.frames_per_car),
        captured_at_ns=t0,
        deadline_at_ns=t0 + int(deadline_s * S),
        received_at_ns=processed,
        processed_at_ns=processed,
        run_id=run_id,
    )


def metric(metrics: PipelineMetrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {line_start} in the metrics")


def test_describe_missing() -> None:
    assert describe_missing([(1, 0), (1, 1), (1, 2), (1, 4), (3, 7)], 19) == "cam 1 shots 0-2, 4; cam 3 shot 7"
    assert describe_missing([(0, s) for s in range(19)], 19) == "cam 0 all 19 shots"
    assert describe_missing([], 19) == "none"
    assert describe_missing([(1, 0)], 1) == "cam 1 shot 0"


def test_two_consumers_checking_at_once_report_each_overdue_car_exactly_once(store_db_url, caplog) -> None:
    upgrade_database(store_db_url)
    stores = [ResultStore(store_db_url), ResultStore(store_db_url)]
    run_id = stores[0].start_run("m", "b", "fp32", "c", host="t", consumer_id="t")
    t0 = time.time_ns() - 100 * S
    cars = [f"car-{i:03d}" for i in range(12)]
    for i, car in enumerate(cars):
        stores[0].store_frame(frame(car, 0, 0, run_id, t0), Detections.empty(), {})
        if i % 2:
            stores[0].store_frame(frame(car, 1, 2, run_id, t0), Detections.empty(), {})
    stores[0].store_frame(frame("car-fresh", 0, 0, run_id, time.time_ns(), deadline_s=600), Detections.empty(), {})
    metrics = [PipelineMetrics(), PipelineMetrics()]
    watchers = [OverdueWatcher(s, LINE, OverdueConfig(grace_s=1.0), m) for s, m in zip(stores, metrics)]
    marked: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def check(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            marked[i].extend(watchers[i].check())

    caplog.set_level(logging.WARNING, logger="inspection.overdue")
    threads = [threading.Thread(target=check, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [car.car_id for found in marked for car in found]
    assert sorted(names) == cars, "each overdue car is reported by exactly one consumer, once"
    warnings = [r.getMessage() for r in caplog.records if "overdue" in r.getMessage()]
    assert len(warnings) == len(cars)
    assert any(
        w.startswith("car car-001 overdue: ") and "with 2 of 6 frames stored; missing cam 0 shots 1-2; cam 1 shots 0-1" in w
        for w in warnings
    ), warnings
    assert (
        metric(metrics[0], "inspection_cars_marked_overdue_total") + metric(metrics[1], "inspection_cars_marked_overdue_total")
        == 12
    )
    assert metric(metrics[0], 'inspection_cars{state="overdue"}') == 12
    assert metric(metrics[0], 'inspection_cars{state="in_flight"}') == 1  # car-fresh: deadline not reached
    summary = AnalyticsReader(stores[0].engine).car_row("car-000")
    assert summary.verdict == "overdue" and summary.missing_frames == "cam 0 shots 1-2; cam 1 all 3 shots"
    assert marked_overdue(stores[0].engine) == cars
    # Late frames still complete the car normally: completion recorded, deadline missed, overdue_at kept.
    for camera, shot in [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
        stored = stores[1].store_frame(frame("car-000", camera, shot, run_id, t0, late=True), Detections.empty(), {})
    assert stored.completed is not None and not stored.completed.met
    summary = AnalyticsReader(stores[1].engine).car_row("car-000")
    assert summary.complete and summary.verdict == "missed" and summary.overdue_at is not None
    assert "car-000" not in marked_overdue(stores[0].engine)
    assert watchers[0].check() == [] and AnalyticsReader(stores[0].engine).car_states().overdue == 11
    for s in stores:
        s.close()


@pytest.mark.slow
def test_a_car_whose_producer_stopped_goes_overdue_then_completes_late(kafka_config, sqlite_url, yolox_onnx, caplog):
    model = ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx)
    settings = make_settings(kafka_config, sqlite_url, model, shots=1, cameras=2)
    settings = settings.model_copy(update={"overdue": OverdueConfig(check_interval_s=0.3, grace_s=0.0)})
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, settings.kafka)
    jpeg = encode_image(PhotoFrameSource(TileGrid())(0, 0, 0), 85)
    captured = time.time_ns()

    def send(camera: int) -> None:
        msg = FrameMessage(
            frame_id=FrameId("car-stopped", camera, 0, 2), captured_at_ns=captured, deadline_at_ns=captured + 4 * S, payload=jpeg
        )
        producer = Producer(producer_config(bootstrap, settings.kafka))
        key, value, headers = msg.encode()
        producer.produce(settings.kafka.topic, value=value, key=key, headers=headers)
        assert producer.flush(30) == 0

    send(0)  # camera 1's frame is held back: the producer "stopped"
    store = ResultStore.open(settings.store)
    pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, bootstrap)
    caplog.set_level(logging.INFO)
    sent_late = threading.Event()

    def until_complete(stats) -> bool:
        if not sent_late.is_set() and marked_overdue(store.engine):
            send(1)  # the missing frame arrives after the car was found overdue
            sent_late.set()
        return bool(stats.cars_completed) or time.monotonic() > give_up

    give_up = time.monotonic() + 240
    stats = pipeline.run(stop_when=until_complete)
    assert sent_late.is_set(), "the car was never marked overdue"
    overdue_lines = [r for r in caplog.records if r.name == "inspection.overdue" and "overdue" in r.getMessage()]
    assert len(overdue_lines) == 1 and overdue_lines[0].levelno == logging.WARNING
    assert overdue_lines[0].getMessage().startswith("car car-stopped overdue: ")
    assert "with 1 of 2 frames stored; missing cam 1 shot 0" in overdue_lines[0].getMessage()
    assert metric(pipeline.metrics, "inspection_cars_marked_overdue_total") == 1
    (done,) = stats.cars_completed
    assert done.car_id == "car-stopped" and not done.met
    completed_lines = [
        r
        for r in caplog.records
        if r.name == "inspection.edge.persist" and "car car-stopped missed its deadline" in r.getMessage()
    ]
    assert len(completed_lines) == 1 and "2/2 frames, car latency" in completed_lines[0].getMessage()
    summary = AnalyticsReader(store.engine).car_row("car-stopped")
    assert summary.verdict == "missed" and summary.overdue_at is not None and summary.missing_frames == "cam 1 shot 0"
    assert summary.overdue_at < summary.completed_at
    store.close()


def test_overdue_gauges_and_marking_need_no_frames_beyond_the_deadline(sqlite_url) -> None:
    """A car with no frame past its deadline (all within) is in flight, not overdue."""
    upgrade_database(sqlite_url)
    with ResultStore(sqlite_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="t")
        now = datetime.now(timezone.utc)
        store.store_frame(frame("car-ok", 0, 0, run_id, time.time_ns(), deadline_s=30), Detections.empty(), {})
        assert store.mark_overdue(now, 0.0, LINE.cameras, LINE.shots_per_camera) == []
        later = store.mark_overdue(now + timedelta(seconds=31), 0.0, LINE.cameras, LINE.shots_per_camera)
        assert [c.car_id for c in later] == ["car-ok"] and len(later[0].missing) == LINE.frames_per_car - 1
        assert np.isclose((later[0].overdue_at - now).total_seconds(), 31)
