"""Promotion under load: the edge runs model A on a backlog, the config file is changed to model B,
the edge drains, reloads and resumes with B; every frame is stored exactly once (each record
handled once, one row per frame), the main group's offsets end at the topic's end, and the swap is
recorded. One in-process consumer, and `inspection edge --workers 2` (both layouts: whole-pipeline
worker processes, CPU workers feeding one detector-owning process). Real embedded Kafka broker,
real database, real detectors (YOLOX-Nano, SSD MobileNet; onnxruntime on the CPU)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
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
from tests.integration.test_supervisor import GRID, _frames, _produce, _wait, _worker_pids
from tests.integration.test_supervisor import _committed as _supervisor_committed

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def _supervised(kafka_config: KafkaConfig, db_url: str, onnx: Path, layout: str) -> Settings:
    """Two CPU workers on a small grid (quick), 2 cameras x 12 shots a car, 4 partitions."""
    return Settings(
        grid=GRID,
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=onnx, threads=1),
        kafka=kafka_config.model_copy(update={"partitions": 4}),
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


@pytest.mark.postgres
@pytest.mark.parametrize("layout", ["auto", "gpu_owner"])  # gpu_owner: the owner process reloads too (here on the CPU)
def test_promotion_under_two_workers_stores_every_frame_once_and_records_the_swap(
    kafka_config: KafkaConfig, postgres_url: str, yolox_onnx, ssd_onnx, tmp_path: Path, layout: str
) -> None:
    """`inspection edge --workers 2 --reload-model`: the config changes to model B while frames wait in
    Kafka; the supervisor rolls the workers over to B one at a time (the group never empties), records
    the swap; every frame is handled by exactly one worker once (the workers' "frames stored" sum to the
    frames produced) and stored once, its row tagged with the model that handled it."""
    first = _supervised(kafka_config, postgres_url, yolox_onnx, layout)
    second = first.model_copy(
        update={"model": ModelConfig(name="ssd_mobilenet_v2_coco", backend="onnxruntime", path=ssd_onnx, threads=1)}
    )
    ensure_topics(kafka_config.bootstrap_servers, first.kafka)
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump(first.model_dump(mode="json")))
    log = tmp_path / "edge.log"
    command = [sys.executable, "-m", "inspection.cli", "edge", "--config", str(config), "--workers", "2", "--reload-model"]
    with open(log, "wb") as err:
        edge = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
    store = ResultStore.open(first.store)
    try:
        _wait(lambda: len(_worker_pids(log)) == 2, 60, "two workers to start")
        time.sleep(6)  # both join the group and split the partitions
        produced = _produce(first, 1)
        _wait(lambda: len(_frames(store)) >= 2, 120, "the first frames to be stored")
        config.write_text(yaml.safe_dump(second.model_dump(mode="json")))  # the one config change, under load
        produced += _produce(first, 2)  # in Kafka while the workers drain and reload
        _wait(lambda: "reloaded, resuming" in log.read_text(errors="replace"), 180, "the swap")
        produced += _produce(first, 3)
        expected = sorted({(f.car_id, f.camera, f.shot) for f in produced})
        _wait(lambda: len(_frames(store)) >= len(expected), 300, "every frame to be stored")
        _wait(lambda: _supervisor_committed(first) == len(produced), 60, "every offset to be committed")
        assert edge.poll() is None, "the supervisor stopped on its own"
    finally:
        if edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
        out, _ = edge.communicate(timeout=120)
    output = log.read_text(errors="replace")
    assert edge.returncode == 0, output[-3000:]
    assert "1 model swap(s)" in out.decode(), out.decode()
    rows = _frames(store)
    assert [(r.car_id, r.camera, r.shot) for r in rows] == expected  # each frame once, none missing
    handled = [int(n) for n in re.findall(r"worker \d stopped cleanly: (\d+) frames stored", output)]
    assert len(handled) == 4 and sum(handled) == len(produced), output[-3000:]  # 2 drained for the swap, 2 at the end
    with store.engine.connect() as conn:
        by_model = dict(
            conn.execute(text("SELECT r.model, COUNT(*) FROM frames f JOIN runs r ON r.id = f.run_id GROUP BY r.model")).all()
        )
        run_models = [m for (m,) in conn.execute(text("SELECT model FROM runs ORDER BY id"))]
        (swap,) = conn.execute(text("SELECT from_model, to_model, frames_before, from_run_id, config FROM model_swaps")).all()
        declared = conn.execute(text("SELECT SUM(detection_count) FROM frames")).scalar()
        stored = conn.execute(text("SELECT COUNT(*) FROM detections")).scalar()
    assert run_models == ["yolox_nano"] * 2 + ["ssd_mobilenet_v2_coco"] * 2
    assert (swap.from_model, swap.to_model, swap.config) == ("yolox_nano", "ssd_mobilenet_v2_coco", str(config))
    assert swap.frames_before == by_model["yolox_nano"] == sum(handled[:2]) >= 2
    assert by_model["ssd_mobilenet_v2_coco"] == sum(handled[2:]) >= 1
    assert declared == stored > 0
    assert _supervisor_committed(first) == len(produced)
    store.close()
