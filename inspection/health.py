"""/healthz, /readyz and /metrics of an edge consumer, on one small HTTP server (`--metrics-port`).

- `/healthz` (liveness): 200 while the process runs and the pipeline has not failed; 503 once a
  stage failed (the process is about to exit non-zero).
- `/readyz` (readiness): 200 only when all of these hold, else 503 naming the failing checks:
  `assigned` (the consumer group gave this member partitions), `progress` (a frame was handled
  within `health.stall_s` whenever its partitions have lag; idle with no lag is fine) and
  `database` (a `SELECT 1` answered; checked at most every `health.db_check_s`).
Both answer JSON: `{"status": "ok"|"failing", "checks": {...}}`.

`Readiness` is fed by the pipeline (assignment, lag, progress, failure); it holds no reference to
the pipeline and is testable alone with a fake clock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .config import HealthConfig

log = logging.getLogger(__name__)

TP = tuple[str, int]


class Readiness:
    """Thread-safe health of one consumer; `ping` checks the database (raises when unreachable)."""

    def __init__(self, config: HealthConfig, ping: Callable[[], None], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._ping = ping
        self._clock = clock
        self._lock = threading.Lock()
        self._assigned: set[TP] = set()
        self._lag: dict[TP, int] = {}
        self._progress_at: float | None = None
        self._assigned_at: float | None = None
        self._failure: str | None = None
        self._db: tuple[float, str | None] | None = None  # (checked at, error or None)
        self._joined = threading.Event()  # set when partitions were first assigned

    # ------------------------------------------------------------------ fed by the pipeline

    def assigned(self, partitions: list[TP]) -> None:
        with self._lock:
            self._assigned.update(partitions)
            self._assigned_at = self._clock()
        if partitions:
            self._joined.set()

    def joined(self, timeout_s: float | None) -> bool:
        """Wait until the consumer first holds partitions (True), or `timeout_s` passed (False)."""
        return self._joined.wait(timeout_s)

    def revoked(self, partitions: list[TP]) -> None:
        with self._lock:
            self._assigned.difference_update(partitions)
            for tp in partitions:
                self._lag.pop(tp, None)

    def lag(self, lag: dict[TP, int]) -> None:
        with self._lock:
            self._lag = {tp: n for tp, n in lag.items() if tp in self._assigned}

    def progress(self) -> None:
        with self._lock:
            self._progress_at = self._clock()

    def failed(self, reason: str) -> None:
        with self._lock:
            self._failure = reason

    # ------------------------------------------------------------------ probes

    def live(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            failure = self._failure
        return failure is None, {"pipeline": "running" if failure is None else f"failed: {failure}"}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        now = self._clock()
        with self._lock:
            assigned = sorted(self._assigned)
            lag = sum(self._lag.values())
            since = self._progress_at if self._progress_at is not None else self._assigned_at
            failure = self._failure
        checks: dict[str, Any] = {}
        ok = failure is None
        if failure is not None:
            checks["pipeline"] = f"failed: {failure}"
        checks["assigned"] = [f"{t}[{p}]" for t, p in assigned] or "no partitions assigned yet"
        ok &= bool(assigned)
        if lag > 0 and since is not None and now - since > self.config.stall_s:
            checks["progress"] = (
                f"lag {lag} and no frame handled for {now - since:.0f} s (health.stall_s={self.config.stall_s:g})"
            )
            ok = False
        else:
            checks["progress"] = f"lag {lag}"
        db_error = self._database(now)
        checks["database"] = "reachable" if db_error is None else f"unreachable: {db_error}"
        ok &= db_error is None
        return ok, checks

    def _database(self, now: float) -> str | None:
        cached = self._db
        if cached is not None and now - cached[0] < self.config.db_check_s:
            return cached[1]
        try:
            self._ping()
            error = None
        except Exception as exc:  # any failure to answer is "unreachable" for a probe
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._db = (now, error)
        return error


class Probes(Protocol):
    """What /healthz and /readyz ask: (ok, checks). `Readiness` for one pipeline; the edge supervisor's for its workers."""

    def live(self) -> tuple[bool, dict[str, Any]]: ...

    def ready(self) -> tuple[bool, dict[str, Any]]: ...


class HealthServer:
    """Serves /metrics (the registry), /healthz and /readyz on `addr:port` from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, readiness: Probes | None) -> None:
        self.registry = registry
        self.readiness = readiness
        self._server: ThreadingHTTPServer | None = None

    def start(self, port: int, addr: str = "127.0.0.1") -> int:
        """Listen and serve; returns the port (useful with port 0)."""
        registry, readiness = self.registry, self.readiness

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    if readiness is None:
                        ok, checks = True, {"pipeline": "not tracked"}
                    else:
                        ok, checks = readiness.live() if path == "/healthz" else readiness.ready()
                    body = json.dumps({"status": "ok" if ok else "failing", "checks": checks}).encode()
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a line
                log.debug("health server: " + format, *args)

        self._server = ThreadingHTTPServer((addr, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True).start()
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
