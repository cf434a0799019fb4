"""The line-signal service: the outbox relay with the configured sinks, its gauges on /metrics.

One composition root for `inspection signal` and the demo: it builds the sinks the config enables,
starts them, runs the relay until `stop`, and closes them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

from .config import SignalConfig
from .mqtt import MqttSink
from .outbox import OutboxMetrics, OutboxRelay, Sink


def build_sinks(config: SignalConfig) -> list[Any]:
    sinks: list[Any] = []
    if config.mqtt.enabled:
        sinks.append(MqttSink(config.mqtt, config.line))
    if config.opcua.enabled:
        from .opcua import OpcUaSink

        sinks.append(OpcUaSink(config.opcua, config.line))
    return sinks


@contextlib.contextmanager
def running_relay(engine: Engine, config: SignalConfig, metrics: OutboxMetrics | None = None) -> Iterator[OutboxRelay]:
    """Sinks started and the relay publishing on a thread; on exit the relay stops and the sinks close."""
    sinks: list[Sink] = build_sinks(config)
    if not sinks:
        raise ValueError("no line signal enabled: set signal.mqtt.enabled and/or signal.opcua.enabled")
    started: list[Any] = []
    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        for sink in sinks:
            sink.start()  # type: ignore[attr-defined]
            started.append(sink)
        relay = OutboxRelay(engine, sinks, config, metrics or OutboxMetrics())
        thread = threading.Thread(target=relay.run, args=(stop,), name="signal-relay", daemon=True)
        thread.start()
        yield relay
    finally:
        stop.set()
        if thread is not None:
            thread.join()
        for sink in reversed(started):
            sink.close()
