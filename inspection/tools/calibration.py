"""Real tiles for INT8 calibration, from image files.

`tile_batches_from_images`: line frames (of the grid's frame size) are cut into their tiles,
any other image is resized to one tile (as the tile-level COCO evaluation sees it). The tiles
feed `quantize.TileCalibrationReader`, which calibrates the QDQ graphs onnxruntime and TensorRT
both run (TensorRT's implicit-quantization calibrators are deprecated since TensorRT 10.1 and
removed in 11: INT8 engines are built from the QDQ graph instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..tiling import TileGrid


def tile_batches_from_images(paths: Iterable[str | Path], grid: TileGrid, images_per_batch: int = 8) -> Iterator[np.ndarray]:
    """Real tiles from image files: an image of the grid's frame size is cut into its tiles (blank
    padding tiles left out), any other image is resized to one tile (as the tile-level COCO
    evaluation sees it). Yields (n, T, T, 3) uint8 RGB batches; unreadable files raise."""
    t = grid.tile_size
    pending: list[np.ndarray] = []
    images = 0
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"calibration image {path} could not be read (not an image, or missing)")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] == (grid.frame_height, grid.frame_width):
            pending.append(grid.tiles(rgb)[: grid.num_tiles].copy())
        else:
            pending.append(cv2.resize(rgb, (t, t), interpolation=cv2.INTER_AREA)[None])
        images += 1
        if images >= images_per_batch:
            yield np.concatenate(pending)
            pending, images = [], 0
    if pending:
        yield np.concatenate(pending)
