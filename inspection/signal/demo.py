"""The demo's line signal: the example rules when the config has none, an embedded MQTT broker, the relay."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import Settings
from ..store import upgrade_database
from ..store.db import create_engine_for
from .config import OpcUaConfig
from .embedded_broker import EmbeddedMqttBroker, free_port
from .opcua import endpoint_url
from .service import running_relay


def with_example_rules(settings: Settings) -> Settings:
    """The settings with the shipped COCO example rules when they configure no defect class."""
    if settings.inspection.rules.defects:
        return settings
    from ..rules.load import example_rules

    inspection = settings.inspection.model_copy(update={"rules": example_rules()})
    return settings.model_copy(update={"inspection": inspection})


@dataclass(frozen=True)
class DemoSignal:
    settings: Settings  # with the rules and the line signal the demo uses
    mqtt_port: int
    subscribe: str  # the command that shows the verdicts
    opcua_endpoint: str


@contextlib.contextmanager
def demo_signal(settings: Settings, drain_timeout_s: float = 10.0) -> Iterator[DemoSignal]:
    """An embedded MQTT broker and an OPC UA server on loopback (free ports), the relay publishing to both;
    on exit the outbox is drained (up to `drain_timeout_s`) so the last car reaches them before they stop."""
    settings = with_example_rules(settings)
    with EmbeddedMqttBroker() as broker:
        signal = settings.signal
        mqtt = signal.mqtt.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": broker.port})
        opcua = OpcUaConfig(enabled=True, host="127.0.0.1", port=free_port())  # loopback: no certificates needed
        signal = signal.model_copy(update={"mqtt": mqtt, "opcua": opcua, "poll_s": 0.1})
        settings = settings.model_copy(update={"signal": signal})
        upgrade_database(settings.store.url)
        engine = create_engine_for(settings.store.url)
        try:
            with running_relay(engine, settings.signal) as relay:
                assert broker.port is not None
                yield DemoSignal(settings, broker.port, broker.subscribe_hint(signal.line), endpoint_url(opcua))
                waited = threading.Event()
                for _ in range(int(drain_timeout_s / 0.1)):
                    if relay.refresh_gauges()[0] == 0:
                        break
                    waited.wait(0.1)
        finally:
            engine.dispose()
