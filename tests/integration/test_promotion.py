"""Promotion under load: the edge runs model A on a backlog, the config file is changed to model B,
the edge drains, reloads and resumes with B; every frame is stored exactly once (each record
handled once, one row per frame), the main group's offsets end at the topic's end, and the swap is
recorded. One in-process consumer, and `inspection edge --workers 2` (both layouts: whole-pipeline
worker processes, CPU workers feeding one detector-owning process). Real embedded Kafka broker,
real database, real detectors (YOLOX-Nano, SSD MobileNet; onnxruntime on the CPU)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from inspection.config import KafkaConfig, LineConfig, ModelConfig, PipelineConfig, Settings, StoreConfig, load_settings
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import FrameProducer, ensure_topics
from inspection.review.promotion import run_with_reload
from inspection.store import ResultStore
from inspection.tiling import TileGrid
from synthetic.line import LineSimulator
from synthetic.photos import PhotoFrameSource
from tests.integration.test_shadow import _committed
from tests.integration.test_supervisor import GRID

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def _supervised(kafka_config: KafkaConfig, db_url: str, onnx: Path, layout: str) -> Settings:
    """Two CPU workers on a small grid (quick), 2 cameras x 12 shots a car, 4 partitions."""
    return Settings(
        grid=GRID,
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=onnx, threads=1),
        # the rebalance after the swap waits for this on the embedded broker: short, so the new workers join fast
        kafka=kafka_config.model_copy(update={"partitions": 4, "max_poll_interval_ms": 15000}),
        store=StoreConfig(url=db_url, image_dir=None),
        line=LineConfig(cameras=2, shots_per_camera=12, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=1, queue_size=2, workers=2, layout=layout),
    )


def _write(path: Path, settings: Settings) -> None:
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude={"kafka"})))


def test_promotion_under_load_stores_every_frame_once(
    kafka_config: KafkaConfig, yolox_onnx, ssd_onnx, sqlite_url: str, tmp_path: Path
) -> None:
    first = Settings(
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx),
        kafka=kafka_config,
        store=StoreConfig(url=sqlite_url),
        line=LineConfig(cameras=2, shots_per_camera=1, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=1, queue_size=2),
    )
    second = first.model_copy(update={"model": ModelConfig(name="ssd_mobilenet_v2_coco", backend="onnxruntime", path=ssd_onnx)})
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, kafka_config)
    with FrameProducer(bootstrap, kafka_config) as producer:
        produced = LineSimulator(first.line, PhotoFrameSource(TileGrid()), producer).run(8, start_car=1, realtime=False)
        producer.flush(60)
    config = tmp_path / "site.yaml"
    _write(config, first)
    overrides = {"kafka.bootstrap_servers": bootstrap, "kafka.topic": kafka_config.topic, "kafka.group_id": kafka_config.group_id,
                 "kafka.dlq_topic": kafka_config.dlq_topic, "kafka.partitions": kafka_config.partitions,
                 "kafka.session_timeout_ms": kafka_config.session_timeout_ms}  # fmt: skip
    swapped = threading.Event()

    def start(settings: Settings) -> EdgePipeline:
        return EdgePipeline(settings, create_detector(settings.model, settings.detect), store, bootstrap)

    def keep_going(done: list) -> bool:
        handled = sum(s.frames_handled for s in done)
        if handled >= 1 and not swapped.is_set():  # under load: the rest of the backlog waits in Kafka
            _write(config, second)  # the one config change
            swapped.set()
        return handled < len(produced)

    with ResultStore.open(first.store) as store:
        runs = run_with_reload(
            lambda: load_settings(config, overrides), start, store.engine, config, keep_going=keep_going, interval_s=0.05
        )
        with store.engine.connect() as conn:
            frames = conn.execute(
                text("SELECT f.car_id, f.camera, r.model FROM frames f JOIN runs r ON r.id = f.run_id ORDER BY f.id")
            ).all()
            (swap,) = conn.execute(text("SELECT from_model, to_model, frames_before, from_run_id, config FROM model_swaps")).all()
            run_models = [r[0] for r in conn.execute(text("SELECT model FROM runs ORDER BY id"))]
    assert len(runs) == 2, [s.frames_handled for s in runs]
    assert sum(s.frames_handled for s in runs) == len(produced) == len(frames)  # each record handled once
    assert len({(car, cam) for car, cam, _ in frames}) == len(produced)  # one row per frame
    assert run_models == ["yolox_nano", "ssd_mobilenet_v2_coco"]
    assert [m for _, _, m in frames].count("yolox_nano") == runs[0].frames_handled >= 1
    assert [m for _, _, m in frames].count("ssd_mobilenet_v2_coco") == runs[1].frames_handled >= 1
    assert swap.from_model == "yolox_nano" and swap.to_model == "ssd_mobilenet_v2_coco"
    assert swap.frames_before == runs[0].frames_handled and swap.config == str(config)
    assert sum(_committed(bootstrap, first, kafka_config.group_id)) == len(produced)  # nothing left behind


def test_promotion_with_several_workers_is_refused_in_one_error_line(
    kafka_config: KafkaConfig, yolox_onnx, tmp_path: Path
) -> None:
    """`inspection edge --workers 2 --reload-model` is refused before any worker starts: the supervisor's
    drain-swap-restart left the restarted workers without partitions for minutes on the embedded broker in about
    half the runs (issue 20 stays open on it); one worker promotes (the test above)."""
    settings = _supervised(kafka_config, f"sqlite:///{tmp_path / 'r.db'}", yolox_onnx, "auto")
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    command = [sys.executable, "-m", "inspection.cli", "edge", "--config", str(config), "--workers", "2", "--reload-model"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert lines[0].startswith("error: --reload-model runs with one worker for now"), done.stderr
    assert "inspection.edge.supervisor" not in done.stderr  # no worker was started
