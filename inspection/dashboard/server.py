"""Running the dashboard: in the foreground (`serve`) or on a background thread (`DashboardServer`,
used by `inspection demo --serve` and by the browser tests)."""

from __future__ import annotations

import threading
import time

import uvicorn

from .app import create_app
from .config import DashboardConfig, check_bind


def _server(config: DashboardConfig) -> uvicorn.Server:
    check_bind(config.host, config.token)
    return uvicorn.Server(
        uvicorn.Config(
            create_app(config), host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="on"
        )
    )


def serve(config: DashboardConfig) -> None:
    """Serve until Ctrl-C / SIGTERM (uvicorn handles both)."""
    _server(config).run()


class DashboardServer:
    """The dashboard on a daemon thread: `start()` returns once it accepts connections; `stop()`."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        server = self._server
        port = self.config.port
        if server is not None and server.servers:
            port = server.servers[0].sockets[0].getsockname()[1]
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{port}"

    def start(self, timeout_s: float = 30.0) -> DashboardServer:
        server = _server(self.config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
        self._server = server
        self._thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
