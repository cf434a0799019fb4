"""Shared integration fixtures: one real Kafka-protocol broker for the whole test session.

`kafka_broker` is the embedded tansu broker (in-memory; started once, stopped at session end),
or an existing cluster when INSPECTION_TEST_BOOTSTRAP=host:port is set. `kafka_config` gives each
test its own topics and consumer group on it, so tests never see each other's records.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from inspection.config import KafkaConfig
from inspection.kafka import EmbeddedBroker, check_reachable
from tests.processes import process_alive


@dataclass(frozen=True)
class ExternalBroker:
    bootstrap_servers: str


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker | ExternalBroker]:
    external = os.environ.get("INSPECTION_TEST_BOOTSTRAP")
    if external:
        check_reachable(external, timeout=10)
        yield ExternalBroker(external)
        return
    broker = EmbeddedBroker().start()
    pid = broker.pid
    try:
        yield broker
    finally:
        broker.stop()
        assert pid is not None and not process_alive(pid), f"tansu broker pid {pid} still running after stop()"


@pytest.fixture
def kafka_config(kafka_broker) -> KafkaConfig:
    """KafkaConfig on the session broker with fresh topic/DLQ/group names (topics not yet created)."""
    suffix = uuid.uuid4().hex[:10]
    return KafkaConfig(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"frames-{suffix}",
        dlq_topic=f"frames-{suffix}.dlq",
        group_id=f"edge-{suffix}",
        partitions=3,
        session_timeout_ms=6000,
    )


from tests.integration.conftest_store import *  # noqa: E402, F403  (postgres_url, store_db_url, sqlite_url)
