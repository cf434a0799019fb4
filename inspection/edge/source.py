"""Kafka source stage: poll records into their first step, commit what is durable, drain on revocation.

Runs on the consumer's own thread (librdkafka serves the rebalance and statistics callbacks from
`poll`). Each record is read once here (`receive`: `validation.read_frame` checks headers, line
geometry, clock, content type) and becomes a `Received` frame, or a `Parked` record when it is
refused (steps.py). Offsets are committed only up to the highest contiguous offset whose results are
durable (`OffsetTracker`), on partition revocation after the revoked partitions drained, and at shutdown.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from ..config import Settings
from ..health import Readiness
from ..kafka.admin import consumer_config
from ..kafka.offsets import OffsetTracker
from ..messages.contract import KafkaRecord, SourceRecord, payload_limit
from ..metrics import PipelineMetrics
from ..validation import FrameValidator, read_frame
from .ordering import KeyOrder
from .stats import PipelineStats
from .steps import Parked, Received
from .timing import FrameClock

log = logging.getLogger(__name__)

TP = tuple[str, int]


def receive(msg: KafkaRecord, validator: FrameValidator, max_payload_bytes: int, now_ns: int | None = None) -> Received | Parked:
    """The first step of one error-free record: its frame, or the record parked with why it is refused
    (with its frame when the headers name one: it gets an error row on that frame's slot)."""
    received = time.time_ns() if now_ns is None else now_ns
    clock = FrameClock()
    clock.mark("polled")
    source = SourceRecord.from_kafka(msg)
    frame, error = read_frame(source, validator, received, max_payload_bytes=max_payload_bytes)
    clock.mark("read")
    if error is not None:
        return Parked(source, received, clock, frame, error)
    assert frame is not None  # read_frame names why a record has no frame
    return Received(source, received, clock, frame)


class KafkaSource:
    """One member of the consumer group. `open()` makes the consumer and subscribes; `poll()` answers
    the next record's first step (None when nothing came); `commit()` commits what `offsets` says is durable."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        offsets: OffsetTracker,
        stats: PipelineStats,
        metrics: PipelineMetrics,
        readiness: Readiness,
        *,
        consumer_overrides: dict[str, Any] | None = None,
        order: KeyOrder | None = None,
    ) -> None:
        self.settings = settings
        self.order = order
        self.bootstrap = bootstrap
        self.offsets = offsets
        self.stats = stats
        self.metrics = metrics
        self.readiness = readiness
        self.consumer_overrides = consumer_overrides or {}
        self.validator = FrameValidator.from_settings(settings)
        self.max_payload = payload_limit(settings.kafka.message_max_bytes)
        self.assigned: set[TP] = set()
        self._consumer: Consumer | None = None
        self._last_commit = 0.0

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("KafkaSource.open() first")
        return self._consumer

    @property
    def is_open(self) -> bool:
        return self._consumer is not None

    def open(self) -> None:
        conf = consumer_config(self.bootstrap, self.settings.kafka)
        # librdkafka statistics carry each partition's lag (high watermark - committed offset).
        conf["statistics.interval.ms"] = max(100, int(self.settings.health.lag_interval_s * 1000))
        conf["stats_cb"] = self._on_stats
        conf.update(self.consumer_overrides)
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            [self.settings.kafka.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def poll(self) -> Received | Parked | None:
        started = time.perf_counter_ns()
        msg = self.consumer.poll(self.settings.kafka.poll_timeout_s)
        step = None if msg is None else self.accept(msg)
        if step is not None:
            step.clock.mark("poll_start", started)
        return step

    def accept(self, msg: Message) -> Received | Parked | None:
        """A polled message as its first step (its offset now pending), or None for a broker event."""
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return None
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return None
        step = receive(msg, self.validator, self.max_payload)
        self.offsets.polled(step.tp, step.offset)
        if self.order is not None:
            self.order.admit(step)
        self.metrics.frames_received.inc()
        return step

    def commit_due(self, interval_s: float) -> None:
        if time.monotonic() - self._last_commit >= interval_s:
            self.commit()

    def commit(self, partitions: list[TP] | None = None) -> None:
        """Commit every partition's durable prefix (a failed commit is tried again next time)."""
        self._last_commit = time.monotonic()
        offsets = self.offsets.to_commit(partitions)
        if not offsets:
            return
        started = time.perf_counter()
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            log.warning("offset commit failed (will retry): %s", exc)
            return
        self.offsets.committed(offsets)
        self.stats.commits += 1
        self.stats.commit_s += time.perf_counter() - started

    # ------------------------------------------------------------------ librdkafka callbacks (served by poll)

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.assigned.update(tps)
        self.readiness.assigned(tps)
        log.info("assigned %s", tps)

    def _on_stats(self, raw: str) -> None:
        """Each assigned partition's lag to the gauges and /readyz."""
        try:
            topics = json.loads(raw).get("topics", {})
        except ValueError:
            return
        lag: dict[TP, int] = {}
        for topic, info in topics.items():
            for key, part in info.get("partitions", {}).items():
                tp = (topic, int(key))
                value = part.get("consumer_lag", -1)
                if tp in self.assigned and isinstance(value, int) and value >= 0:  # -1: not known yet
                    lag[tp] = value
        self.metrics.set_lag(lag)
        self.readiness.lag(lag)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        """Drain in-flight work of the revoked partitions and commit before giving them up."""
        tps = [(p.topic, p.partition) for p in partitions]
        if not self.offsets.wait_durable(tps, timeout_s=self.settings.kafka.session_timeout_ms / 1000):
            log.warning("revoked %s before all in-flight frames were durable; they will be redelivered", tps)
        self.commit(tps)
        self.offsets.forget(tps)
        self.assigned.difference_update(tps)
        self.readiness.revoked(tps)
        log.info("revoked %s", tps)

    def _on_lost(self, consumer: Consumer, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        log.warning("lost %s: nothing committed for them; another member redelivers", tps)
        self.offsets.forget(tps)
        self.assigned.difference_update(tps)
        self.readiness.revoked(tps)
