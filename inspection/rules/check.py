"""`inspection rules check FILE`: what a new rule set would have decided on the stored cars (no writes).

Each complete (or overdue) car's stored detections go through the new rules; the result is set beside
the verdict stored when the car was decided (with the rules hash that decided it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from ..store.models import Car, CarVerdict, Frame
from .evaluate import CarDecision, RuleSet
from .verdict import CarBoxes


@dataclass(frozen=True)
class RuleCheckRow:
    car_id: str
    stored: str | None  # the verdict stored for the car (None: not decided)
    stored_rules: str | None  # hash of the rules that decided it
    new: CarDecision  # what the new rules decide

    @property
    def changed(self) -> bool:
        return self.stored != self.new.verdict


def check_rules(engine: Engine, rules: RuleSet, limit: int = 1000) -> list[RuleCheckRow]:
    """The newest `limit` decided or complete cars, newest first, under `rules` (read-only)."""
    out = []
    with engine.connect() as conn:
        cars = conn.execute(
            select(Car.car_id, Car.completed_at, Car.overdue_at, CarVerdict.verdict, CarVerdict.rules_hash)
            .outerjoin(CarVerdict, CarVerdict.car_id == Car.car_id)
            .where((Car.completed_at.is_not(None)) | (Car.overdue_at.is_not(None)))
            .order_by(Car.first_captured_at.desc(), Car.car_id.desc())
            .limit(limit)
        ).all()
        errors: Mapping[str, int] = dict(
            conn.execute(
                select(Frame.car_id, func.count())
                .where(Frame.car_id.in_([c.car_id for c in cars]), Frame.error.is_not(None))
                .group_by(Frame.car_id)
            ).all()
        )
        for car in cars:
            boxes = CarBoxes.read(conn, car.car_id)
            decision = rules.decide(rules.apply(boxes.camera, boxes.class_id, boxes.score, boxes.xyxy))
            if car.overdue_at is not None:
                decision = CarDecision("incomplete", f"frames missing at the deadline; {decision.reason}", decision.defects)
            elif errors.get(car.car_id):
                decision = CarDecision("error", f"{errors[car.car_id]} frames failed; {decision.reason}", decision.defects)
            out.append(RuleCheckRow(car.car_id, car.verdict, car.rules_hash, decision))
    return out
