"""Line-size scenes with exact ground truth: seeded, scaled, off-grid COCO images on one frame.

A mosaic (synthetic.compose) puts one image in each 300×300 tile, so no object crosses a tile
border. A real 2700×2100 line frame is one scene whose parts straddle the 9×7 grid. A scene here
is a frame of the grid's size holding a few dataset images, each scaled by a factor drawn from
`scale_range` (×1.5–3 by default) and placed at a random pixel position (off the tile grid),
without overlapping another image (so no object is occluded and the ground truth is exact).

Rules (also in the GT JSON's `info`):
- Scene i of seed s draws from `numpy.random.default_rng([s, i])`: scene i is the same whatever
  the number of scenes. Up to `max_images` images are tried; each gets a scale, then up to
  `placement_tries` random positions inside the frame until one does not overlap a placed image
  (an image larger than the frame is cropped at the right/bottom edge).
- Pixels: `cv2.resize(image, (round(w·s), round(h·s)), INTER_LINEAR)` pasted at (x, y) on a
  grey (114) background. Boxes: xywh · s + (x, y), clipped to the visible part of the image.
  Area = COCO area · s² · (clipped box area / unclipped box area). Boxes thinner than
  `MIN_BOX_SIDE_PX` after clipping are dropped. Crowd annotations keep `iscrowd=1`.
- `crosses_border` (per annotation, non-standard key): the box straddles an interior line of the
  grid (x = k·stride or y = k·stride strictly inside it), i.e. no single tile of the default
  non-overlapping grid holds the whole object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inspection.tiling import TileGrid

from .coco import CocoDataset

MIN_BOX_SIDE_PX = 1.0
BACKGROUND = 114


# ----------------------------------------------------------------------------- box transforms


def scale_boxes(xyxy: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """(N, 4) xyxy · scale (a scalar or (N,) per box) -> (N, 4) float64."""
    s = np.asarray(scale, np.float64)
    return np.asarray(xyxy, np.float64) * (s[..., None] if s.ndim else s)


def translate_boxes(xyxy: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray) -> np.ndarray:
    """(N, 4) xyxy + (dx, dy) (scalars or (N,) per box) -> (N, 4) float64."""
    b = np.asarray(xyxy, np.float64).copy()
    dx, dy = np.asarray(dx, np.float64), np.asarray(dy, np.float64)
    b[:, 0::2] += dx[..., None] if dx.ndim else dx
    b[:, 1::2] += dy[..., None] if dy.ndim else dy
    return b


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    b = np.asarray(xywh, np.float64)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    b = np.asarray(xyxy, np.float64)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def crosses_grid_lines(xyxy: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, 4) frame boxes -> (N,) bool: an interior tile border lies strictly inside the box.

    Borders are the starts of the grid's tiles after the first (x_starts[1:], y_starts[1:]).
    """
    b = np.asarray(xyxy, np.float64)
    xs = grid.x_starts[1:].astype(np.float64)
    ys = grid.y_starts[1:].astype(np.float64)
    # a line k crosses (lo, hi) iff lo < line_k < hi: count lines below hi minus lines at or below lo
    x_cross = np.searchsorted(xs, b[:, 2], side="left") - np.searchsorted(xs, b[:, 0], side="right") > 0
    y_cross = np.searchsorted(ys, b[:, 3], side="left") - np.searchsorted(ys, b[:, 1], side="right") > 0
    return x_cross | y_cross


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Placement:
    """One image in a scene: dataset id, scale, top-left corner and pasted size (frame pixels)."""

    image_id: int
    scale: float
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class SceneLayout:
    """Where the images of one scene go."""

    placements: tuple[Placement, ...]


def _overlaps(rect: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def plan_scene(
    dataset: CocoDataset,
    frame_size: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (1.5, 3.0),
    max_images: int = 6,
    placement_tries: int = 40,
) -> SceneLayout:
    """Draw a scene's images, scales and non-overlapping positions (see the module rules)."""
    width, height = frame_size
    ids = dataset.image_ids
    placed: list[Placement] = []
    rects: list[tuple[int, int, int, int]] = []
    for _ in range(max_images):
        image_id = int(ids[rng.integers(len(ids))])
        info = dataset.image_info(image_id)
        scale = float(rng.uniform(*scale_range))
        w, h = max(1, round(info.width * scale)), max(1, round(info.height * scale))
        for _ in range(placement_tries):
            x = int(rng.integers(0, max(width - w, 0) + 1))
            y = int(rng.integers(0, max(height - h, 0) + 1))
            rect = (x, y, min(x + w, width), min(y + h, height))
            if not _overlaps(rect, rects):
                placed.append(Placement(image_id, scale, x, y, w, h))
                rects.append(rect)
                break
    return SceneLayout(tuple(placed))


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scenes:
    """Planned scenes with frame-level COCO ground truth; pixels are rendered on demand.

    gt: COCO dict, image ids 1..N, each annotation with `crosses_border` (bool).
    """

    dataset: CocoDataset
    grid: TileGrid
    seed: int
    layouts: tuple[SceneLayout, ...]
    gt: dict[str, Any]
    frame_ids: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.layouts)

    @property
    def num_objects(self) -> int:
        return sum(1 for a in self.gt["annotations"] if not a["iscrowd"])

    @property
    def num_crossing(self) -> int:
        return sum(1 for a in self.gt["annotations"] if not a["iscrowd"] and a["crosses_border"])

    @property
    def crossing_share(self) -> float:
        """Share of (non-crowd) objects that cross a tile border of the grid."""
        return self.num_crossing / max(self.num_objects, 1)

    def frame(self, index: int) -> np.ndarray:
        """Scene `index` as a (H, W, 3) uint8 RGB frame of the grid's size."""
        frame = np.full((self.grid.frame_height, self.grid.frame_width, 3), BACKGROUND, np.uint8)
        for p in self.layouts[index].placements:
            image = cv2.resize(self.dataset.load_image(p.image_id), (p.width, p.height), interpolation=cv2.INTER_LINEAR)
            h = min(p.height, self.grid.frame_height - p.y)
            w = min(p.width, self.grid.frame_width - p.x)
            frame[p.y : p.y + h, p.x : p.x + w] = image[:h, :w]
        return frame

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.frame(i)

    def summary(self) -> dict[str, Any]:
        return {
            "scenes": len(self),
            "seed": self.seed,
            "images": sum(len(s.placements) for s in self.layouts),
            "objects": self.num_objects,
            "crossing": self.num_crossing,
            "crossing_share": round(self.crossing_share, 4),
        }


def _place_annotations(dataset: CocoDataset, layout: SceneLayout, frame_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Every annotation of the scene's images in frame pixels (arrays), degenerate boxes dropped."""
    parts = [(p, dataset.annotations_for(p.image_id)) for p in layout.placements]
    parts = [(p, a) for p, a in parts if len(a)]
    if not parts:
        return {
            "xyxy": np.zeros((0, 4)),
            "category_id": np.zeros(0, np.int64),
            "iscrowd": np.zeros(0, np.int64),
            "area": np.zeros(0),
            "source_id": np.zeros(0, np.int64),
        }
    scale = np.concatenate([np.full(len(a), p.scale) for p, a in parts])
    dx = np.concatenate([np.full(len(a), p.x, np.float64) for p, a in parts])
    dy = np.concatenate([np.full(len(a), p.y, np.float64) for p, a in parts])
    visible = np.concatenate(
        [
            np.tile([p.x, p.y, min(p.x + p.width, frame_size[0]), min(p.y + p.height, frame_size[1])], (len(a), 1))
            for p, a in parts
        ]
    ).astype(np.float64)
    raw = translate_boxes(scale_boxes(xywh_to_xyxy(np.concatenate([a.bbox for _, a in parts])), scale), dx, dy)
    clipped = np.stack(
        [
            np.clip(raw[:, 0], visible[:, 0], visible[:, 2]),
            np.clip(raw[:, 1], visible[:, 1], visible[:, 3]),
            np.clip(raw[:, 2], visible[:, 0], visible[:, 2]),
            np.clip(raw[:, 3], visible[:, 1], visible[:, 3]),
        ],
        axis=1,
    )
    wh_raw = np.clip(raw[:, 2:] - raw[:, :2], 0, None)
    wh = clipped[:, 2:] - clipped[:, :2]
    kept_fraction = np.divide(
        wh[:, 0] * wh[:, 1], wh_raw[:, 0] * wh_raw[:, 1], out=np.zeros(len(wh)), where=wh_raw[:, 0] * wh_raw[:, 1] > 0
    )
    area = np.concatenate([a.area for _, a in parts]).astype(np.float64) * scale**2 * kept_fraction
    keep = (wh[:, 0] >= MIN_BOX_SIDE_PX) & (wh[:, 1] >= MIN_BOX_SIDE_PX)
    return {
        "xyxy": clipped[keep],
        "category_id": np.concatenate([a.category_id for _, a in parts])[keep].astype(np.int64),
        "iscrowd": np.concatenate([a.iscrowd for _, a in parts])[keep].astype(np.int64),
        "area": area[keep],
        "source_id": np.concatenate([a.ann_id for _, a in parts])[keep].astype(np.int64),
    }


def compose_scenes(
    dataset: CocoDataset,
    grid: TileGrid,
    num_scenes: int,
    seed: int = 0,
    *,
    scale_range: tuple[float, float] = (1.5, 3.0),
    max_images: int = 6,
    placement_tries: int = 40,
) -> Scenes:
    """Plan `num_scenes` scenes of `dataset` on frames of `grid`'s size and build their ground truth."""
    if num_scenes <= 0:
        raise ValueError(f"num_scenes must be positive, got {num_scenes}")
    if len(dataset) == 0:
        raise ValueError("dataset has no images; nothing to compose")
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
    frame_size = (grid.frame_width, grid.frame_height)
    layouts = tuple(
        plan_scene(
            dataset,
            frame_size,
            np.random.default_rng([seed, i]),
            scale_range=scale_range,
            max_images=max_images,
            placement_tries=placement_tries,
        )
        for i in range(num_scenes)
    )
    frame_ids = np.arange(1, num_scenes + 1, dtype=np.int64)
    annotations: list[dict[str, Any]] = []
    for fid, layout in zip(frame_ids.tolist(), layouts):
        boxes = _place_annotations(dataset, layout, frame_size)
        crossing = crosses_grid_lines(boxes["xyxy"], grid)
        for box, cat, crowd, area, src, cross in zip(
            xyxy_to_xywh(boxes["xyxy"]).tolist(),
            boxes["category_id"].tolist(),
            boxes["iscrowd"].tolist(),
            boxes["area"].tolist(),
            boxes["source_id"].tolist(),
            crossing.tolist(),
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": fid,
                    "bbox": box,
                    "area": area,
                    "category_id": cat,
                    "iscrowd": crowd,
                    "source_id": src,
                    "crosses_border": cross,
                }
            )
    images = [
        {
            "id": fid,
            "file_name": f"scene_{seed}_{fid:04d}.jpg",
            "width": grid.frame_width,
            "height": grid.frame_height,
            "placements": [{"image_id": p.image_id, "scale": p.scale, "x": p.x, "y": p.y} for p in layout.placements],
        }
        for fid, layout in zip(frame_ids.tolist(), layouts)
    ]
    info = {
        "description": "line-size scenes composed by synthetic.scenes",
        "seed": int(seed),
        "scale_range": [float(lo), float(hi)],
        "max_images": max_images,
        "grid": {
            "frame_width": grid.frame_width,
            "frame_height": grid.frame_height,
            "tile_size": grid.tile_size,
            "overlap": grid.overlap,
        },
        "min_box_side_px": MIN_BOX_SIDE_PX,
    }
    gt = {"info": info, "images": images, "annotations": annotations, "categories": [dict(c) for c in dataset.categories]}
    return Scenes(dataset, grid, int(seed), layouts, gt, frame_ids)
