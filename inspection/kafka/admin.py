"""Broker checks, topic creation and the client configurations every component shares.

One place decides how producers, consumers and topics agree on message sizes:
the `frames` topic and producers allow records up to `kafka.message_max_bytes`, the dead-letter
topic and its producer that plus `DLQ_HEADROOM_BYTES` (a dead letter carries the original record
and an error), consumers fetch records of either size. Image payloads are limited to
`messages.payload_limit(kafka.message_max_bytes)`.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from ..config import KafkaConfig
from ..messages.dead_letters import DLQ_HEADROOM_BYTES

log = logging.getLogger(__name__)
# librdkafka's own log lines go through Python logging (served by poll()), not to stderr.
RDKAFKA_LOGGER = logging.getLogger("inspection.kafka.librdkafka")

# Errors that mean "this broker does not take these topic configs", not "the request failed".
_CONFIG_REJECTED = {
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
    KafkaError.UNSUPPORTED_VERSION,
    KafkaError.INVALID_REQUEST,
}


class BrokerUnreachableError(ConnectionError):
    """No Kafka broker answered at the configured bootstrap address."""


class TopicError(RuntimeError):
    """A topic could not be created or does not have the required layout."""


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOGGER})


def check_reachable(bootstrap: str, timeout: float = 5.0) -> None:
    """Raise BrokerUnreachableError naming `bootstrap` unless a broker answers a metadata request in `timeout` s."""
    try:
        metadata = _admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnreachableError(
            f"no Kafka broker answered at {bootstrap} within {timeout:g} s ({exc.args[0].str()}); "
            "start one (`inspection broker`) or fix kafka.bootstrap_servers"
        ) from None
    if not metadata.brokers:
        raise BrokerUnreachableError(f"Kafka at {bootstrap} answered but lists no brokers; is the cluster starting?")


def topic_max_message_bytes(cfg: KafkaConfig, dlq: bool = False) -> int:
    """`max.message.bytes` for the frames topic (or the dead-letter topic, which needs headroom)."""
    return cfg.message_max_bytes + (DLQ_HEADROOM_BYTES if dlq else 0)


def _topic_partitions(admin: AdminClient, timeout: float) -> dict[str, int]:
    return {name: len(t.partitions) for name, t in admin.list_topics(timeout=timeout).topics.items()}


def _create(admin: AdminClient, topic: NewTopic, timeout: float) -> KafkaError | None:
    """Create one topic; None on success or when it already exists, else the error."""
    future = admin.create_topics([topic], request_timeout=timeout)[topic.topic]
    try:
        future.result(timeout=timeout + 5)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return None
        return err
    return None


def _warn_existing(admin: AdminClient, name: str, partitions: int, cfg: KafkaConfig, needed_bytes: int, timeout: float) -> None:
    if partitions < cfg.partitions:
        log.warning(
            "topic %s exists with %d partitions, fewer than kafka.partitions=%d: at most %d consumers share it",
            name,
            partitions,
            cfg.partitions,
            partitions,
        )
    try:
        futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)], request_timeout=timeout)
        (future,) = futures.values()
        entry = future.result(timeout=timeout + 5).get("max.message.bytes")
    except (KafkaException, ValueError) as exc:
        log.debug("cannot describe topic %s configs: %s", name, exc)
        return
    if entry is not None and entry.value is not None and entry.value.isdigit() and int(entry.value) < needed_bytes:
        log.warning(
            "topic %s has max.message.bytes=%s, below the %d bytes configured (kafka.message_max_bytes): "
            "large frames will be refused by the broker; raise the topic's max.message.bytes",
            name,
            entry.value,
            needed_bytes,
        )


def ensure_topics(bootstrap: str, cfg: KafkaConfig, timeout: float = 10.0) -> list[str]:
    """Create `cfg.topic` and `cfg.dlq_topic` if missing; returns the names it created.

    Partitions come from `kafka.partitions`, replication from `kafka.replication_factor`,
    `max.message.bytes` from `kafka.message_max_bytes` (plus headroom on the dead-letter topic).
    A broker that rejects the topic config gets the topic without it and a warning. Existing
    topics are left as they are; too few partitions or a too small max.message.bytes are logged.
    Raises BrokerUnreachableError or TopicError.
    """
    check_reachable(bootstrap, timeout)
    admin = _admin(bootstrap)
    existing = _topic_partitions(admin, timeout)
    created = []
    for name, dlq in ((cfg.topic, False), (cfg.dlq_topic, True)):
        needed_bytes = topic_max_message_bytes(cfg, dlq)
        if name in existing:
            _warn_existing(admin, name, existing[name], cfg, needed_bytes, timeout)
            continue
        config = {"max.message.bytes": str(needed_bytes)}
        err = _create(admin, NewTopic(name, cfg.partitions, cfg.replication_factor, config=config), timeout)
        if err is not None and err.code() in _CONFIG_REJECTED:
            log.warning(
                "broker at %s rejected config %s for topic %s (%s); creating it with the broker's defaults: "
                "frames over the broker's message.max.bytes will be refused",
                bootstrap,
                config,
                name,
                err.str(),
            )
            err = _create(admin, NewTopic(name, cfg.partitions, cfg.replication_factor), timeout)
        if err is not None:
            raise TopicError(
                f"cannot create topic {name!r} ({cfg.partitions} partitions, replication "
                f"{cfg.replication_factor}) on {bootstrap}: {err.name()}: {err.str()}"
            )
        created.append(name)
        log.info("created topic %s (%d partitions) on %s", name, cfg.partitions, bootstrap)
    missing = {cfg.topic, cfg.dlq_topic} - set(_topic_partitions(admin, timeout))
    if missing:
        raise TopicError(f"topics {sorted(missing)} still missing on {bootstrap} after creation")
    return created


def producer_config(
    bootstrap: str, cfg: KafkaConfig, *, dlq: bool = False, client_id: str = "inspection-producer"
) -> dict[str, Any]:
    """Idempotent producer (acks=all) allowing records of the frames topic (or the DLQ topic with `dlq`)."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "message.max.bytes": topic_max_message_bytes(cfg, dlq),
        # JPEG does not compress; a short linger batches a shot's five cameras.
        "compression.type": "none",
        "linger.ms": 5,
        "logger": RDKAFKA_LOGGER,
    }


def consumer_config(
    bootstrap: str,
    cfg: KafkaConfig,
    *,
    group_id: str | None = None,
    client_id: str = "inspection-consumer",
) -> dict[str, Any]:
    """Consumer-group member with manual commits and cooperative-sticky rebalancing.

    Offsets are never committed or stored automatically (`enable.auto.commit` and
    `enable.auto.offset.store` are False): commit explicit offsets
    (`consumer.commit(offsets=[TopicPartition(t, p, last_done + 1)], asynchronous=False)`)
    or `store_offsets` what is done, then `commit()`. A new group starts at the earliest offset.
    Fetch sizes admit the largest frame or dead-letter record.
    """
    largest = topic_max_message_bytes(cfg, dlq=True)
    fetch_max = 4 * largest
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "group.id": group_id or cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": max(100, cfg.session_timeout_ms // 3),
        "max.poll.interval.ms": cfg.max_poll_interval_ms,
        "message.max.bytes": largest,
        "max.partition.fetch.bytes": largest,
        "fetch.max.bytes": fetch_max,
        "receive.message.max.bytes": fetch_max + 1024 * 1024,
        "logger": RDKAFKA_LOGGER,
    }
