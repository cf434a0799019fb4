"""Per-car deadline accounting: was a car's last frame handled before its deadline, and by how much.

Completion itself is decided inside the store transaction that writes a car's last frame
(`inspection.store.writer`), so it is right with several consumers; this module
interprets the result: a `CarDeadline` per completed car, which the persist stage logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
