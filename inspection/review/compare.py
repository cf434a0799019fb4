"""Candidate (shadow) vs deployed: on the reviewed frames, and on car verdicts that would flip.

On the reviewed frames that the shadow also saw: ground truth = the review's corrected boxes
(confirmed + drawn). Each model's boxes at or above the operating threshold are matched greedily
to it (same class, IoU >= 0.5, highest score first): precision, recall; AP and AP50 by pycocotools.
Verdicts: deployed `car_verdicts` against `shadow_verdicts` of the model, car by car.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter, defaultdict

import numpy as np
from pydantic import BaseModel
from sqlalchemy import Connection

from ..analytics import queries
from ..boxes import box_iou
from .reviewed import ReviewedFrame, reviewed_frames

IOU_MATCH = 0.5


class ModelScore(BaseModel):
    model: str
    boxes: int
    true_positives: int
    precision: float | None
    recall: float | None
    ap: float | None
    ap50: float | None


class Comparison(BaseModel):
    candidate: str
    deployed: str | None
    reviewed_frames: int  # reviewed frames the shadow also saw: what the box figures rest on
    ground_truth_boxes: int
    deployed_score: ModelScore | None
    candidate_score: ModelScore | None
    cars_compared: int
    verdict_changes: dict[str, int]  # "ok->ng": n, ...
    flips: list[tuple[str, str, str]]  # (car, deployed, candidate), first 100


def shadow_models(conn: Connection) -> list[str]:
    return [r.model for r in queries.run(conn, queries.SHADOW_MODELS)]


def _matches(gt_xyxy: np.ndarray, gt_cls: np.ndarray, xyxy: np.ndarray, cls: np.ndarray, score: np.ndarray) -> int:
    """True positives of one image: greedy by score, same class, IoU >= IOU_MATCH, each truth once."""
    if not len(gt_xyxy) or not len(xyxy):
        return 0
    iou = box_iou(xyxy[np.argsort(-score)], gt_xyxy)
    same = cls[np.argsort(-score)][:, None] == gt_cls[None, :]
    iou = np.where(same, iou, 0.0)
    taken = np.zeros(len(gt_xyxy), bool)
    tp = 0
    for row in iou:
        row = np.where(taken, 0.0, row)
        best = int(np.argmax(row))
        if row[best] >= IOU_MATCH:
            taken[best] = True
            tp += 1
    return tp


def _coco(
    truth: list[tuple[np.ndarray, np.ndarray]], found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections, classes = [], [], [], set()
    for image_id, ((gx, gc), (dx, dc, ds)) in enumerate(zip(truth, found, strict=True), start=1):
        images.append({"id": image_id})
        for (x1, y1, x2, y2), c in zip(gx.tolist(), gc.tolist(), strict=True):
            classes.add(int(c))
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1],
                 "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            )  # fmt: skip
        for (x1, y1, x2, y2), c, s in zip(dx.tolist(), dc.tolist(), ds.tolist(), strict=True):
            classes.add(int(c))
            detections.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    if not detections or not annotations:
        return 0.0, 0.0
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in sorted(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return max(0.0, float(evaluation.stats[0])), max(0.0, float(evaluation.stats[1]))


def _score(model: str, truth, found, threshold: float) -> ModelScore:
    kept = [(x[s >= threshold], c[s >= threshold], s[s >= threshold]) for x, c, s in found]
    tp = sum(_matches(gx, gc, dx, dc, ds) for (gx, gc), (dx, dc, ds) in zip(truth, kept, strict=True))
    n_found = sum(len(s) for _, _, s in kept)
    n_truth = sum(len(c) for _, c in truth)
    ap, ap50 = _coco(truth, found)
    return ModelScore(
        model=model,
        boxes=n_found,
        true_positives=tp,
        precision=tp / n_found if n_found else None,
        recall=tp / n_truth if n_truth else None,
        ap=ap,
        ap50=ap50,
    )


def _shadow_boxes(
    conn: Connection, model: str, frames: list[ReviewedFrame]
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """frame id -> the shadow's (xyxy, class, score) for the reviewed frames it saw."""
    by_key = {(f.car_id, f.camera, f.shot): f.frame_id for f in frames}
    out: dict[int, list] = {}
    cars = sorted({f.car_id for f in frames})
    for start in range(0, len(cars), 500):
        rows = queries.run(conn, queries.SHADOW_BOXES, model=model, car_ids=cars[start : start + 500])
        for r in rows:
            frame_id = by_key.get((r.car_id, r.camera, r.shot))
            if frame_id is None or r.error is not None:
                continue
            boxes = out.setdefault(frame_id, [])
            if r.class_id is not None:
                boxes.append((r.x1, r.y1, r.x2, r.y2, r.class_id, r.score))
    result = {}
    for frame_id, boxes in out.items():
        table = np.asarray(boxes, np.float64).reshape(len(boxes), 6)
        result[frame_id] = (table[:, :4].astype(np.float32), table[:, 4].astype(np.int32), table[:, 5].astype(np.float32))
    return result


def compare(conn: Connection, candidate: str, *, score_threshold: float) -> Comparison:
    frames = list(reviewed_frames(conn))
    shadow = _shadow_boxes(conn, candidate, frames)
    seen = [f for f in frames if f.frame_id in shadow]
    truth = [(f.label_xyxy, f.label_class) for f in seen]
    deployed_models = Counter(f.model for f in seen)
    deployed_score = candidate_score = None
    if seen:
        deployed_score = _score(
            deployed_models.most_common(1)[0][0], truth, [(f.det_xyxy, f.det_class, f.det_score) for f in seen], score_threshold
        )
        candidate_score = _score(candidate, truth, [shadow[f.frame_id] for f in seen], score_threshold)
    rows = queries.run(conn, queries.SHADOW_VERDICT_CHANGES, model=candidate)
    changes: dict[str, int] = defaultdict(int)
    flips = []
    for r in rows:
        changes[f"{r.deployed}->{r.verdict}"] += 1
        if r.deployed != r.verdict:
            flips.append((r.car_id, r.deployed, r.verdict))
    deployed_name = next(iter(deployed_models), None) if deployed_models else None
    return Comparison(
        candidate=candidate,
        deployed=deployed_name,
        reviewed_frames=len(seen),
        ground_truth_boxes=sum(len(c) for _, c in truth),
        deployed_score=deployed_score,
        candidate_score=candidate_score,
        cars_compared=len(rows),
        verdict_changes=dict(changes),
        flips=flips[:100],
    )
