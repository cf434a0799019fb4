"""Camera retakes on the real broker into SQLite and PostgreSQL: the record with the highest offset wins.

A retake re-sends a frame (same car, camera and shot: same partition) with a different image. The
edge prepares frames on several threads and detects on two detectors, so a later, cheap retake
can overtake an earlier, expensive one; persist must still apply one key's records in offset
order, so the stored row is always the last offset's image.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from sqlalchemy import text

from inspection.analytics import AnalyticsReader
from inspection.config import ModelConfig
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import FrameProducer, ensure_topics
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import ResultStore
from inspection.tiling import TileGrid
from synthetic.photos import PhotoFrameSource
from tests.integration.test_pipeline import committed_offsets, make_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

S = 1_000_000_000
CARS = 2
RETAKES = 4  # per frame key, alternating an expensive image (slow to decode) and a cheap one


@pytest.fixture(scope="module")
def yolox_model(yolox_onnx) -> ModelConfig:
    return ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx)


@pytest.fixture(scope="module")
def photo_source() -> PhotoFrameSource:
    return PhotoFrameSource(TileGrid())


def retake_images(photo_source: PhotoFrameSource, car: int, shot: int) -> list[bytes]:
    """Expensive (noisy photo, quality 98) then cheap (flat grey, quality 30), alternating, all distinct."""
    rng = np.random.default_rng(car * 10 + shot)
    photo = photo_source(car, 0, shot)
    images = []
    for k in range(RETAKES):
        if k % 2 == 0:
            noisy = np.clip(photo.astype(np.int16) + rng.integers(-40, 40, photo.shape, dtype=np.int16), 0, 255)
            images.append(encode_image(noisy.astype(np.uint8), quality=98))
        else:
            images.append(encode_image(np.full_like(photo, 60 + 10 * k + car), quality=30))
    return images


def test_the_last_retake_of_a_frame_wins_with_parallel_preparation(
    kafka_config, store_db_url, yolox_model, photo_source, tmp_path
):
    settings = make_settings(kafka_config, store_db_url, yolox_model, shots=2, cameras=1, tmp_path=tmp_path)
    pipeline_cfg = settings.pipeline.model_copy(update={"decode_workers": 4, "infer_workers": 2, "queue_size": 4})
    settings = settings.model_copy(update={"pipeline": pipeline_cfg})
    bootstrap = kafka_config.bootstrap_servers
    ensure_topics(bootstrap, settings.kafka)
    now = time.time_ns()
    last_image: dict[tuple[str, int], bytes] = {}
    sent = 0
    with FrameProducer(bootstrap, settings.kafka, shots_per_camera=2) as producer:
        for car in range(CARS):
            car_id = f"RETAKE-{car}"
            images = {shot: retake_images(photo_source, car, shot) for shot in (0, 1)}
            for k in range(RETAKES):  # the two keys' retakes interleaved, each key's in order
                for shot in (0, 1):
                    frame_id = FrameId(car_id, 0, shot, 2)
                    producer.send(
                        FrameMessage(frame_id=frame_id, captured_at_ns=now, deadline_at_ns=now + 600 * S, payload=images[shot][k])
                    )
                    last_image[(car_id, shot)] = images[shot][k]
                    sent += 1
        producer.flush()

    store = ResultStore.open(settings.store)
    detectors = [create_detector(settings.model, settings.detect) for _ in range(2)]
    pipeline = EdgePipeline(settings, detectors, store, bootstrap)
    stats = pipeline.run(stop_when=lambda s: s.frames_handled >= sent)
    assert stats.frames_stored == sent and stats.frames_parked == 0
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT car_id, shot, image_uri, kafka_partition, kafka_offset FROM frames")).all()
    assert len(rows) == CARS * 2
    for row in rows:
        stored = store.image_store.get(row.image_uri)
        expected = last_image[(row.car_id, row.shot)]
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(expected).hexdigest(), (
            f"car={row.car_id} shot={row.shot}: an earlier retake overwrote the last one (stored offset {row.kafka_offset})"
        )
    # every key's row carries the highest offset of its partition's records of that key
    for car in range(CARS):
        summary = AnalyticsReader(store.engine).car_row(f"RETAKE-{car}")
        assert summary.complete and summary.frames_stored == 2
    assert committed_offsets(settings) == sent
    store.close()
