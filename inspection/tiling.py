"""Tile geometry: a frame (H, W, 3) -> a detector batch (B, T, T, 3) plus tile origins.

The default grid is 9 columns × 7 rows of 300-pixel tiles on a 2700×2100 frame, 63 tiles
padded to a batch of 64. With `global_view` the first spare slot after the tiles holds the
whole frame downscaled to T×T (a free look at objects larger than a tile; its boxes are mapped
back by `stitch.to_frame`); other spare slots stay blank (zero). With `overlap > 0`
neighbouring tiles share `overlap` pixels and the last row/column is aligned to the frame edge.
A grid with more tiles than `batch_size` is run as several detector calls of `batch_size`
(`chunks`); only the last call is short (its blank slots are not sent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .config import GridConfig
from .detections import Detections


class FrameSizeError(ValueError):
    """A frame does not match the configured grid."""


def _axis_origins(length: int, tile: int, stride: int) -> np.ndarray:
    """Start coordinates along one axis: every `stride`, the last one flush with the edge."""
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return np.asarray(starts, np.int64)


@dataclass(frozen=True)
class TileGrid:
    frame_width: int = 2700
    frame_height: int = 2100
    tile_size: int = 300
    overlap: int = 0
    batch_size: int = 64
    global_view: bool = False

    def __post_init__(self) -> None:
        if self.overlap >= self.tile_size:
            raise ValueError(f"overlap {self.overlap} must be smaller than tile size {self.tile_size}")
        if self.tile_size > min(self.frame_width, self.frame_height):
            raise ValueError(f"tile size {self.tile_size} exceeds frame {self.frame_width}×{self.frame_height}")
        if self.batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")

    @classmethod
    def from_config(cls, grid: GridConfig) -> TileGrid:
        return cls(grid.frame_width, grid.frame_height, grid.tile_size, grid.overlap, grid.batch_size, grid.global_view)

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def x_starts(self) -> np.ndarray:
        return _axis_origins(self.frame_width, self.tile_size, self.stride)

    @property
    def y_starts(self) -> np.ndarray:
        return _axis_origins(self.frame_height, self.tile_size, self.stride)

    @property
    def cols(self) -> int:
        return len(self.x_starts)

    @property
    def rows(self) -> int:
        return len(self.y_starts)

    @property
    def num_tiles(self) -> int:
        return self.rows * self.cols

    @property
    def num_slots(self) -> int:
        """Slots of the whole frame batch: tiles (+ the global view), padded to a multiple of batch_size."""
        used = self.num_tiles + int(self.global_view)
        return -(-used // self.batch_size) * self.batch_size

    @property
    def num_chunks(self) -> int:
        """Detector calls per frame (each of `batch_size` slots)."""
        return self.num_slots // self.batch_size

    @property
    def global_index(self) -> int:
        """Batch slot of the downscaled whole frame, or -1 without a global view."""
        return self.num_tiles if self.global_view else -1

    @property
    def global_scale(self) -> tuple[float, float]:
        """(sx, sy): global-view pixels -> frame pixels."""
        return self.frame_width / self.tile_size, self.frame_height / self.tile_size

    @property
    def origins(self) -> np.ndarray:
        """(num_tiles, 2) int64 (x0, y0) of each real tile, row-major: tile i = row i // cols, col i % cols."""
        ys, xs = np.meshgrid(self.y_starts, self.x_starts, indexing="ij")
        return np.stack([xs.ravel(), ys.ravel()], axis=1)

    @property
    def is_regular(self) -> bool:
        """True when every tile starts on a multiple of the stride (a pure strided view works)."""
        return bool(
            np.all(self.x_starts == np.arange(self.cols) * self.stride)
            and np.all(self.y_starts == np.arange(self.rows) * self.stride)
        )

    def check_frame(self, frame: np.ndarray, what: str = "frame") -> None:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameSizeError(f"{what} has shape {frame.shape}, expected (H, W, 3) colour image")
        h, w = frame.shape[:2]
        if (w, h) != (self.frame_width, self.frame_height):
            raise FrameSizeError(
                f"{what} is {w}×{h}, grid expects {self.frame_width}×{self.frame_height} "
                "(configs: grid.frame_width / grid.frame_height)"
            )
        if frame.dtype != np.uint8:
            raise FrameSizeError(f"{what} has dtype {frame.dtype}, expected uint8")

    def tile_view(self, frame: np.ndarray) -> np.ndarray:
        """(rows, cols, T, T, 3) read-only view of a regular grid's tiles; no copy."""
        if not self.is_regular:
            raise ValueError("tile_view needs a regular grid (overlap dividing the frame); use tiles()")
        self.check_frame(frame)
        s0, s1, s2 = frame.strides
        return as_strided(
            frame,
            shape=(self.rows, self.cols, self.tile_size, self.tile_size, 3),
            strides=(self.stride * s0, self.stride * s1, s0, s1, s2),
            writeable=False,
        )

    def new_batch(self) -> np.ndarray:
        """A zeroed (num_slots, T, T, 3) uint8 buffer; blank tiles stay zero when reused."""
        return np.zeros((self.num_slots, self.tile_size, self.tile_size, 3), np.uint8)

    def global_tile(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) frame -> (T, T, 3) whole-frame view (cv2.INTER_AREA, aspect not kept, as SSD's resize)."""
        t = self.tile_size
        small = cv2.resize(frame, (t, t), interpolation=cv2.INTER_AREA)
        if out is None:
            return small
        out[...] = small
        return out

    def tiles(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the frame's tiles into a contiguous (num_slots, T, T, 3) batch (blank slots zero).

        One vectorised copy: a strided view for regular grids, a broadcast gather otherwise; with
        `global_view` slot `global_index` gets the downscaled frame. Pass `out` (from `new_batch`)
        to reuse a buffer across frames.
        """
        self.check_frame(frame)
        batch = self.new_batch() if out is None else out
        if batch.shape != (self.num_slots, self.tile_size, self.tile_size, 3):
            raise ValueError(f"out has shape {batch.shape}, expected {(self.num_slots, self.tile_size, self.tile_size, 3)}")
        real = batch[: self.num_tiles]
        if self.is_regular:
            np.copyto(real.reshape(self.rows, self.cols, self.tile_size, self.tile_size, 3), self.tile_view(frame))
        else:
            t = np.arange(self.tile_size)
            origins = self.origins
            yy = origins[:, 1, None, None] + t[None, :, None]
            xx = origins[:, 0, None, None] + t[None, None, :]
            real[...] = frame[yy, xx]
        rest = self.num_tiles
        if self.global_view:
            self.global_tile(frame, out=batch[rest])
            rest += 1
        batch[rest:] = 0
        return batch

    def chunks(self) -> list[slice]:
        """The detector calls of one frame batch: slices of `batch_size` slots.

        A grid of one call sends the whole batch (the fixed 64-tile call, blank slot included). A
        grid of several calls sends the last one short, over the used slots only (tiles + global
        view): fixed-shape backends (CUDA graph, TensorRT profile) pad it on their side, CPU
        backends skip the blank slots."""
        if self.num_chunks == 1:
            return [slice(0, self.batch_size)]
        used = self.num_tiles + int(self.global_view)
        return [slice(s, min(s + self.batch_size, used)) for s in range(0, used, self.batch_size)]

    def untile(self, batch: np.ndarray) -> np.ndarray:
        """Inverse of `tiles` for a non-overlapping grid covering the frame: (B, T, T, 3) -> (H, W, 3)."""
        if self.overlap or self.rows * self.tile_size != self.frame_height or self.cols * self.tile_size != self.frame_width:
            raise ValueError("untile needs a non-overlapping grid that covers the frame exactly")
        grid = batch[: self.num_tiles].reshape(self.rows, self.cols, self.tile_size, self.tile_size, 3)
        return grid.transpose(0, 2, 1, 3, 4).reshape(self.frame_height, self.frame_width, 3)


def detect_in_chunks(detect: Callable[[Any], Detections], batch: Any, grid: TileGrid) -> Detections:
    """Run `detect` on each `batch_size` chunk of a frame batch; tile_index = slot in the whole batch.

    batch: (num_slots, T, T, 3) (numpy or a device tensor); one call for the default 64-slot grid.
    """
    parts = []
    for chunk in grid.chunks():
        d = detect(batch[chunk])
        if chunk.start:
            d = Detections(d.xyxy, d.score, d.class_id, d.tile_index + chunk.start)
        parts.append(d)
    return parts[0] if len(parts) == 1 else Detections.merge(parts)
