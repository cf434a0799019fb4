"""The `signal` section: where decided cars are published, and how securely.

Nobody on the plant network may forge or read verdicts where the site says so: a connection or a
listener on anything but loopback must be authenticated and encrypted (MQTT: username + TLS;
OPC UA: Basic256Sha256 with certificates) unless the section says `insecure: true`.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to any interface


class MqttConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(None, description="or env INSPECTION__SIGNAL__MQTT__PASSWORD")
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA of the broker's certificate (default: the system's)")
    cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    key_file: Path | None = None
    client_id: str = "inspection-signal"
    keepalive_s: int = Field(30, ge=5)
    ack_timeout_s: float = Field(5.0, gt=0, description="how long a publish waits for the broker's PUBACK")
    insecure: bool = Field(False, description="allow a broker off loopback without TLS and a username")

    @model_validator(mode="after")
    def _secure_off_loopback(self) -> MqttConfig:
        if self.enabled and not is_loopback(self.host) and not self.insecure and not (self.tls and self.username):
            raise ValueError(
                f"signal.mqtt.host {self.host} is off this machine: set tls: true and username/password "
                "(anyone on the network could read or forge verdicts), or insecure: true"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("signal.mqtt: give both username and password, or neither")
        return self


class OpcUaConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(4840, ge=0, le=65535)
    security: Literal["none", "Basic256Sha256"] = "none"
    cert_file: Path | None = Field(None, description="server certificate (DER or PEM), for Basic256Sha256")
    key_file: Path | None = Field(None, description="server private key (PEM)")
    trusted_client_certs: list[Path] = Field(default_factory=list, description="client certificates allowed to connect")
    insecure: bool = Field(False, description="allow an unencrypted listener off loopback")

    @model_validator(mode="after")
    def _secure_off_loopback(self) -> OpcUaConfig:
        if self.security == "Basic256Sha256" and (self.cert_file is None or self.key_file is None):
            raise ValueError("signal.opcua.security Basic256Sha256 needs cert_file and key_file")
        if self.enabled and not is_loopback(self.host) and self.security == "none" and not self.insecure:
            raise ValueError(
                f"signal.opcua.host {self.host} listens off this machine without encryption: set security: "
                "Basic256Sha256 with cert_file/key_file, or insecure: true"
            )
        return self


class SignalConfig(_Section):
    line: str = Field("line1", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the line's name in topics and nodes")
    outbox_max: int = Field(100_000, gt=0, description="signals kept while receivers are down; the oldest go first")
    batch: int = Field(200, gt=0, description="outbox rows claimed per round")
    poll_s: float = Field(0.5, gt=0, description="how often the relay looks for new rows when idle")
    retry_max_s: float = Field(30.0, gt=0, description="cap of the doubling wait between failed publish rounds")
    mqtt: MqttConfig = MqttConfig()
    opcua: OpcUaConfig = OpcUaConfig()
