"""A candidate model in shadow on the real embedded Kafka broker and a real database: replayed over
the topic and live as a consumer group of its own, it stores its boxes and verdicts in the shadow
tables only, never commits the main group's offsets, never writes the main tables; the comparison
(function, command, dashboard) reads both."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from inspection.cli import app as cli_app
from inspection.config import InspectionConfig, LineConfig, ModelConfig, PipelineConfig, Settings, StoreConfig
from inspection.dashboard import DashboardConfig
from inspection.dashboard.app import create_app
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import FrameProducer, ensure_topics
from inspection.kafka.admin import consumer_config
from inspection.review.models import ReviewIn
from inspection.review.shadow import ReplayRange, open_shadow, shadow_group
from inspection.review.store import submit_review
from inspection.rules.load import example_rules
from inspection.rules.verdict import verdict_writer
from inspection.store import ResultStore, create_engine_for
from inspection.tiling import TileGrid
from synthetic.line import LineSimulator
from synthetic.photos import PhotoFrameSource

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
CANDIDATE = "ssd_mobilenet_v2_coco"
MAIN_TABLES = ("runs", "cars", "frames", "detections", "car_verdicts", "frame_defects", "reviews", "review_decisions")


def _snapshot(url: str) -> dict[str, list]:
    with ResultStore(url) as store, store.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))] for t in MAIN_TABLES}


def _committed(bootstrap: str, settings: Settings, group: str) -> list[int]:
    consumer = Consumer(consumer_config(bootstrap, settings.kafka, group_id=group))
    try:
        parts = [TopicPartition(settings.kafka.topic, p) for p in range(settings.kafka.partitions)]
        return [tp.offset for tp in consumer.committed(parts, timeout=30)]
    finally:
        consumer.close()


def test_shadow_replay_and_live_store_apart_and_never_touch_the_main_group(
    kafka_config, yolox_onnx, ssd_onnx, store_db_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx),
        kafka=kafka_config,
        store=StoreConfig(url=store_db_url, image_dir=tmp_path / "images"),
        line=LineConfig(cameras=2, shots_per_camera=1, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=1, queue_size=2),
        inspection=InspectionConfig(rules=example_rules()),
    )
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, kafka_config)
    with FrameProducer(bootstrap, kafka_config) as producer:
        produced = LineSimulator(settings.line, PhotoFrameSource(TileGrid()), producer).run(2, start_car=1, realtime=False)
        producer.flush(60)
    with ResultStore.open(settings.store) as store:
        store.verdicts = verdict_writer(settings)
        pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, bootstrap)
        pipeline.run(stop_when=lambda s: s.frames_handled >= len(produced))
    engine = create_engine_for(store_db_url)
    with engine.connect() as conn:
        frame_id, n_boxes = conn.execute(text("SELECT id, detection_count FROM frames ORDER BY id")).first()
        ids = [r[0] for r in conn.execute(text("SELECT id FROM detections WHERE frame_id = :f"), {"f": frame_id})]
        assert conn.execute(text("SELECT COUNT(*) FROM car_verdicts")).scalar_one() == 2
    review = ReviewIn.model_validate(
        {
            "decisions": [{"detection_id": d, "decision": "confirm"} for d in ids],
            "missed": [{"class_name": "person", "xyxy": [5, 5, 400, 600]}],
        }
    )
    submit_review(engine, frame_id, "alice", review, score_threshold=0.3, default_size=(2700, 2100))
    main_offsets = _committed(bootstrap, settings, kafka_config.group_id)
    assert sum(main_offsets) == len(produced)
    before = _snapshot(store_db_url)

    runner = open_shadow(settings, CANDIDATE, bootstrap, engine, path=ssd_onnx)
    replay_group = shadow_group(kafka_config.group_id, CANDIDATE) + ".replay"
    stats = runner.replay(replay_group, ReplayRange())
    assert stats.frames == len(produced) and stats.verdicts == 2 and stats.partitions_done == set(range(kafka_config.partitions))
    again = runner.replay(replay_group, ReplayRange(from_offset=0))  # a second replay replaces, never duplicates
    assert again.frames == len(produced)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT model, car_id, camera, shot, kafka_offset FROM shadow_frames ORDER BY car_id, camera")
        ).all()
        assert [(r.model, r.car_id, r.camera) for r in rows] == [
            (CANDIDATE, c, cam) for c in ("car-000001", "car-000002") for cam in (0, 1)
        ]
        assert conn.execute(text("SELECT COUNT(*) FROM shadow_verdicts WHERE model = :m"), {"m": CANDIDATE}).scalar_one() == 2
        assert conn.execute(text("SELECT COUNT(*) FROM shadow_detections")).scalar_one() > 0
    assert _snapshot(store_db_url) == before  # main tables untouched
    assert _committed(bootstrap, settings, kafka_config.group_id) == main_offsets  # main group's offsets untouched
    assert all(o < 0 for o in _committed(bootstrap, settings, replay_group))  # a replay commits nothing

    live_group = shadow_group(kafka_config.group_id, CANDIDATE)
    with pytest.raises(ValueError, match="group of its own"):
        runner.live(kafka_config.group_id, lambda s: True)
    deadline = time.monotonic() + 300
    live = runner.live(live_group, lambda s: s.frames >= len(produced) or time.monotonic() > deadline)
    assert live.frames == len(produced)
    assert _committed(bootstrap, settings, live_group) == main_offsets  # its own group, at the same positions
    assert _committed(bootstrap, settings, kafka_config.group_id) == main_offsets
    assert _snapshot(store_db_url) == before

    report = tmp_path / "compare.json"
    result = CliRunner().invoke(
        cli_app, ["shadow", "--model", CANDIDATE, "--compare", "--db", store_db_url, "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    comparison = json.loads(report.read_text())
    assert comparison["reviewed_frames"] == 1 and comparison["ground_truth_boxes"] == n_boxes + 1
    assert comparison["deployed"] == "yolox_nano" and comparison["deployed_score"]["true_positives"] == n_boxes
    assert comparison["deployed_score"]["recall"] == pytest.approx(n_boxes / (n_boxes + 1))
    assert comparison["cars_compared"] == 2 and sum(comparison["verdict_changes"].values()) == 2
    config = DashboardConfig(db_url=store_db_url, thumbs_dir=tmp_path / "thumbs")
    with TestClient(create_app(config)) as client:
        assert [c["candidate"] for c in client.get("/api/review/shadow").json()] == [CANDIDATE]
        page = client.get("/review/shadow")
        assert page.status_code == 200 and f'data-model="{CANDIDATE}"' in page.text
    engine.dispose()
