"""MQTT sink (paho-mqtt): each decided car on `inspection/<line>/cars/<car_id>` and retained on
`inspection/<line>/last`, QoS 1; a publish counts only once the broker acknowledged it (PUBACK)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from .config import MqttConfig

log = logging.getLogger(__name__)


class SinkUnavailable(RuntimeError):
    """The receiver did not take the signal (down, unreachable, no acknowledgement in time)."""


def car_topic(line: str, car_id: str) -> str:
    return f"inspection/{line}/cars/{car_id}"


def last_topic(line: str) -> str:
    return f"inspection/{line}/last"


class MqttSink:
    name = "mqtt"

    def __init__(self, config: MqttConfig, line: str) -> None:
        self.config = config
        self.line = line
        self._client: Any = None

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself after an outage."""
        import paho.mqtt.client as mqtt

        c = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.client_id, clean_session=True)
        if c.username is not None:
            client.username_pw_set(c.username, c.password)
        if c.tls:
            client.tls_set(
                ca_certs=str(c.ca_file) if c.ca_file else None,
                certfile=str(c.cert_file) if c.cert_file else None,
                keyfile=str(c.key_file) if c.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        client.loop_start()
        self._client = client

    def publish(self, car_id: str, payload: str) -> None:
        """Publish one car (QoS 1) and the retained last; raise SinkUnavailable unless both were acknowledged."""
        client = self._client
        if client is None or not client.is_connected():
            raise SinkUnavailable(f"MQTT broker {self.config.host}:{self.config.port} not connected")
        for topic, retain in ((car_topic(self.line, car_id), False), (last_topic(self.line), True)):
            info = client.publish(topic, payload, qos=1, retain=retain)
            try:
                info.wait_for_publish(self.config.ack_timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise SinkUnavailable(f"MQTT publish to {topic} failed: {exc}") from exc
            if not info.is_published():
                raise SinkUnavailable(f"MQTT broker gave no PUBACK for {topic} within {self.config.ack_timeout_s:g} s")

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None
