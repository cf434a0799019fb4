"""A second look at cut objects: re-centred tile-sized crops in one small extra detector call.

After the first call is stitched (`stitch.stitch`), an object the grid cut is known only from its
pieces (joined or not) or from the coarse global view. Here:

1. `cut_boxes`: the frame boxes that are cut pieces or joined across a cut: a side on an interior
   tile edge (within `tol`), or no single tile holds the whole box.
2. `choose_windows`: the best-scoring of them (score >= min_score) get a window centred on them and
   clamped to the frame (`place_windows`): the tile's size, or for an object longer than a tile a
   zoom-out window of `zoom_margin` × its longest side (at most `max_zoom` tiles; `window_sides`);
   a box that already lies in a chosen window gets none (no two crops for one object); at most
   `max_crops`.
3. `gather_crops`: the windows are read out of the tile batch itself (every frame pixel is in some
   tile), so the edge needs no copy of the decoded frame, on the host or on the GPU; a zoom-out
   window is downscaled to one tile (area interpolation).
4. One detector call on the crops; `crops_to_frame` maps their boxes to frame pixels (scaled by the
   window's zoom), and boxes that a crop itself cut (a side on a crop edge inside the frame) are
   dropped.
5. `replace_pieces`: a crop box replaces every cut box of its class whose area it covers by at least
   `cover_threshold`, when it scores at least `replace_min_ratio` × that box's score; crop boxes
   and the remaining boxes are then de-duplicated by class-wise NMS across views (`nms_iou`).

All functions take and return arrays (xyxy float boxes, frame pixels unless said) or `Detections`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .boxes import box_area, paired_overlap
from .config import SecondLookConfig, StitchConfig
from .detections import Detections
from .stitch import box_pairs, fuse_matches, on_grid_line
from .tiling import TileGrid

FIRST_VIEW = -1  # source label of the first call's boxes in `replace_pieces`


def contained_in_a_tile(xyxy: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, 4) frame boxes -> (N,) bool: some tile of the grid holds the whole box.

    Per axis, a tile starting at s holds [lo, hi] when hi - T <= s <= lo; the grid is a product of
    its axes, so a box is held when both axes have such a start.
    """
    b = np.asarray(xyxy, np.float64)
    t = grid.tile_size

    def axis_ok(starts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        s = starts.astype(np.float64)
        return np.searchsorted(s, lo, side="right") > np.searchsorted(s, hi - t, side="left")

    return axis_ok(grid.x_starts, b[:, 0], b[:, 2]) & axis_ok(grid.y_starts, b[:, 1], b[:, 3])


def cut_boxes(xyxy: np.ndarray, grid: TileGrid, tol: float) -> np.ndarray:
    """(N, 4) frame boxes -> (N,) bool: a cut piece (a side within `tol` of an interior tile edge)
    or a box no single tile holds (joined across a cut, or a global-view box over a border)."""
    if not len(xyxy):
        return np.zeros(0, bool)
    return on_grid_line(xyxy, grid, tol) | ~contained_in_a_tile(xyxy, grid)


def window_sides(xyxy: np.ndarray, frame_size: tuple[int, int], side: int, max_zoom: float, margin: float) -> np.ndarray:
    """(N, 4) boxes -> (N,) int64 window sides: `side` for a box whose pixel extent fits a tile, else
    ceil(margin × its longest extent) when that is at most max_zoom × side and fits the frame, else 0
    (no window: the global view sees such an object whole)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    longest = np.max(np.ceil(b[:, 2:]) - np.floor(b[:, :2]), axis=1) if len(b) else np.zeros(0)
    zoomed = np.ceil(margin * longest)
    cap = min(max_zoom * side, *frame_size)
    return np.where(longest <= side, side, np.where(zoomed <= cap, zoomed, 0)).astype(np.int64)


def place_windows(xyxy: np.ndarray, frame_size: tuple[int, int], side: int | np.ndarray) -> np.ndarray:
    """(N, 4) boxes -> (N, 2) int64 top-left corners of side×side windows centred on them (`side`: one for
    all, or (N,) one per box).

    Every window lies inside the frame (frame_size = (width, height) >= side). A box whose
    pixel extent (floor of its low side to ceil of its high side) is at most its side along an axis
    lies inside its window along that axis; a longer one gets the window centred on it.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    s = np.broadcast_to(np.asarray(side, np.float64), (len(b),))[:, None]
    limits = np.array(frame_size, np.float64) - s
    lo = np.floor(b[:, :2])
    hi = np.ceil(b[:, 2:])
    centred = np.floor((lo + hi - s) / 2)
    fits = hi - lo <= s
    # a fitting box: the corner must lie in [hi - side, lo]; nearest to the centred corner
    corner = np.where(fits, np.clip(centred, hi - s, lo), centred)
    return np.clip(corner, 0, limits).astype(np.int64)


def inside_windows(xyxy: np.ndarray, corners: np.ndarray, side: int | np.ndarray) -> np.ndarray:
    """(N, 4) boxes, (K, 2) window corners -> (N, K) bool: box n lies inside window k (`side`: one for all
    windows, or (K,) one per window)."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    c = np.asarray(corners, np.float64).reshape(-1, 2)
    s = np.broadcast_to(np.asarray(side, np.float64), (len(c),))[None, :]
    return (
        (b[:, None, 0] >= c[None, :, 0])
        & (b[:, None, 1] >= c[None, :, 1])
        & (b[:, None, 2] <= c[None, :, 0] + s)
        & (b[:, None, 3] <= c[None, :, 1] + s)
    )


def choose_windows(
    xyxy: np.ndarray,
    score: np.ndarray,
    frame_size: tuple[int, int],
    side: int,
    max_windows: int,
    max_zoom: float = 1.0,
    margin: float = 1.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows for the boxes (N, 4) in score order, one per object: ((K, 2) int64 corners, (K,) int64 sides),
    K <= max_windows.

    Greedy: the best box not yet inside a chosen window gets a window centred on it (`place_windows`,
    side from `window_sides`); every box inside it is then served. Boxes with no window side (longer than
    max_zoom tiles allow) are not served. The loop runs once per chosen window (at most `max_windows`
    times), each step over all boxes at once.
    """
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(score), kind="stable")
    b = b[order]
    sides = window_sides(b, frame_size, side, max_zoom, margin)
    b, sides = b[sides > 0], sides[sides > 0]
    corners = place_windows(b, frame_size, sides)
    served = np.zeros(len(b), bool)
    chosen: list[int] = []
    while len(chosen) < max_windows:
        waiting = np.flatnonzero(~served)
        if not len(waiting):
            break
        k = int(waiting[0])
        chosen.append(k)
        served |= inside_windows(b, corners[k : k + 1], sides[k : k + 1])[:, 0]
        served[k] = True
    return corners[chosen].reshape(-1, 2), sides[chosen]


def _window_scale(window: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    if scale is None:
        return np.ones((len(window), 1), np.float32)
    return np.asarray(scale, np.float32)[np.asarray(window, np.int64)][:, None]


def crops_to_frame(xyxy: np.ndarray, corners: np.ndarray, window: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """(N, 4) crop-pixel boxes, (K, 2) corners, (N,) window index of each box -> (N, 4) float32 frame boxes.
    `scale`: (K,) frame pixels per crop pixel of each window (its side / the tile's; default 1)."""
    c = np.asarray(corners, np.float32)[np.asarray(window, np.int64)]
    return np.asarray(xyxy, np.float32) * _window_scale(window, scale) + np.concatenate([c, c], axis=1)


def frame_to_crops(xyxy: np.ndarray, corners: np.ndarray, window: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `crops_to_frame`: (N, 4) frame boxes -> (N, 4) float32 boxes in their crop's pixels."""
    c = np.asarray(corners, np.float32)[np.asarray(window, np.int64)]
    return (np.asarray(xyxy, np.float32) - np.concatenate([c, c], axis=1)) / _window_scale(window, scale)


def cut_by_window(
    xyxy: np.ndarray,
    corners: np.ndarray,
    window: np.ndarray,
    side: int | np.ndarray,
    frame_size: tuple[int, int],
    tol: float | np.ndarray,
) -> np.ndarray:
    """(N, 4) frame boxes found in window `window` (N,) -> (N,) bool: a side lies within `tol` (frame pixels;
    one for all or (N,)) of one of that window's edges that is not the frame's edge (the crop cut the object).
    `side`: the windows' side in frame pixels, one for all or (K,)."""
    w_index = np.asarray(window, np.int64)
    local = frame_to_crops(xyxy, corners, w_index).astype(np.float64)
    c = np.asarray(corners, np.int64)[w_index]
    s = np.broadcast_to(np.asarray(side, np.int64), (len(np.asarray(corners).reshape(-1, 2)),))[w_index]
    w, h = frame_size
    left = (c[:, 0] > 0) & (local[:, 0] <= tol)
    top = (c[:, 1] > 0) & (local[:, 1] <= tol)
    right = (c[:, 0] + s < w) & (local[:, 2] >= s - tol)
    bottom = (c[:, 1] + s < h) & (local[:, 3] >= s - tol)
    return left | top | right | bottom


def _segments(starts: np.ndarray, lo: int, length: int) -> list[tuple[int, int, int, int]]:
    """Split the frame interval [lo, lo + length) by the tile that serves each pixel (the last tile starting
    at or before it): (tile number on this axis, first pixel in the tile, first pixel in the crop, pixels)."""
    first = int(np.searchsorted(starts, lo, side="right")) - 1
    out = []
    pos = lo
    for k in range(first, len(starts)):
        if pos >= lo + length:
            break
        end = lo + length if k + 1 == len(starts) else min(lo + length, int(starts[k + 1]))
        if end > pos:
            out.append((k, pos - int(starts[k]), pos - lo, end - pos))
            pos = end
    return out


def _read_window(batch: Any, grid: TileGrid, x0: int, y0: int, side: int, out: Any) -> None:
    """Frame pixels [y0, y0 + side) × [x0, x0 + side) from the tile batch into `out` (side, side, C)."""
    for row, ty, oy, h in _segments(grid.y_starts, y0, side):
        for col, tx, ox, w in _segments(grid.x_starts, x0, side):
            out[oy : oy + h, ox : ox + w] = batch[row * grid.cols + col, ty : ty + h, tx : tx + w]


def _downscale(window: Any, size: int) -> Any:
    """(S, S, C) uint8 window -> (size, size, C) by area interpolation; numpy (OpenCV) or a torch tensor."""
    if isinstance(window, np.ndarray):
        import cv2

        return cv2.resize(window, (size, size), interpolation=cv2.INTER_AREA)
    import torch

    chw = window.permute(2, 0, 1)[None].float()
    small = torch.nn.functional.interpolate(chw, size=(size, size), mode="area")
    return small[0].permute(1, 2, 0).round().clamp(0, 255).to(window.dtype)


def gather_crops(batch: Any, grid: TileGrid, corners: np.ndarray, sides: np.ndarray | None = None) -> Any:
    """(num_slots, T, T, 3) tile batch, (K, 2) window corners -> (K, T, T, 3) crops of the frame.

    Frame pixel (y, x) is read from the last tile starting at or before it on each axis (every
    grid covers its frame), so a tile-sized crop equals `frame[y0:y0+T, x0:x0+T]`. Each window is
    assembled from the few rectangles of tiles it covers (2×2 on the default grid), block copies only:
    a loop over windows and their tile pieces, never over pixels or boxes. A window with a side S > T
    (`sides`, default T for all) is read whole and downscaled to T×T (area interpolation). The batch
    may be a numpy array or a torch tensor (the crops are then a tensor on its device).
    """
    t = grid.tile_size
    c = np.asarray(corners, np.int64).reshape(-1, 2)
    s = np.full(len(c), t, np.int64) if sides is None else np.asarray(sides, np.int64)
    out = _empty_like(batch, (len(c), t, t, batch.shape[-1]))
    for k, ((x0, y0), side) in enumerate(zip(c.tolist(), s.tolist(), strict=True)):
        if side == t:
            _read_window(batch, grid, x0, y0, t, out[k])
            continue
        big = _empty_like(batch, (side, side, batch.shape[-1]))
        _read_window(batch, grid, x0, y0, side, big)
        out[k] = _downscale(big, t)
    return out


def _empty_like(batch: Any, shape: tuple[int, ...]) -> Any:
    """An uninitialised array of `shape` with the batch's dtype: numpy, or a tensor on the batch's device."""
    return np.empty(shape, batch.dtype) if isinstance(batch, np.ndarray) else batch.new_empty(shape)


def covered_share(piece: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Row-wise (K, 4), (K, 4) -> (K,): the share of each piece's area inside its cover (0 for an empty piece)."""
    lt = np.maximum(piece[:, :2], cover[:, :2])
    rb = np.minimum(piece[:, 2:], cover[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    area = box_area(piece)
    return np.divide(wh[:, 0] * wh[:, 1], area, out=np.zeros(len(piece), np.float64), where=area > 0)


def replace_pieces(
    first: Detections, crops: Detections, replaceable: np.ndarray, config: SecondLookConfig, cell: float = 300.0
) -> Detections:
    """Frame boxes of the first call (N) and of the crops (M; tile_index = crop window) -> one set.

    A crop box replaces the `replaceable` (N,) first boxes of its class whose area it covers by at
    least `config.cover_threshold`, when it scores at least `config.replace_min_ratio` × theirs.
    Then boxes of one class from different views (the first call, each crop) overlapping by IoU >
    `config.nms_iou` are one object: the best scoring stays (NMS). Crop boxes leave with
    tile_index -1 (no tile of the grid); first boxes keep theirs. Returns best score first.
    `cell`: spatial hash cell of the pair search, pixels.
    """
    if not len(crops):
        return first
    n = len(first)
    # views ride in tile_index through the NMS: first boxes keep theirs (>= -1), crop k is -(2 + k)
    tagged = Detections(crops.xyxy, crops.score, crops.class_id, -2 - crops.tile_index.astype(np.int64))
    both = Detections.merge([first, tagged])
    i, j = box_pairs(both.xyxy, both.class_id, cell)
    cross = (i < n) != (j < n)
    piece, cover = np.where(i < n, i, j)[cross], np.where(i < n, j, i)[cross]
    share = covered_share(both.xyxy[piece].astype(np.float64), both.xyxy[cover].astype(np.float64))
    replaced = (
        replaceable[piece]
        & (share >= config.cover_threshold)
        & (both.score[cover] >= config.replace_min_ratio * both.score[piece])
    )
    gone = np.zeros(len(both), bool)
    gone[piece[replaced]] = True
    d = both[~gone]
    view = np.where(d.tile_index <= -2, d.tile_index, FIRST_VIEW)
    i, j = box_pairs(d.xyxy, d.class_id, cell)
    other = view[i] != view[j]
    i, j = i[other], j[other]
    same = paired_overlap(d.xyxy[i], d.xyxy[j], "iou") > config.nms_iou
    out = fuse_matches(d, i[same], j[same], StitchConfig(), fuse=False)  # fuse=False: NMS, no fusion setting read
    return Detections(out.xyxy, out.score, out.class_id, np.maximum(out.tile_index, -1))


def second_look(
    first: Detections,
    batch: Any,
    grid: TileGrid,
    detect: Callable[[Any], Detections],
    config: SecondLookConfig,
    tol: float,
) -> Detections:
    """Stitched frame detections of the first call -> the same with cut objects looked at again.

    first: (N,) frame boxes (`stitch.stitch` of the first call); batch: that call's tile batch
    (numpy or device tensor); detect: crops (K, T, T, 3) -> Detections in crop pixels with
    tile_index = crop; tol: pixels within which a side lies on a tile or crop edge.
    One detector call of K <= config.max_crops crops; no call when nothing is cut.
    """
    if not config.enabled or not len(first):
        return first
    frame_size = (grid.frame_width, grid.frame_height)
    side = grid.tile_size
    cut = cut_boxes(first.xyxy, grid, tol)
    asking = cut & (first.score >= config.min_score)
    if not asking.any():
        return first
    corners, sides = choose_windows(
        first.xyxy[asking], first.score[asking], frame_size, side, config.max_crops, config.max_zoom, config.zoom_margin
    )
    if not len(corners):
        return first
    found = detect(gather_crops(batch, grid, corners, sides))
    found = found[(found.tile_index >= 0) & (found.tile_index < len(corners))]
    scale = sides / side  # frame pixels per crop pixel of each window
    xyxy = crops_to_frame(found.xyxy, corners, found.tile_index, scale)
    whole = ~cut_by_window(xyxy, corners, found.tile_index, sides, frame_size, tol * scale[found.tile_index])
    crops = Detections(xyxy, found.score, found.class_id, found.tile_index)[whole]
    return replace_pieces(first, crops, cut, config, float(side))
