"""One /metrics, /healthz and /readyz for all worker processes of `inspection edge --workers N`.

Each worker serves its own pipeline's registry on a loopback port of its own; the supervisor's
endpoint reads them at scrape time (as Prometheus federation would) and re-exposes every sample
with a `worker` label, so one scrape target per host sees every worker: `sum by (...)` over
`worker` gives the host's figures. A worker that does not answer (starting, restarting, dead) is
`inspection_edge_worker_up{worker} 0`; /readyz is ready only when every worker's /readyz is;
/healthz stays up while the supervisor runs (it restarts workers itself) and lists each worker's state.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


def _get(url: str, timeout_s: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class WorkersCollector(Collector):
    """Every worker's metrics with a `worker` label, plus `inspection_edge_worker_up` and restarts."""

    def __init__(self, worker_urls: dict[str, str], restarts: Callable[[], int], timeout_s: float = 2.0) -> None:
        self.worker_urls = worker_urls  # worker label -> base URL (http://127.0.0.1:PORT)
        self.restarts = restarts
        self.timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("inspection_edge_worker_up", "1 when the worker process answered this scrape", labels=["worker"])
        merged: dict[str, Metric] = {}
        for worker, base in self.worker_urls.items():
            try:
                status, body = _get(base + "/metrics", self.timeout_s)
            except OSError:  # not listening yet, or gone: the worker is down for this scrape
                status, body = 0, b""
            up.add_metric([worker], 1.0 if status == 200 else 0.0)
            if status != 200:
                continue
            for family in text_string_to_metric_families(body.decode("utf-8")):
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "worker": worker}, sample.value, sample.timestamp)
        yield up
        restarts = GaugeMetricFamily("inspection_edge_worker_restarts", "worker processes restarted by the supervisor")
        restarts.add_metric([], float(self.restarts()))
        yield restarts
        yield from merged.values()


class WorkersReadiness:
    """/healthz: the supervisor is up (worker processes listed); /readyz: every worker's /readyz passes."""

    def __init__(self, worker_urls: dict[str, str], alive: Callable[[], dict[str, bool]], timeout_s: float = 2.0) -> None:
        self.worker_urls = worker_urls
        self.alive = alive
        self.timeout_s = timeout_s

    def live(self) -> tuple[bool, dict[str, Any]]:
        """Live while the supervisor answers: it restarts dead workers itself, and a liveness probe that
        failed during a worker's restart backoff would have the whole host's workers killed."""
        alive = self.alive()
        return True, {f"worker {w}": "alive" if ok else "not running (restarting or stopped)" for w, ok in alive.items()}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        for worker, base in self.worker_urls.items():
            try:
                status, body = _get(base + "/readyz", self.timeout_s)
                checks[f"worker {worker}"] = "ready" if status == 200 else json.loads(body).get("checks", status)
            except (OSError, ValueError) as exc:
                checks[f"worker {worker}"] = f"not answering ({exc})"
        return all(v == "ready" for v in checks.values()), checks


def workers_registry(collector: WorkersCollector) -> CollectorRegistry:
    """A registry of its own holding only the workers' collector (no process-global state)."""
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
