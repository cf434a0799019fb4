"""Every case of issue 8 on the real broker: poison records are parked, the car's verdict holds,
and a restarted consumer neither re-processes nor dies on them (no crash loop).

One topic gets every hostile record at once, then the good frames of the car they target, all
on one partition so the hostile "first frame" really comes first. One consumer handles them;
then an `inspection edge` process joins the same group and is probed over HTTP (/readyz,
/healthz, /metrics) until it is assigned with nothing left to do, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer
from sqlalchemy import text

from inspection.analytics import AnalyticsReader
from inspection.config import ModelConfig
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import ensure_topics
from inspection.kafka.admin import producer_config
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import ResultStore
from inspection.tiling import TileGrid
from synthetic.photos import PhotoFrameSource
from tests.integration.test_pipeline import _dlq_records, committed_offsets, make_settings
from tests.stored import rejected

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

S = 1_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def record(car: str, cam: int | bytes, shot: int, payload: bytes, now: int, **headers: object) -> tuple[bytes, bytes, list]:
    """A frame record of the 2-camera × 1-shot test line, with some headers replaced (None: left out)."""
    frame = FrameMessage(frame_id=FrameId("car-x", 0, 0, 2), captured_at_ns=now, deadline_at_ns=now + 600 * S, payload=payload)
    camera = cam if isinstance(cam, bytes) else str(cam).encode()
    values = {**dict(frame.headers()), "car_id": car.encode(), "camera": camera, "shot": str(shot).encode()}
    for name, value in headers.items():
        values[name] = value if value is None or isinstance(value, bytes) else str(value).encode()
    key = values["car_id"] + b":" + values["camera"]
    return key, payload, [(n, v) for n, v in values.items() if v is not None]


def test_poison_records_are_parked_and_a_restarted_consumer_stays_up(kafka_config, store_db_url, yolox_onnx, tmp_path):
    model = ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx)
    settings = make_settings(kafka_config, store_db_url, model, shots=1, cameras=2)
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, settings.kafka)
    jpeg = encode_image(PhotoFrameSource(TileGrid())(0, 0, 0), 85)
    png = cv2.imencode(".png", np.zeros((2100, 2700, 3), np.uint8))[1].tobytes()
    now = time.time_ns()
    poison = {
        # 1. values the store or the database refused (crash loop before)
        "camera of 5000 digits": record("car-a", b"7" * 5000, 0, jpeg, now),
        "car_id of 65 characters": record("c" * 65, 0, 0, jpeg, now),
        "capture time 10^25 ns": record("car-a", 0, 0, jpeg, now, captured_at_ns=10**25),
        "camera 2^31": record("car-a", 2**31, 0, jpeg, now),
        "camera 2^63": record("car-a", 2**63, 0, jpeg, now),
        "NUL in car_id": record("car\x00a", 0, 0, jpeg, now),
        # 2. bad values that were stored as good frames
        "camera outside the line": record("car-a", 7, 0, jpeg, now),
        "shots_per_car 10^9": record("car-a", 0, 0, jpeg, now, shots_per_car=10**9),
        "deadline before capture": record("car-a", 1, 0, jpeg, now, deadline_at_ns=now - S),
        "capture in the year 2200": record("car-a", 1, 0, jpeg, now, captured_at_ns=7_258_118_400 * S),
        # 3. frames that corrupted a car's verdict: a first frame saying 1 frame per car, an extra camera
        "first frame says 1 frame per car": record("car-a", 0, 0, jpeg, now, shots_per_car=1),
        "frame of a camera the line lacks": record("car-a", 2, 0, jpeg, now),
    }
    mislabelled = record("car-png", 0, 0, png, now)  # PNG bytes labelled image/jpeg: an error row on its slot
    good = [record("car-a", 0, 0, jpeg, now + 1000), record("car-a", 1, 0, jpeg, now + 2000)]
    records = [*poison.values(), mislabelled, *good]
    raw = Producer(producer_config(bootstrap, settings.kafka, dlq=True))
    for key, value, headers in records:
        raw.produce(settings.kafka.topic, value=value, key=key, headers=headers, partition=0)
    assert raw.flush(30) == 0

    store = ResultStore.open(settings.store)
    pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, bootstrap)
    stats = pipeline.run(stop_when=lambda s: s.frames_handled >= len(records))
    assert pipeline.failure is None
    assert (stats.frames_stored, stats.frames_parked) == (2, len(poison) + 1)

    letters = _dlq_records(settings, len(poison) + 1)
    assert len(letters) == len(poison) + 1
    by_offset = {letter.source_offset: letter for letter in letters}
    for offset, case in enumerate(poison):
        assert by_offset[offset].error_kind in ("bad_message", "invalid_frame"), case
    errors = [letter.error for letter in letters]
    assert any("has 5000 digits" in e for e in errors) and any(
        "camera 7 outside the line's 2 cameras (configs: line.cameras)" in e for e in errors
    )
    assert any("shots_per_car=1 disagrees with the line's 2 frames per car" in e for e in errors)
    assert any("2200-01-01" in e and "validation.max_future_s" in e for e in errors)
    assert by_offset[len(poison)].error_kind == "content_type_mismatch"

    # The car's verdict comes from its own two frames: not completed by the hostile first frame,
    # no frame of camera 2 counted; the hostile cars never became car rows.
    summary = AnalyticsReader(store.engine).car_row("car-a")
    assert (summary.frames_stored, summary.frames_expected, summary.errors) == (2, 2, 0)
    assert summary.complete and summary.deadline_met is True and summary.verdict == "met"
    with store.engine.connect() as conn:
        cars = set(conn.execute(text("SELECT car_id FROM cars")).scalars())
        slots = conn.execute(text("SELECT car_id, camera, shot, error_kind FROM frames ORDER BY car_id, camera")).all()
    assert cars == {"car-a", "car-png"}
    assert [tuple(r) for r in slots] == [("car-a", 0, 0, None), ("car-a", 1, 0, None), ("car-png", 0, 0, "content_type_mismatch")]
    rows = rejected(store.engine)
    assert len(rows) == len(poison) and all("\x00" not in r.error for r in rows)
    assert committed_offsets(settings) == len(records)
    store.close()

    # Restart: a new consumer process in the group finds nothing to redo and stays up.
    port = free_port()
    env = {
        **os.environ,
        "INSPECTION__KAFKA__TOPIC": kafka_config.topic,
        "INSPECTION__KAFKA__DLQ_TOPIC": kafka_config.dlq_topic,
        "INSPECTION__KAFKA__GROUP_ID": kafka_config.group_id,
        "INSPECTION__KAFKA__PARTITIONS": str(kafka_config.partitions),
        "INSPECTION__MODEL__NAME": "yolox_nano",
        "INSPECTION__MODEL__PATH": str(yolox_onnx),
        "INSPECTION__STORE__IMAGE_DIR": "null",
        "INSPECTION__LINE__CAMERAS": "2",
        "INSPECTION__LINE__SHOTS_PER_CAMERA": "1",
        "INSPECTION__HEALTH__LAG_INTERVAL_S": "0.5",
        "INSPECTION__LOGGING__FORMAT": "json",
    }
    edge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inspection.cli",
            "edge",
            "--bootstrap",
            bootstrap,
            "--db",
            store_db_url,
            "--backend",
            "onnxruntime",
            "--metrics-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and edge.poll() is None:
            try:
                code, body = get(base + "/readyz")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
                continue
            ready = (code, json.loads(body))
            if code == 200:
                break
            time.sleep(0.5)
        assert edge.poll() is None, f"the restarted consumer died: {edge.communicate()[1][-3000:]}"
        assert ready is not None and ready[0] == 200, ready
        checks = ready[1]["checks"]
        assert checks["database"] == "reachable" and checks["progress"] == "lag 0" and checks["assigned"]
        assert get(base + "/healthz")[0] == 200
        assigned = len(checks["assigned"]) if isinstance(checks["assigned"], list) else None
        lags: list[str] = []
        until = time.monotonic() + 30
        while time.monotonic() < until:  # statistics every 0.5 s: until every assigned partition has its gauge
            metrics = get(base + "/metrics")[1].decode()
            lags = [line for line in metrics.splitlines() if line.startswith("inspection_consumer_lag{")]
            if lags and (assigned is None or len(lags) >= assigned):
                break
            time.sleep(0.2)
        assert lags and all(line.endswith(" 0.0") for line in lags), lags
        assert "inspection_frames_received_total 0.0" in metrics  # nothing was redelivered
        assert 'inspection_queue_depth{stage="detect"} 0.0' in metrics
        assert edge.poll() is None
    finally:
        edge.send_signal(signal.SIGTERM)
        out, err = edge.communicate(timeout=60)
    assert edge.returncode == 0, err[-3000:]
    assert "0 frames stored, 0 parked" in out
    logged = [json.loads(line) for line in err.splitlines() if line.strip()]  # logging.format json: one object a line
    assert any(entry["message"].startswith("assigned") for entry in logged), logged
