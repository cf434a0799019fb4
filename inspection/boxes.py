"""Box geometry as small pure functions over arrays (xyxy float boxes).

One NMS for the whole project: `batched_nms` (every group — class, or tile×class — in one call),
used by the detector post-processing and by stitching. It is exact greedy NMS, vectorised:
IoU is computed only for pairs inside a group, and the greedy "kept unless a kept, higher-scoring
box of its group overlaps it" rule is solved as a fixed point over all groups at once.
"""

from __future__ import annotations

import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) -> (N,) areas (zero for degenerate boxes)."""
    wh = np.clip(xyxy[..., 2:] - xyxy[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


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
    return np.divide(inter, union, out=np.zeros(inter.shape, np.float64), where=union > 0)


def paired_overlap(
    a: np.ndarray, b: np.ndarray, metric: str = "iou", area_a: np.ndarray | None = None, area_b: np.ndarray | None = None
) -> np.ndarray:
    """Row-wise overlap of (K, 4) and (K, 4) boxes -> (K,): IoU, or IoS (over the smaller area).
    `area_a`, `area_b` (K,): the boxes' areas where the caller has them already."""
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area_a = box_area(a) if area_a is None else area_a
    area_b = box_area(b) if area_b is None else area_b
    denom = area_a + area_b - inter if metric == "iou" else np.minimum(area_a, area_b)
    return np.divide(inter, denom, out=np.zeros(inter.shape, np.float64), where=denom > 0)


def group_pairs(groups_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j), i < j, inside runs of equal values of a group-sorted (N,) array.

    Returns two (P,) int64 arrays; P = sum over groups of n·(n-1)/2.
    """
    n = len(groups_sorted)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    boundaries = np.r_[0, np.flatnonzero(groups_sorted[1:] != groups_sorted[:-1]) + 1, n]
    run_end = np.repeat(boundaries[1:], np.diff(boundaries))  # exclusive end of each element's run
    later = run_end - np.arange(n) - 1  # partners after each element within its run
    first = np.repeat(np.arange(n), later)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(later) - later, later)
    return first, first + 1 + offset


def greedy_suppression(num: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy keep mask for `num` items in priority order, given pairs (first < second) where
    `first` suppresses `second` if `first` is kept. Solved as a fixed point (unique: item j's state
    depends only on earlier items), in at most (longest suppression chain + 1) vectorised steps.
    """
    keep = np.ones(num, bool)
    while True:
        suppressed = np.zeros(num, bool)
        suppressed[second[keep[first]]] = True
        new_keep = ~suppressed
        if np.array_equal(new_keep, keep):
            return keep
        keep = new_keep


def batched_nms(
    xyxy: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou_threshold: float, metric: str = "iou"
) -> np.ndarray:
    """Greedy NMS within each group, every group in one call (torchvision's batched_nms contract).

    xyxy (N, 4), scores (N,), groups (N,) int -> (K,) int64 indices of kept boxes, highest score
    first. A box is suppressed by a kept, higher-scoring box of its own group whose overlap
    (`metric`: "iou", or "ios" = intersection over the smaller box) exceeds the threshold.
    Cost is quadratic in the largest group: cap candidates per group first (`top_k_per_group`).
    """
    n = len(xyxy)
    if n == 0:
        return np.zeros((0,), np.int64)
    scores = np.asarray(scores)
    groups = np.asarray(groups)
    order = np.lexsort((-scores, groups))  # group-major, best score first inside a group
    boxes = np.asarray(xyxy, np.float64)[order]
    first, second = group_pairs(groups[order])
    area = box_area(boxes)  # once per box, not once per pair
    overlapping = paired_overlap(boxes[first], boxes[second], metric, area[first], area[second]) > iou_threshold
    keep = greedy_suppression(n, first[overlapping], second[overlapping])
    kept = order[keep]
    return kept[np.argsort(-scores[kept], kind="stable")]


def top_k_per_group(scores: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores within each group, ordered by group then best score first.

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
