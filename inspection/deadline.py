"""Per-car deadline accounting: was a car's last frame handled before its deadline, and by how much.

Completion itself is decided inside the store transaction that writes a car's last frame
(`inspection.store.writer`), so it is right with several consumers; this module
interprets the result: a `CarDeadline` per completed car, a log line for each (a warning
for a late car), and running totals for a consumer's metrics and its end-of-run summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CarDeadline:
    """A completed car against its deadline. lateness_s < 0: early by -lateness_s seconds."""

    car_id: str
    completed_at: datetime
    deadline_at: datetime
    met: bool
    lateness_s: float
    first_captured_at: datetime | None = None  # the car's first frame, when known: gives its latency

    @property
    def car_latency_s(self) -> float | None:
        """First capture -> completion, seconds (None when the first capture is not known)."""
        if self.first_captured_at is None:
            return None
        return (self.completed_at - self.first_captured_at).total_seconds()

    def describe(self) -> str:
        if self.met:
            return f"car {self.car_id} met its deadline with {-self.lateness_s:.2f} s to spare"
        return f"car {self.car_id} missed its deadline by {self.lateness_s:.2f} s"


def evaluate_car(
    car_id: str, completed_at: datetime, deadline_at: datetime, first_captured_at: datetime | None = None
) -> CarDeadline:
    """A car completed at `completed_at` meets its deadline when completed_at <= deadline_at."""
    lateness_s = (completed_at - deadline_at).total_seconds()
    return CarDeadline(car_id, completed_at, deadline_at, lateness_s <= 0.0, lateness_s, first_captured_at)


def car_deadline_from_row(row: Any) -> CarDeadline | None:
    """CarDeadline of a `cars` row (ORM object or Row with car_id, completed_at, deadline_at,
    deadline_met, lateness_s); None while the car is not complete."""
    if row.completed_at is None:
        return None
    evaluated = evaluate_car(row.car_id, row.completed_at, row.deadline_at)
    # The stored verdict is authoritative (it was decided once, in the store transaction).
    met = evaluated.met if row.deadline_met is None else bool(row.deadline_met)
    lateness = evaluated.lateness_s if row.lateness_s is None else float(row.lateness_s)
    return CarDeadline(row.car_id, row.completed_at, row.deadline_at, met, lateness, getattr(row, "first_captured_at", None))


def log_car_deadline(deadline: CarDeadline, logger: logging.Logger = log) -> None:
    """Warn about a late car with how late it was; note an on-time car at INFO."""
    if deadline.met:
        logger.info(deadline.describe())
    else:
        logger.warning(deadline.describe())
