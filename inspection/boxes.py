"""Box geometry as small pure functions over arrays (xyxy float boxes).

One NMS for the whole project: `batched_nms` (class/tile offsets trick, a single call for every
group), used by the detector post-processing and by stitching.
"""

from __future__ import annotations

import cv2
import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) -> (N,) areas (zero for degenerate boxes)."""
    wh = np.clip(xyxy[:, 2:] - xyxy[:, :2], 0, None)
    return wh[:, 0] * wh[:, 1]


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) -> (N, M) intersection areas."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) -> (N, M) intersection over union (0 where the union is empty)."""
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def box_ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4), (M, 4) -> (N, M) intersection over the smaller of the two areas (SAHI's IoS)."""
    inter = box_intersection(a, b)
    smaller = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter, dtype=np.float64), where=smaller > 0)


def batched_nms(xyxy: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS within each group (class, or tile×class), all groups in one call.

    xyxy (N, 4), scores (N,), groups (N,) int -> indices of kept boxes, highest score first.
    A box is suppressed by a higher-scoring box of its own group with IoU > iou_threshold.
    OpenCV's C++ NMSBoxesBatched does the work (it offsets each group so groups never overlap).
    """
    n = len(xyxy)
    if n == 0:
        return np.zeros((0,), np.int64)
    boxes = np.asarray(xyxy, np.float64)
    xywh = np.empty_like(boxes)
    xywh[:, :2] = boxes[:, :2]
    xywh[:, 2:] = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh, np.asarray(scores, np.float32), np.asarray(groups, np.int32), float(-np.inf), float(iou_threshold)
    )
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


def top_k_per_group(scores: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores within each group, grouped, best first within a group.

    scores (N,), groups (N,) int -> (M,) int64, M ≤ N. Vectorised: one lexsort and a rank.
    """
    if len(scores) == 0:
        return np.zeros((0,), np.int64)
    order = np.lexsort((-np.asarray(scores), np.asarray(groups)))
    g = np.asarray(groups)[order]
    first = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    start_of = np.repeat(first, np.diff(np.r_[first, len(g)]))
    rank = np.arange(len(g)) - start_of
    return order[rank < k]
