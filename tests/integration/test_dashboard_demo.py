"""`inspection demo --serve`: the dashboard is up on the demo's database before the car arrives and
shows it with its boxes afterwards; the demo's closing hint names that database and image store."""

from __future__ import annotations

import uuid

import httpx
import pytest

from inspection.config import Settings
from inspection.tools.demo import dashboard_hint, run_demo, start_demo_dashboard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_demo_dashboard_shows_the_car_with_its_boxes(kafka_broker, tmp_path):
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_broker.bootstrap_servers,
            "topic": f"demo-{suffix}",
            "dlq_topic": f"demo-{suffix}.dlq",
            "group_id": f"demo-{suffix}",
        },
        store={"url": db, "image_dir": str(tmp_path / "images")},
        line={"cameras": 2, "shots_per_camera": 1},
    )
    assert dashboard_hint(settings) == f"inspection dashboard --db {db} --images {tmp_path / 'images'}"
    dashboard = start_demo_dashboard(settings, port=0)
    try:
        with httpx.Client(base_url=dashboard.url, timeout=30) as client:
            assert client.get("/api/cars").json()["total"] == 0  # up before the first frame
            result = run_demo(settings, cars=1, realtime=False)
            (car,) = client.get("/api/cars").json()["items"]
            assert car["car_id"] == result.cars[0].car_id and car["frames_stored"] == 2 == car["frames_expected"]
            assert car["detections"] == result.cars[0].detections > 0
            cells = client.get(f"/api/cars/{car['car_id']}").json()["cells"]
            frame_id = max(cells, key=lambda c: c["detections"])["frame_id"]
            boxes = client.get(f"/api/frames/{frame_id}/detections").json()
            assert len(boxes["score"]) == max(c["detections"] for c in cells) > 0
            assert client.get(f"/frames/{frame_id}/image.jpg").headers["content-type"] == "image/jpeg"
            assert "frame-image" in client.get(f"/frames/{frame_id}").text
    finally:
        dashboard.stop()
