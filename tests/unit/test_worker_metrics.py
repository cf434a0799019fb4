"""The supervisor's one endpoint for all workers: real HTTP servers on loopback, real registries."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from inspection.edge.worker_metrics import WorkersCollector, WorkersReadiness, workers_registry
from inspection.health import HealthServer
from inspection.metrics import PipelineMetrics


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(body: bytes) -> dict[tuple[str, str], float]:
    """(sample name, worker label) -> value."""
    return {
        (s.name, s.labels.get("worker", "")): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if not s.labels.keys() - {"worker"}
    }


def test_one_endpoint_labels_every_workers_samples_and_marks_silent_workers_down() -> None:
    workers = [PipelineMetrics(), PipelineMetrics()]
    workers[0].frames_stored.inc(3)
    workers[1].frames_stored.inc(5)
    servers = [HealthServer(m.registry, None) for m in workers]
    urls = {str(k): f"http://127.0.0.1:{s.start(0)}" for k, s in enumerate(servers)}
    urls["2"] = f"http://127.0.0.1:{closed_port()}"  # a worker that is restarting: nothing listens
    alive = {"0": True, "1": True, "2": False}
    front = HealthServer(workers_registry(WorkersCollector(urls, lambda: 4)), WorkersReadiness(urls, lambda: alive))
    base = f"http://127.0.0.1:{front.start(0)}"
    try:
        status, body = get(base + "/metrics")
        assert status == 200
        got = samples(body)
        assert got[("inspection_frames_stored_total", "0")] == 3 and got[("inspection_frames_stored_total", "1")] == 5
        assert ("inspection_frames_stored_total", "2") not in got
        assert [got[("inspection_edge_worker_up", w)] for w in "012"] == [1, 1, 0]
        assert got[("inspection_edge_worker_restarts", "")] == 4
        status, body = get(base + "/readyz")  # worker 2 does not answer: the host is not ready
        checks = json.loads(body)["checks"]
        assert status == 503 and checks["worker 0"] == checks["worker 1"] == "ready" and "not answering" in checks["worker 2"]
        # live while the supervisor answers (it restarts worker 2 itself), naming the worker's state
        status, body = get(base + "/healthz")
        assert status == 200 and "not running" in json.loads(body)["checks"]["worker 2"]
        alive["2"] = True
        assert json.loads(get(base + "/healthz")[1])["checks"]["worker 2"] == "alive"
    finally:
        for server in [front, *servers]:
            server.close()


def test_ready_when_every_worker_is_ready() -> None:
    servers = [HealthServer(PipelineMetrics().registry, None) for _ in range(2)]
    urls = {str(k): f"http://127.0.0.1:{s.start(0)}" for k, s in enumerate(servers)}
    front = HealthServer(
        workers_registry(WorkersCollector(urls, lambda: 0)), WorkersReadiness(urls, lambda: {"0": True, "1": True})
    )
    try:
        status, body = get(f"http://127.0.0.1:{front.start(0)}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        for server in [front, *servers]:
            server.close()
