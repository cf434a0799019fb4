"""Mosaic frames with ground truth, composed from any COCO-format dataset.

Each tile of a frame is one dataset image fitted to the tile the way SSD's own preprocessor
does: a plain, aspect-distorting `cv2.resize(..., INTER_LINEAR)` of the RGB image to T×T
(`letterbox=True` instead keeps the aspect ratio, scales the long side to T and centres the
image on a zero background). The detector therefore sees each image exactly as it would in a
tile-by-tile COCO evaluation, so tile-level and stitched frame-level mAP are comparable.

Rules (also in the GT JSON's `info`):
- Slot assignment: a seeded permutation (`numpy.random.default_rng(seed)`) of the image ids in
  ascending order; images fill frames row-major, slot j of frame f holds permutation[f*K + j]
  (K = tiles per frame). frames = ceil(N / K); the last frame's unused slots are blank (zero)
  tiles, so every source image appears exactly once and scores are not double-counted.
  Blank slots are still tile images of the tile GT (without annotations): detections there
  count as false positives at both levels, as they do in the stitched frame.
- Boxes: xywh scaled by (sx, sy) = (fitted width / image width, fitted height / image height),
  offset by the letterbox padding, clipped to the fitted image, then offset by the tile origin
  (`TileGrid.origins`) for the frame GT. Area = original area · sx · sy.
- Degenerate boxes: an annotation is dropped when its clipped width or height in tile pixels is
  below `MIN_BOX_SIDE_PX` (1 px): a box thinner than a pixel cannot be matched by any detector
  output and COCO would count it as a miss forever.
- Crowd annotations are kept with `iscrowd=1`; COCO evaluation ignores detections matching them.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inspection.tiling import TileGrid

from .coco import CocoDataset

MIN_BOX_SIDE_PX = 1.0


# ----------------------------------------------------------------------------- tile geometry


@dataclass(frozen=True)
class TileFit:
    """How images of given sizes are fitted into a T×T tile (arrays, one entry per image).

    new_w, new_h: (N,) int64 size of the resized image; offset_x, offset_y: (N,) int64 where it
    is placed in the tile; scale_x, scale_y: (N,) float64 = new size / original size.
    """

    new_w: np.ndarray
    new_h: np.ndarray
    offset_x: np.ndarray
    offset_y: np.ndarray
    scale_x: np.ndarray
    scale_y: np.ndarray


def tile_fit(width: np.ndarray | int, height: np.ndarray | int, tile_size: int, letterbox: bool = False) -> TileFit:
    """Geometry of fitting (N,) images of `width`×`height` into a tile (plain resize or letterbox).

    Letterbox: long side scaled to `tile_size`, short side rounded half up, image centred
    (offsets floor((T - new) / 2)), the rest of the tile zero.
    """
    w = np.atleast_1d(np.asarray(width, np.int64))
    h = np.atleast_1d(np.asarray(height, np.int64))
    if np.any(w <= 0) or np.any(h <= 0):
        raise ValueError(f"image sizes must be positive, got widths {w.min()}.. heights {h.min()}..")
    if letterbox:
        s = tile_size / np.maximum(w, h)
        new_w = np.clip(np.floor(w * s + 0.5).astype(np.int64), 1, tile_size)
        new_h = np.clip(np.floor(h * s + 0.5).astype(np.int64), 1, tile_size)
    else:
        new_w = np.full_like(w, tile_size)
        new_h = np.full_like(h, tile_size)
    return TileFit(new_w, new_h, (tile_size - new_w) // 2, (tile_size - new_h) // 2, new_w / w, new_h / h)


def fit_to_tile(image: np.ndarray, tile_size: int, letterbox: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 image -> (T, T, 3) tile, resized with cv2.INTER_LINEAR as `tile_fit` says.

    `out` (a (T, T, 3) uint8 slot of a batch) is written in place when given.
    """
    h, w = image.shape[:2]
    fit = tile_fit(w, h, tile_size, letterbox)
    nw, nh, ox, oy = int(fit.new_w[0]), int(fit.new_h[0]), int(fit.offset_x[0]), int(fit.offset_y[0])
    tile = np.zeros((tile_size, tile_size, 3), np.uint8) if out is None else out
    if letterbox:
        tile[...] = 0
    tile[oy : oy + nh, ox : ox + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return tile


def check_mosaic_grid(grid: TileGrid) -> None:
    """Mosaics place one image per tile: the grid must tile the frame exactly, without overlap."""
    if grid.overlap or grid.cols * grid.tile_size != grid.frame_width or grid.rows * grid.tile_size != grid.frame_height:
        raise ValueError(
            f"mosaic frames need a non-overlapping grid that covers the frame exactly; got a "
            f"{grid.frame_width}×{grid.frame_height} frame, tile {grid.tile_size}, overlap {grid.overlap} "
            "(configs: grid.overlap=0 and grid.frame_width/frame_height multiples of grid.tile_size)"
        )


def _render_tiles(dataset: CocoDataset, image_ids: np.ndarray, grid: TileGrid, letterbox: bool, batch: np.ndarray) -> np.ndarray:
    """Fill batch[j] with image image_ids[j] fitted to the tile (id < 0: blank); zero the rest."""
    batch[len(image_ids) :] = 0
    for slot, image_id in enumerate(image_ids.tolist()):
        if image_id < 0:
            batch[slot] = 0
        else:
            fit_to_tile(dataset.load_image(image_id), grid.tile_size, letterbox, out=batch[slot])
    return batch


# ----------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class _PlacedBoxes:
    """All kept annotations of a mosaic set, in tile pixels (arrays of M)."""

    slot: np.ndarray  # (M,) global slot = frame_index * K + tile_index
    xywh: np.ndarray  # (M, 4) float64 tile pixels
    category_id: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray  # float64, scaled
    source_ann_id: np.ndarray
    dropped: int


def _place_annotations(dataset: CocoDataset, slot_image_ids: np.ndarray, tile_size: int, letterbox: bool) -> _PlacedBoxes:
    """Transform every annotation of the images in `slot_image_ids` (flat, -1 = blank) to tile pixels."""
    slots = np.flatnonzero(slot_image_ids >= 0)
    parts = [(s, dataset.annotations_for(int(slot_image_ids[s]))) for s in slots]
    parts = [(s, a) for s, a in parts if len(a)]
    if not parts:
        z = np.zeros((0,), np.int64)
        return _PlacedBoxes(z, np.zeros((0, 4)), z.astype(np.int32), z.astype(np.int8), np.zeros((0,)), z, 0)
    slot = np.concatenate([np.full(len(a), s, np.int64) for s, a in parts])
    xywh = np.concatenate([a.bbox for _, a in parts]).astype(np.float64)
    cat = np.concatenate([a.category_id for _, a in parts])
    crowd = np.concatenate([a.iscrowd for _, a in parts])
    area = np.concatenate([a.area for _, a in parts]).astype(np.float64)
    ann_id = np.concatenate([a.ann_id for _, a in parts])

    infos = [dataset.image_info(int(i)) for i in slot_image_ids[slots]]
    fit = tile_fit([i.width for i in infos], [i.height for i in infos], tile_size, letterbox)
    # per-annotation index into `slots` / `fit`
    k = np.searchsorted(slots, slot)
    sx, sy = fit.scale_x[k], fit.scale_y[k]
    ox, oy = fit.offset_x[k].astype(np.float64), fit.offset_y[k].astype(np.float64)
    x1 = np.clip(xywh[:, 0] * sx + ox, ox, ox + fit.new_w[k])
    y1 = np.clip(xywh[:, 1] * sy + oy, oy, oy + fit.new_h[k])
    x2 = np.clip((xywh[:, 0] + xywh[:, 2]) * sx + ox, ox, ox + fit.new_w[k])
    y2 = np.clip((xywh[:, 1] + xywh[:, 3]) * sy + oy, oy, oy + fit.new_h[k])
    boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    keep = (boxes[:, 2] >= MIN_BOX_SIDE_PX) & (boxes[:, 3] >= MIN_BOX_SIDE_PX)
    return _PlacedBoxes(slot[keep], boxes[keep], cat[keep], crowd[keep], (area * sx * sy)[keep], ann_id[keep], int((~keep).sum()))


def _annotation_dicts(ids: np.ndarray, image_ids: np.ndarray, xywh: np.ndarray, boxes: _PlacedBoxes) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "image_id": im,
            "bbox": b,
            "area": a,
            "category_id": c,
            "iscrowd": cr,
            "source_id": s,
        }
        for i, im, b, a, c, cr, s in zip(
            ids.tolist(),
            image_ids.tolist(),
            xywh.tolist(),
            boxes.area.tolist(),
            boxes.category_id.tolist(),
            boxes.iscrowd.tolist(),
            boxes.source_ann_id.tolist(),
        )
    ]


# ----------------------------------------------------------------------------- mosaics


class MosaicFrames(Sequence[np.ndarray]):
    """Lazily composed frames: `frames[i]` loads, fits and places frame i's images on demand."""

    def __init__(self, mosaics: Mosaics) -> None:
        self._m = mosaics

    def __len__(self) -> int:
        return len(self._m.frame_ids)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return self._m.frame(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        batch = self._m.grid.new_batch()
        for f in range(len(self)):
            yield self._m.grid.untile(self._m.tile_batch(f, out=batch))


@dataclass(frozen=True)
class Mosaics:
    """Composed mosaic frames with frame-level and tile-level COCO ground truth.

    source_image_ids: (F, K) int64 dataset image id in each tile slot, -1 for a blank slot.
    tile_image_ids: (F, K) int64 image id of each tile in `tile_gt` (blank slots included).
    frame_ids: (F,) int64 image id of each frame in `frame_gt`.
    """

    dataset: CocoDataset
    grid: TileGrid
    seed: int
    letterbox: bool
    source_image_ids: np.ndarray
    tile_image_ids: np.ndarray
    frame_ids: np.ndarray
    frame_gt: dict[str, Any]
    tile_gt: dict[str, Any]
    dropped_annotations: int
    frames: MosaicFrames = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", MosaicFrames(self))

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    @property
    def num_images(self) -> int:
        return int((self.source_image_ids >= 0).sum())

    def frame_index(self, frame_id: int) -> int:
        index = int(frame_id) - int(self.frame_ids[0]) if len(self.frame_ids) else -1
        if not 0 <= index < len(self.frame_ids):
            raise KeyError(f"frame id {frame_id} is not one of the {len(self.frame_ids)} mosaic frames")
        return index

    def tile_batch(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame `index` (0-based) as a (batch_size, T, T, 3) uint8 batch, blank slots and padding zero."""
        batch = self.grid.new_batch() if out is None else out
        return _render_tiles(self.dataset, self.source_image_ids[index], self.grid, self.letterbox, batch)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` (0-based, negative allowed) as (H, W, 3) uint8 RGB."""
        n = len(self.frame_ids)
        if not -n <= index < n:
            raise IndexError(f"frame index {index} outside 0..{n - 1}")
        return self.grid.untile(self.tile_batch(index % n))


def _permutation(dataset: CocoDataset, seed: int) -> np.ndarray:
    return dataset.image_ids[np.random.default_rng(seed).permutation(len(dataset))]


def compose_mosaics(
    dataset: CocoDataset, grid: TileGrid, seed: int = 0, letterbox: bool = False, limit: int | None = None
) -> Mosaics:
    """Plan mosaic frames of `dataset` on `grid` and build their ground truth (images load lazily).

    `limit` keeps the first `limit` images of the seeded permutation (a fast subset).
    See the module docstring for the slot, box and degenerate-box rules.
    """
    check_mosaic_grid(grid)
    if len(dataset) == 0:
        raise ValueError("dataset has no images; nothing to compose")
    order = _permutation(dataset, seed)
    if limit is not None:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        order = order[:limit]
    k = grid.num_tiles
    n_frames = -(-len(order) // k)
    slots = np.full(n_frames * k, -1, np.int64)
    slots[: len(order)] = order
    source = slots.reshape(n_frames, k)
    frame_ids = np.arange(1, n_frames + 1, dtype=np.int64)
    tile_ids = np.arange(1, n_frames * k + 1, dtype=np.int64).reshape(n_frames, k)

    placed = _place_annotations(dataset, slots, grid.tile_size, letterbox)
    frame_of = placed.slot // k
    tile_of = placed.slot % k
    frame_xywh = placed.xywh.copy()
    frame_xywh[:, :2] += grid.origins[tile_of]
    ann_ids = np.arange(1, len(placed.slot) + 1, dtype=np.int64)

    info = {
        "description": "mosaic frames composed by synthetic.compose",
        "seed": int(seed),
        "letterbox": bool(letterbox),
        "grid": {"frame_width": grid.frame_width, "frame_height": grid.frame_height, "tile_size": grid.tile_size},
        "tiles_per_frame": k,
        "images": int(len(order)),
        "fill": "blank",
        "min_box_side_px": MIN_BOX_SIDE_PX,
        "dropped_annotations": placed.dropped,
    }
    categories = [dict(c) for c in dataset.categories]
    frame_images = [
        {
            "id": int(fid),
            "file_name": f"frame_{fid:05d}.jpg",
            "width": grid.frame_width,
            "height": grid.frame_height,
            "source_image_ids": source[i].tolist(),
        }
        for i, fid in enumerate(frame_ids.tolist())
    ]
    file_names = {im.id: im.file_name for im in dataset.images}
    tile_images = [
        {
            "id": tid,
            "file_name": f"frame_{fid:05d}_tile_{t:02d}.png",
            "width": grid.tile_size,
            "height": grid.tile_size,
            "frame_id": fid,
            "tile_index": t,
            "source_image_id": sid,
            "source_file_name": file_names.get(sid, ""),
        }
        for tid, fid, t, sid in zip(
            tile_ids.ravel().tolist(),
            np.repeat(frame_ids, k).tolist(),
            np.tile(np.arange(k), n_frames).tolist(),
            slots.tolist(),
        )
    ]
    frame_gt = {
        "info": info,
        "images": frame_images,
        "annotations": _annotation_dicts(ann_ids, frame_ids[frame_of], frame_xywh, placed),
        "categories": categories,
    }
    tile_gt = {
        "info": dict(info),
        "images": tile_images,
        "annotations": _annotation_dicts(ann_ids, tile_ids.ravel()[placed.slot], placed.xywh, placed),
        "categories": copy.deepcopy(categories),
    }
    return Mosaics(dataset, grid, int(seed), bool(letterbox), source, tile_ids, frame_ids, frame_gt, tile_gt, placed.dropped)


# ----------------------------------------------------------------------------- line source


class MosaicFrameSource:
    """Line frame source over a dataset: (car, camera, shot) -> a full mosaic frame, deterministic.

    Frame number n = (car·cameras + camera)·shots_per_camera + shot; slot j of frame n holds
    permutation[(n·K + j) mod N], cycling over the seeded permutation so every frame is full.
    Fitted tiles are kept in a bounded LRU cache (`cache_tiles` entries, ~270 kB each).
    """

    def __init__(
        self,
        dataset: CocoDataset,
        grid: TileGrid,
        *,
        seed: int = 0,
        letterbox: bool = False,
        cameras: int = 5,
        shots_per_camera: int = 19,
        cache_tiles: int = 256,
    ) -> None:
        check_mosaic_grid(grid)
        if len(dataset) == 0:
            raise ValueError("dataset has no images; nothing to compose")
        self.dataset = dataset
        self.grid = grid
        self.letterbox = letterbox
        self.cameras = cameras
        self.shots_per_camera = shots_per_camera
        self._order = _permutation(dataset, seed)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_tiles
        self._lock = threading.Lock()

    def frame_number(self, car_index: int, camera: int, shot: int) -> int:
        if car_index < 0 or not 0 <= camera < self.cameras or not 0 <= shot < self.shots_per_camera:
            raise ValueError(
                f"car={car_index} camera={camera} shot={shot} outside the line "
                f"(cameras 0..{self.cameras - 1}, shots 0..{self.shots_per_camera - 1})"
            )
        return (car_index * self.cameras + camera) * self.shots_per_camera + shot

    def source_image_ids(self, car_index: int, camera: int, shot: int) -> np.ndarray:
        """(K,) dataset image ids placed in the frame's tiles, row-major."""
        k = self.grid.num_tiles
        n = self.frame_number(car_index, camera, shot)
        return self._order[(n * k + np.arange(k)) % len(self._order)]

    def _tile(self, image_id: int) -> np.ndarray:
        with self._lock:
            tile = self._cache.get(image_id)
            if tile is not None:
                self._cache.move_to_end(image_id)
                return tile
        tile = fit_to_tile(self.dataset.load_image(image_id), self.grid.tile_size, self.letterbox)
        with self._lock:
            self._cache[image_id] = tile
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return tile

    def __call__(self, car_index: int, camera: int, shot: int) -> np.ndarray:
        batch = self.grid.new_batch()
        for slot, image_id in enumerate(self.source_image_ids(car_index, camera, shot).tolist()):
            batch[slot] = self._tile(image_id)
        return self.grid.untile(batch)
