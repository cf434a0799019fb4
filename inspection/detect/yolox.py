"""YOLOX anchor-free output decoding, vectorised over the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def yolox_grid(input_hw: tuple[int, int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell offsets (A, 2) (x, y) and per-point strides (A,) for an input size, stride order."""
    grids, point_strides = [], []
    for stride in strides:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        point_strides.append(np.full(gh * gw, stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(point_strides).astype(np.float32)


def decode_yolox(raw: np.ndarray, input_hw: tuple[int, int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, A, 5 + C) raw head output -> boxes (N, A, 4) xyxy input pixels, scores (N, A, C) = obj·cls."""
    grid, point_stride = yolox_grid(input_hw, strides)
    if raw.shape[1] != len(grid):
        raise ValueError(
            f"YOLOX output has {raw.shape[1]} points, input {input_hw} with strides {list(strides)} gives {len(grid)}"
        )
    centre = (raw[..., :2] + grid) * point_stride[:, None]
    size = np.exp(raw[..., 2:4]) * point_stride[:, None]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)
    scores = raw[..., 4:5] * raw[..., 5:]
    return boxes.astype(np.float32), scores.astype(np.float32)
