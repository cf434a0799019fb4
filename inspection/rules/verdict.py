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
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from ..config import Settings

from ..store.models import CarVerdict, Detection, Frame, FrameDefect, SignalOutbox
from .evaluate import CarDecision, RuleSet

log = logging.getLogger(__name__)

MAX_REASON = 2000


@dataclass(frozen=True)
class CarBoxes:
    """All boxes of one car as parallel arrays, with the frame row each belongs to."""

    frame_row: np.ndarray  # (N,) frames.id
    camera: np.ndarray  # (N,)
    shot: np.ndarray  # (N,)
    class_id: np.ndarray  # (N,)
    class_name: list[str]  # (N,) as stored with the detection
    score: np.ndarray  # (N,)
    xyxy: np.ndarray  # (N, 4)

    @classmethod
    def read(cls, conn: Connection, car_id: str) -> CarBoxes:
        rows = conn.execute(
            select(
                Detection.frame_id,
                Frame.camera,
                Frame.shot,
                Detection.class_id,
                Detection.score,
                Detection.x1,
                Detection.y1,
                Detection.x2,
                Detection.y2,
                Detection.class_name,
            )
            .join(Frame, Frame.id == Detection.frame_id)
            .where(Frame.car_id == car_id)
        ).all()
        if not rows:
            table = np.zeros((0, 9))
            names: list[str] = []
        else:
            names = [r[9] for r in rows]
            table = np.asarray([r[:9] for r in rows], np.float64)
        ints = table[:, :4].astype(np.int64)
        return cls(ints[:, 0], ints[:, 1], ints[:, 2], ints[:, 3], names, table[:, 4], table[:, 5:9])


def payload(
    car_id: str, decision: CarDecision, boxes: CarBoxes, kept: np.ndarray, rules: RuleSet, outcome_rule: np.ndarray, **extra: Any
) -> dict[str, Any]:
    """The line signal: verdict, defects per camera (class, score, box, shot, rule), rules version, model, times."""
    per_camera: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in np.flatnonzero(kept):
        per_camera[str(int(boxes.camera[i]))].append(
            {
                "shot": int(boxes.shot[i]),
                "class": boxes.class_name[i],
                "score": round(float(boxes.score[i]), 4),
                "xyxy": [round(float(v), 1) for v in boxes.xyxy[i]],
                "rule": rules.rule_names[outcome_rule[i]],
            }
        )
    return {"car_id": car_id, "verdict": decision.verdict, "reason": decision.reason, "defects": dict(per_camera), **extra}


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
        boxes = CarBoxes.read(conn, car_id)
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
        boxes = CarBoxes.read(conn, car_id)
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
                        "class_name": boxes.class_name[i],
                        "score": score,
                        "x1": a,
                        "y1": b,
                        "x2": c,
                        "y2": d,
                        "rule": self.rules.rule_names[r] if r >= 0 else self.rules.region_names[g],
                        "kept": bool(r >= 0),
                    }
                    for i, frame, class_id, score, a, b, c, d, r, g in zip(
                        rows.tolist(),
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
            kept,
            self.rules,
            rule,
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
