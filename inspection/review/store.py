"""Reads and the one write of the review loop over the store's tables.

The reads run the read layer's named queries (inspection/analytics/queries/review.py). `submit_review`
is the only function that writes; the dashboard calls it on its separate writer engine, never on the
read-only one. It inserts into `reviews`, `review_decisions`, `review_boxes` in one transaction and never
touches `frames` or `detections`; its reads (the frame, its boxes, the car's verdict) are SQLAlchemy Core
statements inside that transaction.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from ..analytics import queries
from ..config import ReviewConfig
from ..store.models import CarVerdict, Detection, Frame, Run
from ..store.review_models import ReviewBoxRow, ReviewDecisionRow, ReviewRow
from .models import DrawnBox, LastReview, QueueItem, ReviewBox, ReviewFrame, ReviewIn, ReviewOut, ReviewQueue

NG_CARS_MAX = 1000  # the newest NG cars the queue looks at


class ReviewNotFoundError(LookupError):
    """No such frame (the message names it)."""


class ReviewRefusedError(ValueError):
    """A review that does not fit its frame (the message says what is wrong)."""


def car_verdicts(conn: Connection, car_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """car id -> (verdict, rules hash) of those cars that have a verdict (ok / ng / incomplete / error)."""
    if not car_ids:
        return {}
    return {r.car_id: (r.verdict, r.rules_hash) for r in queries.run(conn, queries.CAR_VERDICTS, car_ids=list(car_ids))}


def _car_verdict_in_write(conn: Connection, car_id: str) -> tuple[str, str | None] | None:
    """(verdict, rules hash) of one car, read inside `submit_review`'s transaction (Core, as writes are)."""
    row = conn.execute(select(CarVerdict.verdict, CarVerdict.rules_hash).where(CarVerdict.car_id == car_id)).first()
    return (row.verdict, row.rules_hash) if row is not None else None


@lru_cache(maxsize=32)
def _model_classes(model: str) -> tuple[str, ...]:
    from ..detect.registry import load_spec

    try:
        names = load_spec(model).class_names
    except (LookupError, ValueError, OSError):
        return ()
    return tuple(names[k] for k in sorted(names))


def _frame_row(conn: Connection, frame_id: int) -> Any:
    """The frame under review, read inside `submit_review`'s transaction (Core); `queries.REVIEW_FRAME` elsewhere."""
    row = conn.execute(
        select(Frame.id, Frame.car_id, Frame.camera, Frame.shot, Frame.width, Frame.height, Frame.error, Run.model)
        .join(Run, Run.id == Frame.run_id)
        .where(Frame.id == frame_id)
    ).first()
    if row is None:
        raise ReviewNotFoundError(f"no frame with id {frame_id} in the results database")
    return row


def _detections(conn: Connection, frame_id: int) -> list[Any]:
    """Its boxes, inside `submit_review`'s transaction (Core); `queries.REVIEW_FRAME_BOXES` elsewhere."""
    return list(
        conn.execute(
            select(
                Detection.id, Detection.class_id, Detection.class_name, Detection.score,
                Detection.x1, Detection.y1, Detection.x2, Detection.y2,
            )
            .where(Detection.frame_id == frame_id)
            .order_by(Detection.score.desc(), Detection.id)
        ).all()
    )  # fmt: skip


def review_frame(conn: Connection, frame_id: int, score_threshold: float, default_size: tuple[int, int]) -> ReviewFrame:
    frame = queries.execute(conn, queries.REVIEW_FRAME, frame_id=frame_id).first()
    if frame is None:
        raise ReviewNotFoundError(f"no frame with id {frame_id} in the results database")
    dets = queries.run(conn, queries.REVIEW_FRAME_BOXES, frame_id=frame_id)
    decided: dict[int, tuple[str, str | None]] = {}
    missed: list[DrawnBox] = []
    last: LastReview | None = None
    r = queries.execute(conn, queries.LAST_REVIEW, frame_id=frame_id).first()
    if r is not None:
        last = LastReview(review_id=r.id, reviewer=r.reviewer, reviewed_at=r.reviewed_at, note=r.note)
        for d in queries.run(conn, queries.REVIEW_DECISIONS, review_id=r.id):
            decided[d.detection_id] = (d.decision, d.reason_code)
        missed = [
            DrawnBox(class_name=b.class_name, xyxy=(b.x1, b.y1, b.x2, b.y2), reason_code=b.reason_code)
            for b in queries.run(conn, queries.REVIEW_DRAWN_BOXES, review_id=r.id)
        ]
    verdict = car_verdicts(conn, [frame.car_id]).get(frame.car_id)
    classes = _model_classes(frame.model) or tuple(sorted({d.class_name for d in dets}))
    return ReviewFrame(
        frame_id=frame.id,
        car_id=frame.car_id,
        camera=frame.camera,
        shot=frame.shot,
        width=frame.width or default_size[0],
        height=frame.height or default_size[1],
        model=frame.model,
        score_threshold=score_threshold,
        verdict=verdict[0] if verdict else None,
        rules_version=verdict[1] if verdict else None,
        boxes=[
            ReviewBox(
                detection_id=d.id,
                class_id=d.class_id,
                class_name=d.class_name,
                score=d.score,
                xyxy=(d.x1, d.y1, d.x2, d.y2),
                decision=decided.get(d.id, (None, None))[0],
                reason_code=decided.get(d.id, (None, None))[1],
            )
            for d in dets
        ],
        missed=missed,
        last_review=last,
        classes=list(classes),
    )


def submit_review(
    engine: Engine,
    frame_id: int,
    reviewer: str,
    review: ReviewIn,
    *,
    score_threshold: float,
    default_size: tuple[int, int],
    now: datetime | None = None,
) -> ReviewOut:
    """Store one review of a frame (one transaction); ReviewRefusedError if it does not fit the frame."""
    now = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        frame = _frame_row(conn, frame_id)
        if frame.error is not None:
            raise ReviewRefusedError(f"frame {frame_id} is an error row ({frame.error[:80]}): nothing to review")
        dets = {d.id: d for d in _detections(conn, frame_id)}
        given = [d.detection_id for d in review.decisions]
        if len(set(given)) != len(given):
            raise ReviewRefusedError(f"frame {frame_id}: a detection is decided twice")
        if set(given) != set(dets):
            unknown = sorted(set(given) - set(dets))[:5]
            undecided = sorted(set(dets) - set(given))[:5]
            raise ReviewRefusedError(
                f"frame {frame_id}: decide every detection of the frame once "
                f"(not of this frame: {unknown or 'none'}; undecided: {undecided or 'none'})"
            )
        width, height = frame.width or default_size[0], frame.height or default_size[1]
        classes = _model_classes(frame.model) or tuple(sorted({d.class_name for d in dets.values()}))
        class_ids = _class_ids(classes, dets.values())
        for box in review.missed:
            x1, y1, x2, y2 = box.xyxy
            if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                raise ReviewRefusedError(f"drawn box {box.xyxy} is outside the {width}x{height} frame")
            if box.class_name not in class_ids:
                raise ReviewRefusedError(f"drawn box class {box.class_name!r} is not a class of model {frame.model}")
        verdict = _car_verdict_in_write(conn, frame.car_id)
        review_id = conn.execute(
            insert(ReviewRow)
            .values(
                frame_id=frame_id,
                car_id=frame.car_id,
                reviewer=reviewer,
                reviewed_at=now,
                model=frame.model,
                rules_version=verdict[1] if verdict else None,
                verdict_seen=verdict[0] if verdict else None,
                score_threshold=score_threshold,
                queue=review.queue,
                note=review.note or None,
            )
            .returning(ReviewRow.id)
        ).scalar_one()
        if review.decisions:
            conn.execute(
                insert(ReviewDecisionRow),
                [
                    {
                        "review_id": review_id,
                        "detection_id": d.detection_id,
                        "decision": d.decision,
                        "reason_code": d.reason_code,
                        "class_id": dets[d.detection_id].class_id,
                        "class_name": dets[d.detection_id].class_name,
                        "score": dets[d.detection_id].score,
                        "x1": dets[d.detection_id].x1,
                        "y1": dets[d.detection_id].y1,
                        "x2": dets[d.detection_id].x2,
                        "y2": dets[d.detection_id].y2,
                    }
                    for d in review.decisions
                ],
            )
        if review.missed:
            conn.execute(
                insert(ReviewBoxRow),
                [
                    {
                        "review_id": review_id,
                        "class_id": class_ids[b.class_name],
                        "class_name": b.class_name,
                        "reason_code": b.reason_code,
                        "x1": b.xyxy[0],
                        "y1": b.xyxy[1],
                        "x2": b.xyxy[2],
                        "y2": b.xyxy[3],
                    }
                    for b in review.missed
                ],
            )
    confirmed = sum(d.decision == "confirm" for d in review.decisions)
    return ReviewOut(
        review_id=review_id,
        frame_id=frame_id,
        reviewer=reviewer,
        reviewed_at=now,
        model=frame.model,
        rules_version=verdict[1] if verdict else None,
        verdict_seen=verdict[0] if verdict else None,
        confirmed=confirmed,
        rejected=len(review.decisions) - confirmed,
        missed=len(review.missed),
    )


def _class_ids(classes: Sequence[str], dets: Any) -> dict[str, int]:
    """Class name -> id: the stored detections' ids where seen, else the model's column order."""
    ids: dict[str, int] = {name: k for k, name in enumerate(classes)}
    ids.update({d.class_name: d.class_id for d in dets})
    return ids


BUCKETS = ("ng", "near", "ok_sample")


class _Buckets:
    """The queue's three buckets: each a query of `queries` (review.py) and its parameters; the NG and the
    OK cars are read first (only when their bucket is asked for), the OK cars sampled here."""

    def __init__(self, conn: Connection, config: ReviewConfig, score_threshold: float) -> None:
        self.conn, self.config, self.score_threshold = conn, config, score_threshold

    def query(self, name: str) -> tuple[queries.Query, dict[str, Any]]:
        if name == "ng":
            ng_cars = queries.run(self.conn, queries.NG_CARS, limit=NG_CARS_MAX)
            return queries.QUEUE_NG, {"car_ids": [r.car_id for r in ng_cars]}
        if name == "near":
            return queries.QUEUE_NEAR, {"near_below": self.score_threshold + self.config.near_band}
        # OK cars: a stable pseudo-random choice of cars first (Python, seeded), then their frames: no sort of every OK frame
        ok_all = sorted(r.car_id for r in queries.run(self.conn, queries.OK_CARS))
        sample = random.Random(self.config.sample_seed).sample(ok_all, min(len(ok_all), self.config.queue_size))
        return queries.QUEUE_OK_SAMPLE, {"car_ids": sample, "sample_seed": self.config.sample_seed}

    def after(self, name: str, frame_id: int, captured_at: datetime) -> dict[str, Any]:
        """The keyset parameters: frames after this one in the bucket's order (a range of the order's index)."""
        if name == "ok_sample":
            return {"after_key": queries.sample_key(frame_id, self.config.sample_seed)}
        return {"after_captured_at": captured_at}


def _item(row: Any, queue: str, verdict: str | None) -> QueueItem:
    return QueueItem(
        frame_id=row.id,
        car_id=row.car_id,
        camera=row.camera,
        shot=row.shot,
        queue=queue,  # type: ignore[arg-type]
        detections=row.detection_count,
        verdict=verdict,
    )


def review_queue(conn: Connection, config: ReviewConfig, score_threshold: float, *, exclude: int | None = None) -> ReviewQueue:
    """Unreviewed frames: NG cars' first, then frames with a box near the threshold, then a stable
    pseudo-random sample of OK cars' frames; each bucket up to its share of `queue_size`, the rest
    filled from the buckets in that order.

    Each bucket walks its order past the frames reviewed already (an anti-join on `reviews`), so this
    grows with the reviews at the head of the order; going from one frame to the next is `next_frame`."""
    buckets = _Buckets(conn, config, score_threshold)
    size = config.queue_size
    shares = {"ng": config.ng_share, "near": config.near_share, "ok_sample": config.ok_share}
    total_share = sum(shares.values()) or 1.0
    picked: dict[int, QueueItem] = {}
    fetched: dict[str, list[Any]] = {}
    for name in BUCKETS:
        query, params = buckets.query(name)
        fetched[name] = queries.run(conn, query, exclude=-1 if exclude is None else exclude, limit=size, **params)
    verdict_of = {
        car: v for car, (v, _) in car_verdicts(conn, sorted({r.car_id for rows in fetched.values() for r in rows})).items()
    }
    for fill in (False, True):
        for name in BUCKETS:
            quota = size if fill else round(size * shares[name] / total_share)
            taken = sum(1 for item in picked.values() if item.queue == name)
            for row in fetched[name]:
                if len(picked) >= size or taken >= quota:
                    break
                if row.id in picked:
                    continue
                picked[row.id] = _item(row, name, verdict_of.get(row.car_id))
                taken += 1
    order = {name: k for k, name in enumerate(BUCKETS)}
    items = sorted(picked.values(), key=lambda item: order[item.queue])  # stable: bucket order kept within
    mix = {name: sum(1 for item in items if item.queue == name) for name in BUCKETS}
    return ReviewQueue(items=items, mix=mix)


def next_frame(conn: Connection, config: ReviewConfig, score_threshold: float, *, after: int, queue: str) -> QueueItem | None:
    """The frame to review after frame `after`, reviewed from bucket `queue`: the first unreviewed
    frame after it in that bucket's order, else (bucket done, or `queue` not a bucket) the head of
    `review_queue`, which brings back frames skipped or arrived since and moves to the next bucket.

    A keyset: the bucket is read from `after`'s place in its order, so a step costs the same however
    many frames were reviewed before it (the whole queue walks past them). None when nothing is left."""
    key = queries.execute(conn, queries.FRAME_CAPTURED_AT, frame_id=after).scalar() if queue in BUCKETS else None
    if key is not None:
        buckets = _Buckets(conn, config, score_threshold)
        query, params = buckets.query(queue)
        row = queries.execute(conn, query, exclude=after, limit=1, **params, **buckets.after(queue, after, key)).first()
        if row is not None:
            verdict = car_verdicts(conn, [row.car_id]).get(row.car_id)
            return _item(row, queue, verdict[0] if verdict else None)
    items = review_queue(conn, config, score_threshold, exclude=after).items
    return items[0] if items else None
