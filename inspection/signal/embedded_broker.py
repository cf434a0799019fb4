"""An MQTT broker inside the demo process (amqtt), on loopback, so the demo's verdicts reach a subscriber
with nothing else installed. Not for a plant: it is anonymous and in memory (deploy/ runs Mosquitto)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedMqttBroker:
    """`with EmbeddedMqttBroker() as broker:` an anonymous amqtt broker on 127.0.0.1:`broker.port`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def __enter__(self) -> EmbeddedMqttBroker:
        from amqtt.broker import Broker

        self.port = self.port or free_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="mqtt-broker", daemon=True)
        self._thread.start()

        async def start() -> Any:
            broker = Broker(config)
            await broker.start()
            return broker

        self._broker = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        return self

    def subscribe_hint(self, line: str) -> str:
        return f"mosquitto_sub -h 127.0.0.1 -p {self.port} -t 'inspection/{line}/#' -v"

    def __exit__(self, *exc: object) -> None:
        if self._loop is None:
            return
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        self._loop.close()
        self._loop = None
