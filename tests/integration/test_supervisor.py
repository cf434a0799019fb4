"""`inspection edge --workers 2`: one command, two worker processes in one consumer group (real
broker, real databases, real detector on a small grid so CPU workers are quick).

Every frame is stored exactly once when a worker is SIGKILLed mid-stream (the supervisor restarts
it; the group redelivers what it had not committed) and SIGTERM to the supervisor drains and commits.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from inspection.analytics import AnalyticsReader
from inspection.config import GridConfig, LineConfig, ModelConfig, PipelineConfig, Settings, StoreConfig
from inspection.edge.supervisor import EdgeSupervisor, RestartPolicy, resolve_workers, worker_gpus
from inspection.edge.timing import OwnerSplit
from inspection.kafka import FrameProducer, consumer_config, ensure_topics
from inspection.store import ResultStore
from inspection.tiling import TileGrid
from synthetic.line import LineSimulator
from synthetic.photos import PhotoFrameSource

pytestmark = pytest.mark.timeout(400)

GRID = GridConfig(frame_width=600, frame_height=600, tile_size=300, batch_size=4)


def _settings(kafka_config, db_url: str, yolox_onnx: Path, workers: int | str = 2, layout: str = "auto") -> Settings:
    return Settings(
        grid=GRID,
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx, threads=1),
        kafka=kafka_config.model_copy(update={"partitions": 4}),
        store=StoreConfig(url=db_url, image_dir=None),
        line=LineConfig(cameras=2, shots_per_camera=12, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=1, queue_size=2, workers=workers, layout=layout),
    )


def _produce(settings: Settings, car_index: int) -> list:
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka)
    source = PhotoFrameSource(TileGrid.from_config(settings.grid))
    with FrameProducer(
        settings.kafka.bootstrap_servers, settings.kafka, shots_per_camera=settings.line.shots_per_camera
    ) as producer:
        return LineSimulator(settings.line, source, producer).run(1, start_car=car_index, realtime=False)


def _frames(store: ResultStore) -> list[tuple]:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT car_id, camera, shot, error_kind FROM frames ORDER BY car_id, camera, shot")).all()


def _committed(settings: Settings) -> int:
    consumer = Consumer(consumer_config(settings.kafka.bootstrap_servers, settings.kafka))
    try:
        parts = [TopicPartition(settings.kafka.topic, p) for p in range(settings.kafka.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def _free_port_pair() -> int:
    """A port P with P+1..P+2 free too (the supervisor's endpoint and its two workers')."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 2 < 65536 and all(_port_free(port + k) for k in (1, 2)):
            return port
    raise RuntimeError("no three consecutive free ports")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _wait(condition, timeout_s: float, what: str) -> None:
    limit = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < limit, f"timed out waiting for {what}"
        time.sleep(0.2)


def _worker_pids(log: Path) -> dict[int, int]:
    """The latest pid of each worker slot, from the supervisor's 'started worker K, pid N' lines."""
    pids: dict[int, int] = {}
    for k, pid in re.findall(r"started worker (\d+), pid (\d+)", log.read_text(errors="replace")):
        pids[int(k)] = int(pid)
    return pids


@pytest.mark.slow
# gpu_owner: the workers feed one detector-owning process through shared memory (here on the CPU, onnxruntime)
@pytest.mark.parametrize("layout", ["auto", "gpu_owner"])
def test_two_workers_store_every_frame_once_through_a_worker_kill_and_drain_on_sigterm(
    kafka_config, store_db_url, yolox_onnx, tmp_path, layout
):
    settings = _settings(kafka_config, store_db_url, yolox_onnx, layout=layout)
    timing_dir = tmp_path / "timings"
    settings = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"timing_dir": str(timing_dir)})})
    ensure_topics(kafka_config.bootstrap_servers, settings.kafka)
    config = tmp_path / "edge.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    log = tmp_path / "edge.log"
    port = _free_port_pair()
    with open(log, "wb") as err:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inspection.cli",
                "edge",
                "--config",
                str(config),
                "--workers",
                "2",
                "--metrics-port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    store = ResultStore.open(settings.store)
    try:
        _wait(lambda: len(_worker_pids(log)) == 2, 60, "two workers to start")
        first = _worker_pids(log)
        time.sleep(6)  # both join the group and split the partitions
        produced = _produce(settings, 1)
        _wait(lambda: len(_frames(store)) >= 2, 120, "the first frames to be stored")
        os.kill(first[0], signal.SIGKILL)  # mid-car: its uncommitted frames go back to the group
        _wait(lambda: _worker_pids(log).get(0, first[0]) != first[0], 60, "worker 0 to be restarted")
        produced += _produce(settings, 2)
        expected = sorted({(f.car_id, f.camera, f.shot) for f in produced})
        _wait(lambda: len(_frames(store)) >= len(expected), 200, "every frame to be stored")
        _wait(lambda: _committed(settings) == len(produced), 60, "every offset to be committed")
        assert supervisor.poll() is None, "the supervisor stopped on its own"
        # one endpoint for the host: both workers' samples (labelled), both up, the restart counted
        _wait(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "every worker ready behind the one /readyz")
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert status == 200 and _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert {s.labels["worker"]: s.value for s in families["inspection_edge_worker_up"].samples} == {"0": 1.0, "1": 1.0}
        assert families["inspection_edge_worker_restarts"].samples[0].value >= 1
        stored_by = {s.labels["worker"] for s in families["inspection_frames_stored"].samples if s.name.endswith("_total")}
        assert stored_by == {"0", "1"}
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(120)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "worker 0 exited with status -9; restarting in" in output, output[-3000:]
    rows = _frames(store)
    assert [(r.car_id, r.camera, r.shot) for r in rows] == expected  # each frame once, none missing
    assert all(r.error_kind is None for r in rows)
    with store.engine.connect() as conn:
        declared = conn.execute(text("SELECT SUM(detection_count) FROM frames")).scalar()
        stored = conn.execute(text("SELECT COUNT(*) FROM detections")).scalar()
    assert declared == stored > 0  # a redelivered frame replaced its detections, none duplicated
    for car in {f.car_id for f in produced}:
        assert AnalyticsReader(store.engine).car_row(car).complete
    assert _committed(settings) == len(produced)
    # both workers drained: each logged its clean stop after SIGTERM
    assert len(re.findall(r"worker \d stopped cleanly", output)) == 2, output[-3000:]
    # the owner timed its side of every request (a killed worker's frames are detected again: at least one per frame)
    owner = OwnerSplit.of(timing_dir)
    if layout == "gpu_owner":
        assert owner is not None and owner.requests >= len(produced) and owner.threads == 1, owner
        assert 0 < owner.detect_ms and 0 <= owner.queue_ms and 0 < owner.busy <= 1
    else:
        assert owner is None  # no owner process in the workers-only layout
    store.close()


def test_workers_that_keep_dying_stop_the_supervisor_with_one_error(kafka_config, sqlite_url, tmp_path):
    missing = tmp_path / "no-such-model.onnx"
    settings = _settings(kafka_config, sqlite_url, missing)
    ResultStore.open(settings.store).close()
    supervisor = EdgeSupervisor(
        settings,
        kafka_config.bootstrap_servers,
        restart=RestartPolicy(backoff_s=0.05, max_backoff_s=0.1, max_restarts=2),
        poll_s=0.05,
    )
    result = supervisor.run()
    assert result.exit_code == 1
    assert result.restarts >= 2
    assert result.error is not None and "died 3 times" in result.error


def test_auto_workers_and_gpu_slots() -> None:
    gpu_model = ModelConfig(backend="onnxruntime", device="cuda")
    cpu_model = ModelConfig(backend="onnxruntime", device="cpu")
    assert resolve_workers(PipelineConfig(workers="auto"), gpu_model) == 3
    assert resolve_workers(PipelineConfig(workers="auto"), cpu_model) == 1
    assert worker_gpus(PipelineConfig(workers=2, gpus=[0, 1]), gpu_model) == [0, 0, 1, 1]
    assert worker_gpus(PipelineConfig(workers=2), cpu_model) == [None, None]
