"""A car's inspection verdict, written in the store transaction that decides it, with its outbox row.

`VerdictWriter.decide_complete` runs inside the transaction that completes the car (the store calls
it after recording completion): it reads the car's frames and detections in that transaction,
applies the rule set to all boxes at once, and inserts the verdict (`car_verdicts`), the boxes the
rules kept or an ignore region removed (`frame_defects`) and the line signal (`signal_outbox`).
`decide_incomplete` does the same for a car the overdue watcher marks (frames missing at its
deadline). A car is decided once: a later completion of an overdue car keeps `incomplete`, and a
later rule change never rewrites a stored verdict (each row says which rules and model decided it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from ..config import Settings

from ..store.models import CarVerdict, Frame, FrameDefect, SignalOutbox
from .evaluate import CarDecision, RuleSet

log = logging.getLogger(__name__)

MAX_REASON = 2000


@dataclass(frozen=True)
class CarBoxes:
    """The boxes of one car the rules can count (their classes, above the lowest threshold), as parallel arrays."""

    frame_row: np.ndarray  # (N,) frames.id
    camera: np.ndarray  # (N,)
    shot: np.ndarray  # (N,)
    class_id: np.ndarray  # (N,)
    score: np.ndarray  # (N,)
    xyxy: np.ndarray  # (N, 4)

    @classmethod
    def read(cls, conn: Connection, car_id: str, rules: RuleSet) -> CarBoxes:
        """One query through the DB-API cursor (no per-row ORM objects): boxes of the rules' classes at or
        above the lowest threshold; most of a car's boxes are of other classes and never leave the database."""
        table = np.zeros((0, 9))
        if rules.defect_class_ids:
            mark = "?" if conn.dialect.name == "sqlite" else "%s"
            sql = (
                "SELECT d.frame_id, f.camera, f.shot, d.class_id, d.score, d.x1, d.y1, d.x2, d.y2 "
                f"FROM detections AS d JOIN frames AS f ON f.id = d.frame_id WHERE f.car_id = {mark} "
                f"AND d.class_id IN ({', '.join(str(int(c)) for c in rules.defect_class_ids)}) AND d.score >= {mark}"
            )
            rows = conn.exec_driver_sql(sql, (car_id, float(rules.min_any_score))).fetchall()
            if rows:
                table = np.asarray([tuple(row) for row in rows], np.float64)  # plain tuples: numpy probes Row objects slowly
        ints = table[:, :4].astype(np.int64)
        return cls(ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3], table[:, 4], table[:, 5:9])


def payload(
    car_id: str, decision: CarDecision, boxes: CarBoxes, rule: np.ndarray, rules: RuleSet, **extra: Any
) -> dict[str, Any]:
    """The line signal: verdict, reason, defects per camera (parallel lists: shot, class, score, xyxy, rule),
    rules version, model, times."""
    kept = rule >= 0
    per_camera: dict[str, dict[str, list[Any]]] = {}
    for camera in np.unique(boxes.camera[kept]).tolist():
        here = kept & (boxes.camera == camera)
        per_camera[str(camera)] = {
            "shot": boxes.shot[here].tolist(),
            "class": [rules.class_names[c] for c in boxes.class_id[here].tolist()],
            "score": np.round(boxes.score[here], 4).tolist(),
            "xyxy": np.round(boxes.xyxy[here], 1).tolist(),
            "rule": [rules.rule_names[r] for r in rule[here].tolist()],
        }
    return {"car_id": car_id, "verdict": decision.verdict, "reason": decision.reason, "defects": per_camera, **extra}


class VerdictWriter:
    """Decides cars with one rule set and model, inside the caller's transaction."""

    def __init__(self, rules: RuleSet, model: str, outbox_max: int = 100_000) -> None:
        self.rules = rules
        self.model = model
        self.outbox_max = outbox_max

    def decide_complete(
        self, conn: Connection, car_id: str, first_captured_at: datetime, completed_at: datetime, now: datetime | None = None
    ) -> CarDecision | None:
        """The verdict of a car whose frames are all handled: error when any frame failed, else the rules'."""
        now = now or datetime.now(timezone.utc)
        boxes = CarBoxes.read(conn, car_id, self.rules)
        outcome = self.rules.apply(boxes.camera, boxes.class_id, boxes.score, boxes.xyxy)
        decision = self.rules.decide(outcome)
        failed = conn.execute(
            select(Frame.error_kind, func.count())
            .where(Frame.car_id == car_id, Frame.error.is_not(None))
            .group_by(Frame.error_kind)
        ).all()
        if failed:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(failed, key=lambda r: str(r[0])))
            decision = CarDecision("error", f"frames failed: {kinds}; {decision.reason}", decision.defects)
        latency = (completed_at - first_captured_at).total_seconds()
        return self._write(conn, car_id, decision, boxes, outcome.defect_rule, outcome.ignored_by, now, latency)

    def decide_incomplete(
        self, conn: Connection, car_id: str, first_captured_at: datetime, missing: str, now: datetime
    ) -> CarDecision | None:
        """A car marked overdue: frames were missing at its deadline, whatever the rest shows."""
        boxes = CarBoxes.read(conn, car_id, self.rules)
        outcome = self.rules.apply(boxes.camera, boxes.class_id, boxes.score, boxes.xyxy)
        found = self.rules.decide(outcome)
        decision = CarDecision("incomplete", f"frames missing at the deadline: {missing}; {found.reason}", found.defects)
        latency = (now - first_captured_at).total_seconds()
        return self._write(conn, car_id, decision, boxes, outcome.defect_rule, outcome.ignored_by, now, latency)

    def _write(
        self,
        conn: Connection,
        car_id: str,
        decision: CarDecision,
        boxes: CarBoxes,
        rule: np.ndarray,
        ignored_by: np.ndarray,
        now: datetime,
        latency_s: float,
    ) -> CarDecision | None:
        dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        verdict = {
            "car_id": car_id,
            "verdict": decision.verdict,
            "rules_hash": self.rules.digest,
            "model": self.model,
            "decided_at": now,
            "defects": decision.defects,
            "reason": decision.reason[:MAX_REASON],
            "car_latency_s": latency_s,
        }
        inserted = conn.execute(
            dialect_insert(CarVerdict)
            .values(verdict)
            .on_conflict_do_nothing(index_elements=[CarVerdict.car_id])
            .returning(CarVerdict.car_id)
        ).first()
        if inserted is None:
            return None  # decided before (an overdue car completing late keeps `incomplete`)
        kept, removed = rule >= 0, ignored_by >= 0
        rows = np.flatnonzero(kept | removed)
        if len(rows):
            x1, y1, x2, y2 = boxes.xyxy[rows].T.tolist()
            conn.execute(
                insert(FrameDefect),
                [
                    {
                        "car_id": car_id,
                        "frame_id": frame,
                        "class_id": class_id,
                        "class_name": self.rules.class_names[class_id],
                        "score": score,
                        "x1": a,
                        "y1": b,
                        "x2": c,
                        "y2": d,
                        "rule": self.rules.rule_names[r] if r >= 0 else self.rules.region_names[g],
                        "kept": bool(r >= 0),
                    }
                    for frame, class_id, score, a, b, c, d, r, g in zip(
                        boxes.frame_row[rows].tolist(),
                        boxes.class_id[rows].tolist(),
                        boxes.score[rows].tolist(),
                        x1,
                        y1,
                        x2,
                        y2,
                        rule[rows].tolist(),
                        ignored_by[rows].tolist(),
                    )
                ],
            )
        message = payload(
            car_id,
            decision,
            boxes,
            rule,
            self.rules,
            rules_version=self.rules.digest,
            model=self.model,
            decided_at=now.isoformat(),
            car_latency_s=round(latency_s, 4),
        )
        conn.execute(
            insert(SignalOutbox).values(car_id=car_id, payload=json.dumps(message), created_at=now, attempts=0, last_error=None)
        )
        self._bound_outbox(conn)
        return decision

    def _bound_outbox(self, conn: Connection) -> None:
        """Keep at most `outbox_max` signals: the oldest go first (their verdicts stay in the database)."""
        cutoff = conn.execute(select(SignalOutbox.id).order_by(SignalOutbox.id.desc()).offset(self.outbox_max).limit(1)).scalar()
        if cutoff is not None:
            dropped = conn.execute(delete(SignalOutbox).where(SignalOutbox.id <= cutoff)).rowcount
            log.warning(
                "signal outbox full (%d): dropped the %d oldest signals; their verdicts stay stored", self.outbox_max, dropped
            )


def verdict_writer(settings: Settings) -> VerdictWriter | None:
    """The writer for the configured rules and model; None when no defect class is configured (no verdicts)."""
    from ..detect.registry import load_spec

    rules = settings.inspection.rules
    if not rules.defects:
        return None
    spec = load_spec(settings.model.name)
    return VerdictWriter(RuleSet.compile(rules, spec.class_names), settings.model.name, settings.signal.outbox_max)


def stored_verdicts(engine: Engine, car_ids: list[str]) -> dict[str, str]:
    """car -> its stored inspection verdict, for the cars that have one."""
    with engine.connect() as conn:
        return dict(conn.execute(select(CarVerdict.car_id, CarVerdict.verdict).where(CarVerdict.car_id.in_(car_ids))).all())
