"""Tiles (N, T, T, 3) uint8 RGB -> the network's input tensor, as the model's metadata says."""

from __future__ import annotations

import cv2
import numpy as np

from .base import ModelSpec


def fit_tiles(tiles: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Bring tiles to the network input size: a plain resize, or padding (tile top-left) with pad_value."""
    n, th, tw = tiles.shape[:3]
    ih, iw = spec.input_size
    if (th, tw) == (ih, iw):
        return tiles
    if spec.fit == "pad":
        if th > ih or tw > iw:
            raise ValueError(f"tile {tw}×{th} is larger than {spec.name}'s input {iw}×{ih}; use fit=resize")
        out = np.full((n, ih, iw, 3), spec.pad_value, np.uint8)
        out[:, :th, :tw] = tiles
        return out
    # Resizing has no batched form in OpenCV; only models whose input differs from the tile need it.
    return np.stack([cv2.resize(t, (iw, ih), interpolation=cv2.INTER_LINEAR) for t in tiles])


def tile_scale(spec: ModelSpec, tile_hw: tuple[int, int]) -> np.ndarray:
    """Multiplier taking network-input pixel boxes (x1, y1, x2, y2) back to tile pixels."""
    ih, iw = spec.input_size
    if spec.fit == "pad":
        return np.ones(4, np.float32)
    sy, sx = tile_hw[0] / ih, tile_hw[1] / iw
    return np.array([sx, sy, sx, sy], np.float32)


def to_network_input(tiles: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(N, T, T, 3) uint8 RGB -> float32 (N, H, W, 3) or (N, 3, H, W), channel order and (x-mean)/std applied."""
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be (N, T, T, 3) uint8 RGB, got {tiles.shape} {tiles.dtype}")
    x = fit_tiles(tiles, spec)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
        shape = (1, 3, 1, 1)
    else:
        shape = (1, 1, 1, 3)
    mean = np.asarray(spec.mean, np.float32).reshape(shape)
    inv_std = (1.0 / np.asarray(spec.std, np.float32)).reshape(shape)
    out = np.empty(x.shape, np.float32)
    np.subtract(x, mean, out=out, dtype=np.float32)
    out *= inv_std
    return out
