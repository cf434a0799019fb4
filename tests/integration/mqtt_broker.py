"""A real Mosquitto broker of the test's own (a process it can stop and restart), and a real subscriber."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """mosquitto on 127.0.0.1:port with persistence in `folder`; optional password file and TLS files."""

    def __init__(self, folder: Path, port: int, passwd: Path | None = None, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.folder, self.port = folder, port
        lines = [f"listener {port} 127.0.0.1", "persistence true", f"persistence_location {folder}/", "log_type error"]
        lines += [f"password_file {passwd}", "allow_anonymous false"] if passwd else ["allow_anonymous true"]
        if tls:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("mosquitto exited at start") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: saves the persistent sessions
            self.process.wait(10)
        self.process = None


class Subscriber:
    """A persistent-session QoS 1 subscriber to inspection/<line>/#; collects (topic, payload, retained)."""

    def __init__(self, port: int, line: str, *, auth: tuple[str, str] | None = None, ca: Path | None = None) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self.changed = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", clean_session=False)
        if auth:
            self.client.username_pw_set(*auth)
        if ca:
            self.client.tls_set(ca_certs=str(ca))
        self.client.reconnect_delay_set(0.1, 0.5)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"inspection/{line}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.changed:
            self.messages.append((message.topic, json.loads(message.payload), bool(message.retain)))
            self.changed.notify_all()

    def car_topics(self) -> Counter[str]:
        return Counter(t for t, _, _ in self.messages if "/cars/" in t)

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                pytest.fail(f"subscriber saw {self.car_topics()} after {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
