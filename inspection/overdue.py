"""Overdue cars: a car whose deadline passed with frames missing is marked once, warned about once.

Every edge consumer runs an `OverdueWatcher` (any member of the group may find a car overdue: the
one holding its last partition may be idle). Each check asks the store to mark the cars past
their deadline by more than `overdue.grace_s` that are still incomplete (`ResultStore.mark_overdue`:
an UPDATE of rows whose `overdue_at` is NULL, so across consumers each car is marked by exactly
one). For each car it marked, this consumer logs one WARNING naming the missing camera/shots and
counts it (`inspection_cars_marked_overdue_total`); every check refreshes the `inspection_cars`
gauges (in flight, overdue), read through the analytics layer like every other read. A car still completes normally if its frames arrive later
(`deadline_met` false, `overdue_at` kept).

A failed check (database unreachable) is logged and tried again at the next interval: the persist
stage, not this watcher, decides when the consumer stops.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from .analytics import AnalyticsReader
from .config import LineConfig, OverdueConfig
from .metrics import PipelineMetrics
from .store import OverdueCar, ResultStore, StoreError

log = logging.getLogger(__name__)


class OverdueWatcher:
    def __init__(self, store: ResultStore, line: LineConfig, config: OverdueConfig, metrics: PipelineMetrics) -> None:
        self.store = store
        self.line = line
        self.config = config
        self.metrics = metrics
        self.reader = AnalyticsReader(store.engine)

    def check(self, now: datetime | None = None) -> list[OverdueCar]:
        """Mark and report the cars that became overdue; refresh the gauges. Returns those this call marked."""
        now = now or datetime.now(timezone.utc)
        marked = self.store.mark_overdue(now, self.config.grace_s, self.line.cameras, self.line.shots_per_camera)
        for car in marked:
            late_s = (now - car.deadline_at).total_seconds()
            log.warning(
                "car %s overdue: %.1f s past its deadline %s with %d of %d frames stored; missing %s "
                "(it still completes, late, if they arrive)",
                car.car_id,
                late_s,
                car.deadline_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                car.frames_done,
                car.frames_expected,
                car.missing_text,
            )
            self.metrics.cars_marked_overdue.inc()
        states = self.reader.car_states(now=now, grace_s=self.config.grace_s)
        self.metrics.cars.labels("in_flight").set(states.in_flight)
        self.metrics.cars.labels("overdue").set(states.overdue)
        return marked

    def run(self, stop: threading.Event) -> None:
        """Check every `overdue.check_interval_s` until `stop` is set."""
        while True:
            try:
                self.check()
            except StoreError as exc:
                log.warning("overdue check failed, trying again in %g s: %s", self.config.check_interval_s, exc)
            if stop.wait(self.config.check_interval_s):
                return
