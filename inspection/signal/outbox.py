"""The outbox relay: publishes decided cars after their transaction committed, never before.

Each round claims the oldest `signal.batch` rows of `signal_outbox` (PostgreSQL: `FOR UPDATE SKIP
LOCKED`, so relays of several hosts never publish a row twice; SQLite: one writer at a time),
publishes each to every sink, deletes what all sinks took and commits. A sink that fails (broker
down) leaves its row and every newer one in place, counts an attempt on it, and the round is retried
with a doubling wait (tenacity) up to `signal.retry_max_s`: nothing is lost, order is kept, and a
car decided during an outage is published after it. The gauges say how far behind the relay is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine, delete, func, select, update
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_never, wait_exponential

from ..store.db import SQLITE_IMMEDIATE
from ..store.models import SignalOutbox
from .config import SignalConfig
from .mqtt import SinkUnavailable

log = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    def publish(self, car_id: str, payload: str) -> None: ...


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.backlog = Gauge("inspection_signal_outbox_backlog", "decided cars not yet published to the line", registry=r)
        self.oldest_age = Gauge(
            "inspection_signal_outbox_oldest_age_seconds", "age of the oldest unpublished signal (0: none)", registry=r
        )
        self.published = Counter("inspection_signal_published", "decided cars published to every sink", registry=r)
        self.failures = Counter("inspection_signal_failures", "publish rounds a sink failed", ["sink"], registry=r)


class OutboxRelay:
    def __init__(self, engine: Engine, sinks: Sequence[Sink], config: SignalConfig, metrics: OutboxMetrics) -> None:
        self.engine = engine
        self.sinks = tuple(sinks)
        self.config = config
        self.metrics = metrics
        self._writer = engine.execution_options(**{SQLITE_IMMEDIATE: True})

    def refresh_gauges(self, now: datetime | None = None) -> tuple[int, float]:
        """Backlog and age of the oldest row, as the gauges now show them."""
        now = now or datetime.now(timezone.utc)
        with self.engine.connect() as conn:
            count, oldest = conn.execute(select(func.count(SignalOutbox.id), func.min(SignalOutbox.created_at))).one()
        oldest_at = (
            SignalOutbox.created_at.type.process_result_value(oldest, self.engine.dialect) if isinstance(oldest, str) else oldest
        )
        age = 0.0 if oldest_at is None else max(0.0, (now - oldest_at).total_seconds())
        self.metrics.backlog.set(count)
        self.metrics.oldest_age.set(age)
        return int(count), age

    def publish_round(self) -> int:
        """Claim, publish and delete the oldest batch; returns how many were published.

        Raises SinkUnavailable after publishing (and deleting) the rows before the one that failed.
        """
        published: list[int] = []
        failure: SinkUnavailable | None = None
        with self._writer.begin() as conn:
            rows = conn.execute(
                select(SignalOutbox.id, SignalOutbox.car_id, SignalOutbox.payload)
                .order_by(SignalOutbox.id)
                .limit(self.config.batch)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                try:
                    for sink in self.sinks:
                        sink.publish(row.car_id, row.payload)
                except SinkUnavailable as exc:
                    failure = exc
                    self.metrics.failures.labels(getattr(sink, "name", "sink")).inc()
                    conn.execute(
                        update(SignalOutbox)
                        .where(SignalOutbox.id == row.id)
                        .values(attempts=SignalOutbox.attempts + 1, last_error=str(exc)[:2000])
                    )
                    break
                published.append(row.id)
            if published:
                conn.execute(delete(SignalOutbox).where(SignalOutbox.id.in_(published)))
        self.metrics.published.inc(len(published))
        if failure is not None:
            raise failure
        return len(published)

    def drain(self) -> int:
        """Publish until the outbox is empty (raises SinkUnavailable on the first failure)."""
        total = 0
        while n := self.publish_round():
            total += n
        return total

    def run(self, stop: threading.Event) -> None:
        """Publish until `stop`: rounds back to back while rows wait, a poll when idle, a doubling wait after failures."""
        retrying = Retrying(
            retry=retry_if_exception_type(SinkUnavailable),
            wait=wait_exponential(multiplier=self.config.poll_s, max=self.config.retry_max_s),
            stop=stop_never,
            sleep=stop.wait,  # a stop ends the wait at once
            before_sleep=lambda state: log.warning(
                "line signal not published, retrying in %.1f s: %s",
                state.next_action.sleep if state.next_action else 0.0,
                state.outcome.exception() if state.outcome else "",
            ),
        )
        while not stop.is_set():
            try:
                for attempt in retrying:
                    with attempt:
                        if stop.is_set():
                            return
                        published = self.drain()
            except RetryError:  # pragma: no cover - stop_never
                continue
            self.refresh_gauges()
            if not published and stop.wait(self.config.poll_s):
                return
