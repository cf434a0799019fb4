"""/healthz and /readyz: what makes a consumer ready, served over real HTTP next to /metrics."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from inspection.config import HealthConfig
from inspection.health import HealthServer, Readiness
from inspection.metrics import PipelineMetrics
from inspection.store import StoreUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(db_up: list[bool]) -> tuple[Readiness, Clock, list[int]]:
    clock = Clock()
    pings: list[int] = []

    def ping() -> None:
        pings.append(1)
        if not db_up[0]:
            raise StoreUnavailable("pinging postgresql://db: connection refused")

    return Readiness(HealthConfig(stall_s=60, db_check_s=10), ping, clock=clock), clock, pings


def test_ready_needs_partitions_progress_under_lag_and_the_database() -> None:
    db = [True]
    readiness, clock, pings = make(db)
    ok, checks = readiness.ready()
    assert not ok and checks["assigned"] == "no partitions assigned yet"
    readiness.assigned([("frames", 0), ("frames", 3)])
    ok, checks = readiness.ready()
    assert ok and checks == {"assigned": ["frames[0]", "frames[3]"], "progress": "lag 0", "database": "reachable"}
    # Lagging: fine while frames are handled; not ready once nothing was handled for stall_s.
    readiness.lag({("frames", 0): 40, ("frames", 9): 7})  # a partition not assigned here is ignored
    clock.now += 59
    assert readiness.ready()[0]
    clock.now += 2
    ok, checks = readiness.ready()
    assert not ok and checks["progress"].startswith("lag 40 and no frame handled for 61 s")
    readiness.progress()
    assert readiness.ready()[0]
    # Idle without lag is ready however long nothing arrives.
    readiness.lag({("frames", 0): 0})
    clock.now += 3600
    assert readiness.ready()[0]
    # The database is pinged at most every db_check_s.
    db[0] = False
    before = len(pings)
    clock.now += 5
    assert readiness.ready()[0] and len(pings) == before
    clock.now += 10
    ok, checks = readiness.ready()
    assert not ok and checks["database"] == "unreachable: pinging postgresql://db: connection refused"
    readiness.revoked([("frames", 0), ("frames", 3)])
    assert readiness.ready()[1]["assigned"] == "no partitions assigned yet"


def test_a_failed_pipeline_is_neither_live_nor_ready() -> None:
    readiness, _, _ = make([True])
    readiness.assigned([("frames", 0)])
    assert readiness.live() == (True, {"pipeline": "running"})
    readiness.failed("database postgresql://db failed storing car=1 after 6 attempt(s)")
    live, checks = readiness.live()
    assert not live and checks["pipeline"].startswith("failed: database")
    assert not readiness.ready()[0]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_answers_probes_and_metrics() -> None:
    metrics = PipelineMetrics()
    metrics.set_lag({("frames", 0): 5, ("frames", 2): 0})
    metrics.watch_queues({"detect": lambda: 3, "store": lambda: 1, "uncommitted": lambda: 4})
    readiness, _, _ = make([True])
    server = HealthServer(metrics.registry, readiness)
    port = server.start(0)
    try:
        base = f"http://127.0.0.1:{port}"
        code, kind, body = get(base + "/readyz")
        assert code == 503 and kind == "application/json" and json.loads(body)["status"] == "failing"
        readiness.assigned([("frames", 0)])
        code, _, body = get(base + "/readyz")
        assert code == 200 and json.loads(body) == {
            "status": "ok",
            "checks": {"assigned": ["frames[0]"], "progress": "lag 0", "database": "reachable"},
        }
        assert get(base + "/healthz")[0] == 200
        code, kind, body = get(base + "/metrics")
        assert code == 200 and kind.startswith("text/plain")
        assert 'inspection_consumer_lag{partition="0",topic="frames"} 5.0' in body
        assert 'inspection_queue_depth{stage="detect"} 3.0' in body and 'inspection_queue_depth{stage="uncommitted"} 4.0' in body
        assert get(base + "/nope")[0] == 404
        metrics.set_lag({("frames", 2): 1})  # revoked partitions disappear from the gauges
        body = get(base + "/metrics")[2]
        assert 'partition="0"' not in body and 'inspection_consumer_lag{partition="2",topic="frames"} 1.0' in body
        readiness.failed("boom")
        assert get(base + "/healthz")[0] == 503
    finally:
        server.close()


def test_disk_gauge_reads_the_image_file_system(tmp_path) -> None:
    metrics = PipelineMetrics()
    metrics.watch_disk(tmp_path)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    values = {
        kind: float(line.split()[-1])
        for line in text.splitlines()
        for kind in ("used", "free", "total")
        if line.startswith(f'inspection_image_disk_bytes{{kind="{kind}"}}')
    }
    assert set(values) == {"used", "free", "total"} and 0 < values["free"] <= values["total"]
    assert values["used"] <= values["total"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_without_readiness_the_probes_only_say_the_process_is_up(path: str) -> None:
    server = HealthServer(PipelineMetrics().registry, None)
    port = server.start(0)
    try:
        assert get(f"http://127.0.0.1:{port}{path}")[0] == 200
    finally:
        server.close()
