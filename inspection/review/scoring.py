"""`inspection eval --reviewed`: the deployed model scored on the line's own reviewed frames.

- Per class at the operating threshold (every stored detection is at or above it): precision =
  confirmed / (confirmed + rejected); recall = confirmed / (confirmed + drawn as missed).
- AP (COCO AP@[.5:.95] and AP50, pycocotools) on the frames where boxes were drawn: ground truth =
  confirmed + drawn boxes, detections = the stored boxes with their scores. Only boxes above the
  operating threshold were stored, so this is AP of the curve's upper part, not the model's full AP.
- Verdict agreement: a reviewed car (every reviewed frame's car with an ok/ng verdict) is NG by
  review when a reviewer confirmed a box of a class the car's verdict counted as a defect
  (frame_defects, kept) or drew a missed box; OK otherwise. Agreement = share of cars whose
  ok/ng verdict equals that.
Each figure says how many frames (and boxes, cars) it rests on; `weekly` gives the same per ISO week.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection

from ..analytics import queries
from .reviewed import ReviewedFrame, reviewed_frames


class ClassScore(BaseModel):
    class_name: str
    confirmed: int
    rejected: int
    missed: int
    precision: float | None
    recall: float | None
    ap: float | None = None
    ap50: float | None = None


class ReviewedScore(BaseModel):
    label: str  # "all" or an ISO week "2026-W49"
    frames: int
    frames_with_drawn: int
    classes: list[ClassScore]
    precision: float | None
    recall: float | None
    ap: float | None
    ap50: float | None
    cars: int
    verdict_agreement: float | None
    verdict_flips: list[str]  # car ids whose verdict the review contradicts (first 50)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _coco_ap(
    frames: list[ReviewedFrame], names: dict[int, str]
) -> tuple[float | None, float | None, dict[int, tuple[float, float]]]:
    """(AP, AP50, per class id (AP, AP50)) over frames with drawn boxes; None when none."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    chosen = [f for f in frames if len(f.missed_names)]
    if not chosen:
        return None, None, {}
    images, annotations, detections = [], [], []
    for image_id, f in enumerate(chosen, start=1):
        images.append({"id": image_id, "width": f.width, "height": f.height})
        for (x1, y1, x2, y2), c in zip(f.label_xyxy.tolist(), f.label_class.tolist(), strict=True):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            )  # fmt: skip
        for (x1, y1, x2, y2), c, s in zip(f.det_xyxy.tolist(), f.det_class.tolist(), f.det_score.tolist(), strict=True):
            detections.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    truth = COCO()
    truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c, "name": n} for c, n in names.items()]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        truth.createIndex()
        if not detections:
            return 0.0, 0.0, {}
        found = truth.loadRes(detections)
        evaluation = COCOeval(truth, found, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"]  # [iou, recall, class, area, maxdets]
    per_class: dict[int, tuple[float, float]] = {}
    for k, class_id in enumerate(evaluation.params.catIds):
        p = precision[:, :, k, 0, -1]
        if (p > -1).any():
            per_class[class_id] = (float(p[p > -1].mean()), float(p[0][p[0] > -1].mean()) if (p[0] > -1).any() else 0.0)
    return float(evaluation.stats[0]), float(evaluation.stats[1]), per_class


def _defect_boxes(conn: Connection, frame_ids: list[int]) -> set[tuple[int, int, float, float, float, float]]:
    out: set[tuple[int, int, float, float, float, float]] = set()
    for start in range(0, len(frame_ids), 500):
        rows = queries.run(conn, queries.KEPT_DEFECT_BOXES, frame_ids=frame_ids[start : start + 500])
        out.update((r.frame_id, r.class_id, r.x1, r.y1, r.x2, r.y2) for r in rows)
    return out


def _verdicts(conn: Connection, cars: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(cars), 500):
        rows = queries.run(conn, queries.CAR_VERDICTS, car_ids=cars[start : start + 500])
        out.update({r.car_id: r.verdict for r in rows})
    return out


def score_frames(conn: Connection, frames: list[ReviewedFrame], label: str = "all") -> ReviewedScore:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    names: dict[int, str] = {}
    for f in frames:
        for c, n, ok in zip(f.det_class.tolist(), f.det_names, f.det_confirmed.tolist(), strict=True):
            counts[c][0 if ok else 1] += 1
            names[c] = n
        for c, n in zip(f.missed_class.tolist(), f.missed_names, strict=True):
            counts[c][2] += 1
            names[c] = n
    ap, ap50, per_class_ap = _coco_ap(frames, names)
    classes = [
        ClassScore(
            class_name=names[c], confirmed=tp, rejected=fp, missed=fn, precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn),
            ap=per_class_ap.get(c, (None, None))[0], ap50=per_class_ap.get(c, (None, None))[1],
        )
        for c, (tp, fp, fn) in sorted(counts.items(), key=lambda item: names[item[0]])
    ]  # fmt: skip
    tp, fp, fn = (sum(v[k] for v in counts.values()) for k in range(3))
    # verdict agreement on cars with an ok/ng verdict
    defects = _defect_boxes(conn, [f.frame_id for f in frames])
    reviewed_ng: dict[str, bool] = defaultdict(bool)
    for f in frames:
        confirmed_defect = any(
            (f.frame_id, c, *box) in defects
            for c, box, ok in zip(f.det_class.tolist(), f.det_xyxy.tolist(), f.det_confirmed.tolist(), strict=True)
            if ok
        )
        reviewed_ng[f.car_id] |= confirmed_defect or len(f.missed_names) > 0
    verdicts = {car: v for car, v in _verdicts(conn, sorted(reviewed_ng)).items() if v in ("ok", "ng")}
    flips = sorted(car for car, v in verdicts.items() if (v == "ng") != reviewed_ng[car])
    return ReviewedScore(
        label=label,
        frames=len(frames),
        frames_with_drawn=sum(1 for f in frames if len(f.missed_names)),
        classes=classes,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        ap=ap,
        ap50=ap50,
        cars=len(verdicts),
        verdict_agreement=_ratio(len(verdicts) - len(flips), len(verdicts)),
        verdict_flips=flips[:50],
    )


def _iso_week(when: datetime) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def score_reviewed(conn: Connection, *, since: datetime | None = None) -> ReviewedScore:
    return score_frames(conn, list(reviewed_frames(conn, since=since)))


def weekly(conn: Connection, frames: Iterable[ReviewedFrame] | None = None) -> list[ReviewedScore]:
    """One score per ISO week of review, newest week first."""
    by_week: dict[str, list[ReviewedFrame]] = defaultdict(list)
    for f in frames if frames is not None else reviewed_frames(conn):
        by_week[_iso_week(f.reviewed_at)].append(f)
    return [score_frames(conn, by_week[week], week) for week in sorted(by_week, reverse=True)]
