"""A car's state on the line, defined once: the enum, and the one SQL expression that decides it.

    met        complete, its last frame handled by the deadline
    missed     complete, late
    overdue    not complete, and marked overdue by a consumer or past its deadline by more than
               `overdue.grace_s` (the same moment the overdue watcher marks it)
    in_flight  not complete, still within its deadline (+ grace)

Everything that shows a car's state reads it from `car_state_case` (SQLAlchemy) or its text form
`CAR_STATE_SQL` (the analytics read layer, the dashboard, Grafana): the metrics gauge, the
dashboard, the demo's table and the API cannot disagree. `:overdue_before` is `now - grace_s`
(`overdue_before`): passing the cutoff rather than `now` keeps date arithmetic out of SQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, column, literal_column, or_, table

from .config import OverdueConfig
from .store.models import UTCDateTime

DEFAULT_GRACE_S: float = OverdueConfig().grace_s


class CarState(StrEnum):
    MET = "met"
    MISSED = "missed"
    OVERDUE = "overdue"
    IN_FLIGHT = "in_flight"


def overdue_before(now: datetime, grace_s: float = DEFAULT_GRACE_S) -> datetime:
    """The `:overdue_before` cutoff: an incomplete car whose deadline is earlier is overdue."""
    return now - timedelta(seconds=grace_s)


def car_state_case(cars: Any, cutoff: datetime | None = None) -> Any:
    """The state of each row of `cars` (a Table, alias or ORM class with the cars columns) as a CASE.

    `cutoff` binds `:overdue_before`; None leaves it a parameter to pass at execution.
    """
    c = cars.c if isinstance(cars, Table) or hasattr(cars, "c") else cars
    before = bindparam("overdue_before", cutoff, type_=UTCDateTime())
    complete = c.completed_at.is_not(None)
    return case(
        (and_(complete, c.deadline_met), _label(CarState.MET)),
        (complete, _label(CarState.MISSED)),
        (or_(c.overdue_at.is_not(None), c.deadline_at < before), _label(CarState.OVERDUE)),
        else_=_label(CarState.IN_FLIGHT),
    )


def _label(state: CarState) -> Any:
    return literal_column(f"'{state.value}'")


def _sql_text() -> str:
    cars = table("c", column("completed_at"), column("deadline_met"), column("overdue_at"), column("deadline_at"))
    return str(car_state_case(cars).compile())


# The text form for hand-written SQL over `cars AS c` (binds :overdue_before); portable SQL.
CAR_STATE_SQL: str = _sql_text()
