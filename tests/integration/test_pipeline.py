"""The edge pipeline on a real broker (tansu) into real databases (SQLite, PostgreSQL).

The detector is real too: YOLOX-Nano through onnxruntime (fast on 2 CPU cores) for most tests,
and the default SSD MobileNet V2 on the default backend (onnxruntime) in the demo check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import text

from inspection.analytics import AnalyticsReader
from inspection.config import LineConfig, ModelConfig, PipelineConfig, Settings, StoreConfig
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import FrameProducer, ensure_topics
from inspection.kafka.admin import consumer_config, producer_config
from inspection.messages.contract import FrameMessage
from inspection.messages.dead_letters import DeadLetter
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import ResultStore
from inspection.tiling import TileGrid
from synthetic.line import LineSimulator
from synthetic.photos import PhotoFrameSource
from tests.stored import frame_boxes, rejected

pytestmark = pytest.mark.timeout(300)


def make_settings(kafka_config, db_url, model: ModelConfig, shots: int = 2, cameras: int = 2, tmp_path=None) -> Settings:
    return Settings(
        model=model,
        kafka=kafka_config,
        store=StoreConfig(url=db_url, image_dir=(tmp_path / "images") if tmp_path else None),
        line=LineConfig(cameras=cameras, shots_per_camera=shots, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=2, queue_size=2),
    )


@pytest.fixture(scope="module")
def yolox_model(yolox_onnx) -> ModelConfig:
    return ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx)


@pytest.fixture(scope="module")
def photo_source():
    return PhotoFrameSource(TileGrid())


def produce_car(settings: Settings, source, car_index: int = 1) -> list:
    bootstrap = settings.kafka.bootstrap_servers
    ensure_topics(bootstrap, settings.kafka)
    with FrameProducer(bootstrap, settings.kafka, shots_per_camera=settings.line.shots_per_camera) as producer:
        return LineSimulator(settings.line, source, producer).run(1, start_car=car_index, realtime=False)


def frames_table(store: ResultStore) -> list[tuple]:
    with store.engine.connect() as conn:
        return conn.execute(
            text("SELECT car_id, camera, shot, error_kind, detection_count FROM frames ORDER BY car_id, camera, shot")
        ).all()


def detections_per_frame(store: ResultStore) -> dict[int, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT frame_id, COUNT(*) FROM detections GROUP BY frame_id")).all()
    return dict(rows)


def committed_offsets(settings: Settings) -> int:
    """Sum of the group's committed offsets over the frames topic's partitions."""
    conf = consumer_config(settings.kafka.bootstrap_servers, settings.kafka)
    consumer = Consumer(conf)
    try:
        parts = [TopicPartition(settings.kafka.topic, p) for p in range(settings.kafka.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


@pytest.mark.slow
def test_small_car_end_to_end(kafka_config, store_db_url, yolox_model, photo_source, tmp_path):
    settings = make_settings(kafka_config, store_db_url, yolox_model, tmp_path=tmp_path)
    produced = produce_car(settings, photo_source)
    store = ResultStore.open(settings.store)
    detector = create_detector(settings.model, settings.detect)
    pipeline = EdgePipeline(settings, detector, store, kafka_config.bootstrap_servers)
    stats = pipeline.run(stop_when=lambda s: s.frames_handled >= len(produced))
    summary = AnalyticsReader(store.engine).car_row(produced[0].car_id)
    assert (summary.frames_stored, summary.frames_expected, summary.errors) == (4, 4, 0)
    assert summary.complete and summary.deadline_met is True
    assert summary.detections == stats.detections > 0
    assert len(stats.cars_completed) == 1
    # Boxes are frame pixels: inside the 2700×2100 frame, some beyond the first tile.
    xyxy = np.asarray(frame_boxes(store.engine, produced[0].car_id, 0, 0).xyxy)
    assert xyxy.max() <= 2700 and xyxy[:, 0].max() > 300
    assert committed_offsets(settings) == len(produced)
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == len(produced)
    store.close()


@pytest.mark.slow
def test_consumer_killed_mid_car_then_restarted_stores_every_frame_once(
    kafka_config, sqlite_url, yolox_model, photo_source, tmp_path
):
    """SIGKILL a consumer process while it works on a car; a new consumer finishes it, no duplicates."""
    settings = make_settings(kafka_config, sqlite_url, yolox_model, shots=3, cameras=2)
    produced = produce_car(settings, photo_source)
    ResultStore.open(settings.store).close()  # schema in place before two processes race to migrate
    env = {
        **os.environ,
        "INSPECTION__KAFKA__TOPIC": kafka_config.topic,
        "INSPECTION__KAFKA__DLQ_TOPIC": kafka_config.dlq_topic,
        "INSPECTION__KAFKA__GROUP_ID": kafka_config.group_id,
        "INSPECTION__KAFKA__PARTITIONS": str(kafka_config.partitions),
        "INSPECTION__MODEL__NAME": "yolox_nano",
        "INSPECTION__MODEL__PATH": str(yolox_model.path),
        "INSPECTION__STORE__IMAGE_DIR": "null",
        "INSPECTION__PIPELINE__QUEUE_SIZE": "2",
        # the line's geometry: a consumer parks frames of any other (shots_per_car must agree)
        "INSPECTION__LINE__CAMERAS": str(settings.line.cameras),
        "INSPECTION__LINE__SHOTS_PER_CAMERA": str(settings.line.shots_per_camera),
    }
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inspection.cli",
            "edge",
            "--bootstrap",
            kafka_config.bootstrap_servers,
            "--db",
            sqlite_url,
            "--backend",
            "onnxruntime",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = ResultStore.open(settings.store)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(frames_table(store)) < 2:
            time.sleep(0.2)
        assert len(frames_table(store)) >= 2, "the first consumer never stored a frame"
    finally:
        victim.kill()
        victim.wait()
    stored_before = len(frames_table(store))
    assert stored_before < len(produced), "killed too late to test a restart mid-car"

    detector = create_detector(settings.model, settings.detect)
    car = produced[0].car_id
    pipeline = EdgePipeline(settings, detector, store, kafka_config.bootstrap_servers)
    pipeline.run(stop_when=lambda s: AnalyticsReader(store.engine).car_row(car).complete)
    rows = frames_table(store)
    assert [(r.camera, r.shot) for r in rows] == sorted({(f.camera, f.shot) for f in produced})
    per_frame = detections_per_frame(store)
    with store.engine.connect() as conn:
        declared = dict(conn.execute(text("SELECT id, detection_count FROM frames")).all())
    assert {k: v for k, v in declared.items() if v} == per_frame  # no duplicated detection rows
    assert AnalyticsReader(store.engine).car_row(car).complete
    assert committed_offsets(settings) == len(produced)
    store.close()


@pytest.mark.slow
def test_two_consumers_share_a_car_and_it_completes_once(kafka_config, postgres_url, yolox_model, photo_source):
    settings = make_settings(kafka_config, postgres_url, yolox_model, shots=3, cameras=3)
    ensure_topics(kafka_config.bootstrap_servers, settings.kafka)
    stores = [ResultStore.open(settings.store) for _ in range(2)]
    pipelines = [
        EdgePipeline(settings, create_detector(settings.model, settings.detect), s, kafka_config.bootstrap_servers)
        for s in stores
    ]
    expected = settings.line.frames_per_car
    done = threading.Event()

    def finished(_stats) -> bool:
        return done.is_set()

    threads = [threading.Thread(target=p.run, kwargs={"stop_when": finished}) for p in pipelines]
    for t in threads:
        t.start()
    joined = time.monotonic() + 60  # both members join the group and split the partitions
    while time.monotonic() < joined and not all(p.source.assigned for p in pipelines):
        time.sleep(0.1)
    assert all(p.source.assigned for p in pipelines), "the two consumers never split the partitions"
    produced = produce_car(settings, photo_source)
    assert len(produced) == expected
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and sum(p.stats.frames_handled for p in pipelines) < expected:
        time.sleep(0.2)
    done.set()
    for t in threads:
        t.join()
    handled = [p.stats.frames_handled for p in pipelines]
    assert sum(handled) >= expected and min(handled) > 0, f"the car was not shared: {handled}"
    assert sum(len(p.stats.cars_completed) for p in pipelines) == 1
    summary = AnalyticsReader(stores[0].engine).car_row(produced[0].car_id)
    assert summary.complete and summary.frames_stored == expected
    for s in stores:
        s.close()


def _dlq_records(settings: Settings, count: int, timeout_s: float = 30) -> list[DeadLetter]:
    conf = consumer_config(settings.kafka.bootstrap_servers, settings.kafka, group_id=f"dlq-reader-{uuid.uuid4().hex[:6]}")
    consumer = Consumer(conf)
    consumer.subscribe([settings.kafka.dlq_topic])
    letters = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(letters) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                letters.append(DeadLetter.decode(msg.key(), msg.value(), msg.headers()))
    finally:
        consumer.close()
    return letters


@pytest.mark.slow
def test_each_kind_of_bad_message_is_parked_and_offsets_move_on(kafka_config, store_db_url, yolox_model, photo_source):
    settings = make_settings(kafka_config, store_db_url, yolox_model, shots=8, cameras=1)
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, settings.kafka)
    good_jpeg = encode_image(photo_source(0, 0, 0), 85)
    now = time.time_ns()

    def message(shot: int, payload: bytes, **overrides) -> tuple[bytes, bytes, list]:
        frame = FrameMessage(
            frame_id=FrameId("car-bad", 0, shot, 8), captured_at_ns=now, deadline_at_ns=now + 10**12, payload=payload
        )
        key, value, headers = frame.encode()
        headers = [(k, overrides.get(k, v)) for k, v in headers if overrides.get(k, v) is not None]
        return key, value, headers

    small = encode_image(np.zeros((1080, 1920, 3), np.uint8), 80)
    oversized = os.urandom(settings.kafka.message_max_bytes - 8 * 1024)  # above the payload limit, within the topic's
    records = {
        "bad_image": message(0, good_jpeg[: len(good_jpeg) // 2] + b"\xff\xd9"),
        "bad_frame_size": message(1, small),
        "missing_header": message(2, good_jpeg, car_id=None),
        "garbled_header": message(3, good_jpeg, camera=b"two"),
        "unknown_schema": message(4, good_jpeg, schema=b"7"),
        "oversized": message(5, oversized),
        "good": message(6, good_jpeg),
        "good2": message(7, good_jpeg),
    }
    raw = Producer({**producer_config(bootstrap, settings.kafka, dlq=True)})
    for key, value, headers in records.values():
        raw.produce(settings.kafka.topic, value=value, key=key, headers=headers, partition=0)
    assert raw.flush(30) == 0
    store = ResultStore.open(settings.store)
    pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, bootstrap)
    stats = pipeline.run(stop_when=lambda s: s.frames_handled >= len(records))
    assert (stats.frames_stored, stats.frames_parked) == (2, 6)
    letters = _dlq_records(settings, 6)
    kinds = sorted(letter.error_kind for letter in letters)
    assert kinds == sorted(["bad_image", "bad_frame_size", "bad_message", "bad_message", "bad_message", "payload_too_large"])
    assert all(letter.error and letter.source_topic == settings.kafka.topic for letter in letters)
    size_letter = next(letter for letter in letters if letter.error_kind == "bad_frame_size")
    assert "1920" in size_letter.error and "2700" in size_letter.error and size_letter.value == small
    # Attributable frames get an error row; unattributable ones a rejected-message row.
    rows = {r.shot: r.error_kind for r in frames_table(store)}
    assert rows[0] == "bad_image" and rows[1] == "bad_frame_size" and rows[5] == "payload_too_large"
    assert rows[6] is None and rows[7] is None
    assert len(rejected(store.engine)) == 3
    assert committed_offsets(settings) == len(records)
    store.close()


@pytest.mark.slow
def test_demo_json_agrees_with_database(kafka_broker, tmp_path):
    """The README's main job on the default backend (onnxruntime SSD, converted on first use), read back from SQLite."""
    from inspection.tools.demo import run_demo

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_broker.bootstrap_servers,
            "topic": f"demo-{uuid.uuid4().hex[:6]}",
            "dlq_topic": f"demo-{uuid.uuid4().hex[:6]}.dlq",
            "group_id": f"demo-{uuid.uuid4().hex[:6]}",
        },
        store={"url": db, "image_dir": str(tmp_path / "images")},
        line={"cameras": 2, "shots_per_camera": 1, "takt_s": 600.0},  # a deadline a loaded 2-core machine meets
    )
    result = run_demo(settings, cars=1, realtime=False)
    report = result.to_dict()
    assert report["backend"] == "onnxruntime/fp32" and report["db"] == db
    (car,) = report["cars"]
    with ResultStore(db) as store:
        summary = AnalyticsReader(store.engine).car_row(car["car_id"])
        counts = AnalyticsReader(store.engine).counts()
    assert car["frames"] == summary.frames_stored == 2 == car["frames_expected"]
    assert car["detections"] == summary.detections == counts.detections > 0
    assert car["deadline_met"] == summary.deadline_met is True
    assert 0 < car["car_latency_s"] < summary.deadline_s


@pytest.mark.slow
@pytest.mark.postgres
def test_database_lost_mid_run_stops_without_committing_unstored_frames(
    kafka_config, postgres_url, postgres_server_url, yolox_model, photo_source
):
    """The results database disappears under a running consumer: it retries with backoff, then
    stops with an error naming the database; offsets never pass a frame that was not stored."""
    import psycopg
    from sqlalchemy.engine import make_url

    from inspection.edge import PipelineError

    settings = make_settings(kafka_config, postgres_url, yolox_model, shots=3, cameras=2)
    settings = settings.model_copy(
        update={"store": settings.store.model_copy(update={"connect_retries": 2, "connect_backoff_s": 0.05})}
    )
    produced = produce_car(settings, photo_source)
    store = ResultStore.open(settings.store)
    pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, kafka_config.bootstrap_servers)
    name = make_url(postgres_url).database
    dropped = threading.Event()

    def drop_after_first_frame(stats) -> bool:
        if stats.frames_stored >= 1 and not dropped.is_set():
            admin_url = make_url(postgres_server_url).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            dropped.set()
        return False

    with pytest.raises(PipelineError, match=rf"database .*{name}.* failed storing car=.* after 3 attempt"):
        pipeline.run(stop_when=drop_after_first_frame)
    stored = pipeline.stats.frames_stored
    assert 1 <= stored < len(produced)
    assert committed_offsets(settings) <= stored


@pytest.mark.slow
def test_two_infer_workers_store_every_frame_once(kafka_config, sqlite_url, yolox_model, photo_source):
    """pipeline.infer_workers=2: two detector instances take frames from one queue concurrently."""
    settings = make_settings(kafka_config, sqlite_url, yolox_model, shots=3, cameras=2)
    settings = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"infer_workers": 2})})
    produced = produce_car(settings, photo_source)
    store = ResultStore.open(settings.store)
    from inspection.edge import create_detectors

    detectors = create_detectors(settings)
    assert len(detectors) == 2 and detectors[0] is not detectors[1]
    pipeline = EdgePipeline(settings, detectors, store, kafka_config.bootstrap_servers)
    stats = pipeline.run(stop_when=lambda s: s.frames_handled >= len(produced))
    assert stats.frames_stored == len(produced) and len(stats.cars_completed) == 1
    rows = frames_table(store)
    assert sorted((r.camera, r.shot) for r in rows) == sorted((f.camera, f.shot) for f in produced)
    assert committed_offsets(settings) == len(produced)
    store.close()
