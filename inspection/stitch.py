"""Tile detections -> frame detections.

1. `to_frame`: add every box's tile origin (one gather for the whole batch), drop blank-tile
   boxes, clip to the frame.
2. `merge_overlaps` (grid.overlap > 0): an object seen by two overlapping tiles is reported twice;
   class-wise NMS, or greedy non-maximum merging (NMM, as SAHI) with IoU or IoS as match metric,
   joins the copies. Only copies from different tiles are matched: within a tile the detector's
   own NMS has already decided.
3. `merge_border_cuts`: an object cut by a tile border shows up as two partial boxes, one ending
   on each side of the border. Same class, both touching the border, and overlapping along it:
   they become one box (their union, the higher score).
"""

from __future__ import annotations

import numpy as np

from .boxes import greedy_suppression, group_pairs, paired_overlap
from .config import StitchConfig
from .detections import Detections
from .tiling import TileGrid


def to_frame(detections: Detections, grid: TileGrid) -> Detections:
    """(N,) tile-pixel detections with tile_index -> frame pixels; blank tiles' boxes dropped."""
    real = (detections.tile_index >= 0) & (detections.tile_index < grid.num_tiles)
    d = detections[real]
    origin = grid.origins[d.tile_index].astype(np.float32)  # (N, 2) x0, y0
    xyxy = d.xyxy + np.concatenate([origin, origin], axis=1)
    limits = np.array([grid.frame_width, grid.frame_height] * 2, np.float32)
    xyxy = np.clip(xyxy, 0, limits)
    return Detections(xyxy, d.score, d.class_id, d.tile_index)


def _cross_tile_pairs(d: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score-ordered detections, and index pairs (i < j) of the same class from different tiles."""
    order = np.lexsort((-d.score, d.class_id))
    first, second = group_pairs(d.class_id[order])
    other_tile = d.tile_index[order][first] != d.tile_index[order][second]
    return order, first[other_tile], second[other_tile]


def _merge_pairs(d: Detections, order: np.ndarray, first: np.ndarray, second: np.ndarray, union: bool) -> Detections:
    """Greedy merge: in score order, a box matched by a kept, better box is absorbed into it.

    `first`/`second` index into `order` (per-class, best first). With union=False the absorbed
    box just disappears (NMS); with union=True the keeper grows to cover it (NMM).
    """
    n = len(order)
    keep = greedy_suppression(n, first, second)
    xyxy = d.xyxy[order].copy()
    tile = d.tile_index[order].copy()
    if union and len(first):
        # Each absorbed box joins the best kept box that matches it (the smallest `first`).
        absorbing = keep[first] & ~keep[second]
        f, s = first[absorbing], second[absorbing]
        best = np.full(n, n, np.int64)
        np.minimum.at(best, s, f)
        absorbed = np.flatnonzero(best < n)
        target = best[absorbed]
        np.minimum.at(xyxy[:, 0], target, xyxy[absorbed, 0])
        np.minimum.at(xyxy[:, 1], target, xyxy[absorbed, 1])
        np.maximum.at(xyxy[:, 2], target, xyxy[absorbed, 2])
        np.maximum.at(xyxy[:, 3], target, xyxy[absorbed, 3])
        tile[target] = -1  # a joined box spans tiles
    merged = Detections(xyxy, d.score[order], d.class_id[order], tile)[keep]
    return merged.sorted_by_score()


def merge_overlaps(d: Detections, config: StitchConfig) -> Detections:
    """Join copies of one object from overlapping tiles (class-wise, across tiles only)."""
    if config.merge == "none" or len(d) < 2:
        return d
    order, first, second = _cross_tile_pairs(d)
    xyxy = d.xyxy[order]
    match = paired_overlap(xyxy[first], xyxy[second], config.match_metric) > config.match_threshold
    return _merge_pairs(d, order, first[match], second[match], union=config.merge == "nmm")


def merge_border_cuts(d: Detections, grid: TileGrid, config: StitchConfig) -> Detections:
    """Join the two halves of objects cut by a shared tile border (non-overlapping grids)."""
    if not config.border_merge or len(d) < 2 or grid.overlap:
        return d
    tol = config.border_tolerance_px
    x_borders = grid.x_starts[1:].astype(np.float32)
    y_borders = grid.y_starts[1:].astype(np.float32)

    def near(values: np.ndarray, borders: np.ndarray) -> np.ndarray:
        if len(borders) == 0:
            return np.zeros(len(values), bool)
        return np.min(np.abs(values[:, None] - borders[None, :]), axis=1) <= tol

    touching = near(d.xyxy[:, 0], x_borders) | near(d.xyxy[:, 2], x_borders) | near(d.xyxy[:, 1], y_borders) | near(d.xyxy[:, 3], y_borders)
    candidates = np.flatnonzero(touching)
    if len(candidates) < 2:
        return d
    c = d[candidates]
    order, first, second = _cross_tile_pairs(c)
    a, b = c.xyxy[order][first], c.xyxy[order][second]

    def extent_iou(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> np.ndarray:
        inter = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None)
        union = np.maximum(hi_a, hi_b) - np.minimum(lo_a, lo_b)
        return np.divide(inter, union, out=np.zeros(inter.shape, np.float32), where=union > 0)

    # Left/right halves: one ends where the other starts (a vertical border), rows overlap.
    side_by_side = (np.abs(a[:, 2] - b[:, 0]) <= 2 * tol) | (np.abs(b[:, 2] - a[:, 0]) <= 2 * tol)
    side_by_side &= near(np.where(a[:, 2] < b[:, 2], a[:, 2], b[:, 2]), x_borders)
    side_by_side &= extent_iou(a[:, 1], a[:, 3], b[:, 1], b[:, 3]) >= config.border_min_overlap
    # Top/bottom halves: the same across a horizontal border.
    stacked = (np.abs(a[:, 3] - b[:, 1]) <= 2 * tol) | (np.abs(b[:, 3] - a[:, 1]) <= 2 * tol)
    stacked &= near(np.where(a[:, 3] < b[:, 3], a[:, 3], b[:, 3]), y_borders)
    stacked &= extent_iou(a[:, 0], a[:, 2], b[:, 0], b[:, 2]) >= config.border_min_overlap
    match = side_by_side | stacked
    if not match.any():
        return d
    joined = _merge_pairs(c, order, first[match], second[match], union=True)
    rest = d[~touching]
    return Detections.merge([rest, joined]).sorted_by_score()


def stitch(detections: Detections, grid: TileGrid, config: StitchConfig) -> Detections:
    """Tile detections of one frame's batch -> merged frame detections, best score first."""
    frame = to_frame(detections, grid)
    frame = merge_overlaps(frame, config) if grid.overlap else frame
    return merge_border_cuts(frame, grid, config)
