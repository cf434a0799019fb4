"""Tile detections -> frame detections.

1. `to_frame`: add every box's tile origin (one gather for the whole batch); boxes of the global
   view (the whole frame downscaled into a spare slot, `TileGrid.global_view`) are scaled back to
   frame pixels, the small ones dropped; blank-tile boxes dropped; clipped to the frame.
2. `merge_overlaps` (grid.overlap > 0): an object seen by two overlapping tiles is reported twice;
   class-wise NMS, or greedy non-maximum merging (NMM, as SAHI) with IoU or IoS as match metric,
   joins the copies. Only copies from different tiles are matched: within a tile the detector's
   own NMS has already decided.
3. `merge_border_cuts` (no overlap): an object cut by a tile border shows up as pieces, one ending
   on each side of the border. Rule `cut`: both pieces touch the same grid line from opposite
   sides, same class, compatible extents along the line; repeated until no piece is left, so an
   object spread over three or four tiles becomes one box. Rule `pairwise`: the earlier
   one-pass rule, kept for comparison.
4. `fuse_global`: a global-view box and the tile boxes of the same object become one box: they
   match by IoU, or by IoS when the tile box is a piece ending on a grid line inside it.

Matching copies are fused score-aware (`fuse_matches`): greedy in score order, each box joins the
best kept box matching it; members scoring below `fusion_min_ratio` × the keeper's score are only
suppressed; the fused box is the members' union or score-weighted mean, its score the best
member's or their noisy-or. Candidate pairs come from a spatial hash (tile-sized cells) and a
sort-and-sweep along x inside each cell (`box_pairs`, `interval_pairs`), so the cost follows the
number of boxes that actually overlap, not N².
"""

from __future__ import annotations

import numpy as np

from .boxes import greedy_suppression, paired_overlap
from .config import StitchConfig
from .detections import Detections
from .tiling import TileGrid


def to_frame(detections: Detections, grid: TileGrid, min_global_px: float = 0.0) -> Detections:
    """(N,) tile-pixel detections with tile_index -> frame pixels.

    Tile boxes get their tile's origin added; global-view boxes (tile_index == grid.global_index)
    are scaled by `grid.global_scale` and kept only when their longer side is >= min_global_px;
    boxes of blank slots are dropped. tile_index is kept (the global view's stays global_index).
    """
    t = detections.tile_index
    real = (t >= 0) & (t < grid.num_tiles)
    is_global = (t == grid.global_index) if grid.global_view else np.zeros(len(detections), bool)
    d = detections[real | is_global]
    g = is_global[real | is_global]
    xyxy = d.xyxy.copy()
    tile = d.tile_index[~g]
    origin = grid.origins[tile].astype(np.float32)  # (N, 2) x0, y0
    xyxy[~g] += np.concatenate([origin, origin], axis=1)
    sx, sy = grid.global_scale
    xyxy[g] *= np.array([sx, sy, sx, sy], np.float32)
    limits = np.array([grid.frame_width, grid.frame_height] * 2, np.float32)
    xyxy = np.clip(xyxy, 0, limits)
    out = Detections(xyxy, d.score, d.class_id, d.tile_index)
    if g.any() and min_global_px > 0:
        longer = np.max(xyxy[:, 2:] - xyxy[:, :2], axis=1)
        out = out[~g | (longer >= min_global_px)]
    return out


def interval_pairs(lo: np.ndarray, hi: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of items of the same group whose closed intervals [lo, hi] overlap.

    lo, hi: (N,) float with lo <= hi; group: (N,) int. Returns two (P,) int64 arrays of original
    indices, each unordered pair once. Sort by (group, lo), then each item's partners are the
    following items of its group starting at or before its own end (one searchsorted): the cost
    is O(N log N + P), P the number of overlapping pairs.
    """
    n = len(lo)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    _, dense = np.unique(np.asarray(group), return_inverse=True)
    base = lo.min()
    span = float(hi.max() - base) + 1.0
    order = np.lexsort((lo, dense))
    key = dense[order] * span + (lo[order] - base)
    end = np.searchsorted(key, dense[order] * span + (hi[order] - base), side="right")
    count = np.maximum(end - np.arange(n) - 1, 0)
    first = np.repeat(np.arange(n), count)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(count) - count, count)
    return order[first], order[first + 1 + offset]


def box_pairs(xyxy: np.ndarray, group: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of boxes of the same group that overlap (closed boxes; touching counts).

    xyxy: (N, 4) float; group: (N,) int; cell: spatial hash cell size in pixels. Each box is
    entered in every cell of a `cell`-pixel grid it covers; boxes sharing a (group, cell) are swept
    along x (`interval_pairs`) and kept if their y extents meet; a pair is reported only by the
    cell holding the top-left corner of its intersection, so each pair once. Cost: O(N·c log N + P),
    c the cells a box covers, P the overlapping pairs within cells.
    """
    n = len(xyxy)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = np.asarray(xyxy, np.float64)
    c0 = np.floor(b[:, :2] / cell).astype(np.int64)  # (N, 2) first cell x, y
    c1 = np.floor(b[:, 2:] / cell).astype(np.int64)
    span = c1 - c0 + 1
    count = span[:, 0] * span[:, 1]
    box = np.repeat(np.arange(n), count)
    k = np.arange(len(box)) - np.repeat(np.cumsum(count) - count, count)  # replica number within its box
    cx = c0[box, 0] + k % span[box, 0]
    cy = c0[box, 1] + k // span[box, 0]
    cells_x = int(c1[:, 0].max()) + 2
    key = (np.asarray(group, np.int64)[box] * (int(c1[:, 1].max()) + 2) + cy) * cells_x + cx
    i, j = interval_pairs(b[box, 0], b[box, 2], key)
    bi, bj = box[i], box[j]
    meet = (b[bi, 1] <= b[bj, 3]) & (b[bj, 1] <= b[bi, 3])
    corner_x = np.floor(np.maximum(b[bi, 0], b[bj, 0]) / cell).astype(np.int64)
    corner_y = np.floor(np.maximum(b[bi, 1], b[bj, 1]) / cell).astype(np.int64)
    own = meet & (corner_x == cx[i]) & (corner_y == cy[i])
    return bi[own], bj[own]


def fuse_matches(d: Detections, first: np.ndarray, second: np.ndarray, config: StitchConfig, *, fuse: bool = True) -> Detections:
    """Greedy score-ordered fusion of matching boxes (pairs of indices into `d`, unordered).

    Each box matched by a kept, better box joins the best such keeper. With fuse=False (NMS) it
    just disappears; otherwise members scoring >= config.fusion_min_ratio × the keeper's score
    are fused into it (box: union or score-weighted mean; score: max or noisy-or). Fused boxes
    get tile_index -1. Returns the kept boxes, best score first.
    """
    n = len(d)
    if n < 2 or not len(first):
        return d.sorted_by_score()
    order = np.argsort(-d.score, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    a, b = rank[first], rank[second]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = greedy_suppression(n, lo, hi)
    xyxy = d.xyxy[order].astype(np.float64)
    score = d.score[order].astype(np.float64)
    tile = d.tile_index[order].copy()
    if fuse:
        absorbing = keep[lo] & ~keep[hi]
        best = np.full(n, n, np.int64)
        np.minimum.at(best, hi[absorbing], lo[absorbing])
        member = np.flatnonzero(best < n)
        target = best[member]
        joins = score[member] >= config.fusion_min_ratio * score[target]
        member, target = member[joins], target[joins]
        if len(member):
            if config.fusion_box == "union":
                np.minimum.at(xyxy[:, 0], target, xyxy[member, 0])
                np.minimum.at(xyxy[:, 1], target, xyxy[member, 1])
                np.maximum.at(xyxy[:, 2], target, xyxy[member, 2])
                np.maximum.at(xyxy[:, 3], target, xyxy[member, 3])
            else:
                weighted = xyxy * score[:, None]
                weight = score.copy()
                np.add.at(weighted, target, xyxy[member] * score[member, None])
                np.add.at(weight, target, score[member])
                xyxy = weighted / np.maximum(weight, 1e-12)[:, None]
            if config.fusion_score == "noisy_or":
                miss = np.log1p(-np.minimum(score, 1 - 1e-7))
                np.add.at(miss, target, miss[member])
                score = np.where(np.isin(np.arange(n), target), -np.expm1(miss), score)
            tile[target] = -1  # a fused box spans tiles
    out = Detections(xyxy.astype(np.float32), score.astype(np.float32), d.class_id[order], tile)[keep]
    return out.sorted_by_score()


# ----------------------------------------------------------------------------- overlapping grids


def _cross_tile_matches(d: Detections, metric: str, threshold: float, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of same-class boxes from different tiles whose `metric` overlap exceeds `threshold`."""
    i, j = box_pairs(d.xyxy, d.class_id, cell)
    other = d.tile_index[i] != d.tile_index[j]
    i, j = i[other], j[other]
    match = paired_overlap(d.xyxy[i], d.xyxy[j], metric) > threshold
    return i[match], j[match]


def merge_overlaps(d: Detections, config: StitchConfig, cell: float = 300.0) -> Detections:
    """Join copies of one object from overlapping tiles (class-wise, across tiles only); `cell`: hash cell, px."""
    if config.merge == "none" or len(d) < 2:
        return d
    i, j = _cross_tile_matches(d, config.match_metric, config.match_threshold, cell)
    return fuse_matches(d, i, j, config, fuse=config.merge == "nmm")


# ----------------------------------------------------------------------------- border cuts


def _nearest_line(values: np.ndarray, lines: np.ndarray, tol: float) -> np.ndarray:
    """(N,) index of the line within `tol` of each value, -1 where none."""
    if len(lines) == 0:
        return np.full(len(values), -1, np.int64)
    pos = np.clip(np.searchsorted(lines, values), 1, max(len(lines) - 1, 1))
    below = np.clip(pos - 1, 0, len(lines) - 1)
    above = np.clip(pos, 0, len(lines) - 1)
    pick = np.where(np.abs(values - lines[below]) <= np.abs(values - lines[above]), below, above)
    return np.where(np.abs(values - lines[pick]) <= tol, pick, -1)


def _extent_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, 2), (K, 2) 1-D intervals -> (K,) IoU."""
    inter = np.clip(np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    union = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, union, out=np.zeros(inter.shape, np.float64), where=union > 0)


def cut_pairs(d: Detections, lines: np.ndarray, axis: int, config: StitchConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of boxes a real cut at one of `lines` can produce (axis 0: vertical lines x = L).

    One box ends on line L (its high side within tolerance), the other starts on the same L, same
    class, and their extents along the line overlap by 1-D IoU >= border_min_overlap.
    """
    tol = config.border_tolerance_px
    lines = np.asarray(lines, np.float64)
    xyxy = d.xyxy.astype(np.float64)
    end_line = _nearest_line(xyxy[:, axis + 2], lines, tol)
    start_line = _nearest_line(xyxy[:, axis], lines, tol)
    ends, starts = np.flatnonzero(end_line >= 0), np.flatnonzero(start_line >= 0)
    if not len(ends) or not len(starts):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    box = np.concatenate([ends, starts])
    role = np.r_[np.zeros(len(ends), np.int8), np.ones(len(starts), np.int8)]
    line = np.concatenate([end_line[ends], start_line[starts]])
    group = d.class_id[box].astype(np.int64) * (len(lines) + 1) + line
    other = 1 - axis
    i, j = interval_pairs(xyxy[box, other], xyxy[box, other + 2], group)
    opposite = (role[i] != role[j]) & (box[i] != box[j])
    i, j = box[i[opposite]], box[j[opposite]]
    extent = _extent_iou(xyxy[i][:, [other, other + 2]], xyxy[j][:, [other, other + 2]])
    ok = extent >= config.border_min_overlap
    return i[ok], j[ok]


def _pairwise_pairs(d: Detections, grid: TileGrid, config: StitchConfig) -> tuple[np.ndarray, np.ndarray]:
    """The earlier rule: boxes touching any border, side by side or stacked within 2×tolerance, one pass."""
    tol = config.border_tolerance_px
    x_borders = grid.x_starts[1:].astype(np.float32)
    y_borders = grid.y_starts[1:].astype(np.float32)
    xyxy = d.xyxy

    def near(values: np.ndarray, borders: np.ndarray) -> np.ndarray:
        return _nearest_line(values.astype(np.float64), borders.astype(np.float64), tol) >= 0

    touching = (
        near(xyxy[:, 0], x_borders) | near(xyxy[:, 2], x_borders) | near(xyxy[:, 1], y_borders) | near(xyxy[:, 3], y_borders)
    )
    cand = np.flatnonzero(touching)
    # every same-class pair of candidates from different tiles (the earlier all-pairs search)
    big = np.full(len(cand), 0.0)
    i, j = interval_pairs(big, big, d.class_id[cand])
    i, j = cand[i], cand[j]
    other_tile = d.tile_index[i] != d.tile_index[j]
    i, j = i[other_tile], j[other_tile]
    a, b = xyxy[i], xyxy[j]
    side_by_side = (np.abs(a[:, 2] - b[:, 0]) <= 2 * tol) | (np.abs(b[:, 2] - a[:, 0]) <= 2 * tol)
    side_by_side &= near(np.where(a[:, 2] < b[:, 2], a[:, 2], b[:, 2]), x_borders)
    side_by_side &= _extent_iou(a[:, [1, 3]], b[:, [1, 3]]) >= config.border_min_overlap
    stacked = (np.abs(a[:, 3] - b[:, 1]) <= 2 * tol) | (np.abs(b[:, 3] - a[:, 1]) <= 2 * tol)
    stacked &= near(np.where(a[:, 3] < b[:, 3], a[:, 3], b[:, 3]), y_borders)
    stacked &= _extent_iou(a[:, [0, 2]], b[:, [0, 2]]) >= config.border_min_overlap
    match = side_by_side | stacked
    return i[match], j[match]


def merge_border_cuts(d: Detections, grid: TileGrid, config: StitchConfig) -> Detections:
    """Join the pieces of objects cut by tile borders (non-overlapping grids; see the module doc)."""
    if not config.border_merge or len(d) < 2 or grid.overlap:
        return d
    if config.border_rule == "pairwise":
        i, j = _pairwise_pairs(d, grid, config)
        return fuse_matches(
            d, i, j, config.model_copy(update={"fusion_min_ratio": 0.0, "fusion_box": "union", "fusion_score": "max"})
        )
    # A pass joins each piece to a neighbour; an object over k tiles needs up to k-1 passes, and a
    # join across a row line can enable one across a column line: repeat until nothing joins.
    axes = ((0, grid.x_starts[1:]), (1, grid.y_starts[1:]))
    for _ in range(grid.cols + grid.rows):
        joined = False
        for axis, lines in axes:
            i, j = cut_pairs(d, lines, axis, config)
            if len(i):
                d = fuse_matches(d, i, j, config)
                joined = True
        if not joined:
            break
    return d


# ----------------------------------------------------------------------------- global view


def on_grid_line(xyxy: np.ndarray, grid: TileGrid, tol: float) -> np.ndarray:
    """(N, 4) frame boxes -> (N,) bool: a side lies on an interior tile edge (the box may be a cut piece)."""
    t = grid.tile_size
    xs, ys = grid.x_starts.astype(np.float64), grid.y_starts.astype(np.float64)
    b = np.asarray(xyxy, np.float64)
    return (
        (_nearest_line(b[:, 0], xs[1:], tol) >= 0)
        | (_nearest_line(b[:, 2], xs[:-1] + t, tol) >= 0)
        | (_nearest_line(b[:, 1], ys[1:], tol) >= 0)
        | (_nearest_line(b[:, 3], ys[:-1] + t, tol) >= 0)
    )


def fuse_global(tiles: Detections, glob: Detections, grid: TileGrid, config: StitchConfig) -> Detections:
    """Fuse global-view boxes (frame pixels) with the tiles' boxes of the same objects.

    A pair (global box, tile box) of one class is one object when their IoU exceeds
    global_match_threshold, or when the tile box is a piece ending on a grid line and lies in the
    global box (IoS > match_threshold). Unmatched boxes of either kind stay.
    """
    if not len(glob):
        return tiles
    d = Detections.merge([tiles, glob])
    is_global = np.r_[np.zeros(len(tiles), bool), np.ones(len(glob), bool)]
    i, j = box_pairs(d.xyxy, d.class_id, grid.tile_size)
    cross = is_global[i] != is_global[j]
    i, j = i[cross], j[cross]
    tile_box = np.where(is_global[i], j, i)
    iou = paired_overlap(d.xyxy[i], d.xyxy[j], "iou")
    ios = paired_overlap(d.xyxy[i], d.xyxy[j], "ios")
    piece = on_grid_line(d.xyxy[tile_box], grid, config.border_tolerance_px)
    match = (iou > config.global_match_threshold) | (piece & (ios > config.match_threshold))
    return fuse_matches(d, i[match], j[match], config)


def stitch(detections: Detections, grid: TileGrid, config: StitchConfig) -> Detections:
    """Tile detections of one frame's batch -> merged frame detections, best score first."""
    frame = to_frame(detections, grid, config.global_min_size_px)
    is_global = frame.tile_index == grid.global_index if grid.global_view else np.zeros(len(frame), bool)
    tiles, glob = frame[~is_global], frame[is_global]
    tiles = merge_overlaps(tiles, config, grid.tile_size) if grid.overlap else merge_border_cuts(tiles, grid, config)
    return fuse_global(tiles, glob, grid, config).sorted_by_score()
