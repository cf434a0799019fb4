"""One frame in, its tile detections out: the offline tools' frame path, on the GPU where the detector is.

The edge tiles on the GPU when `pipeline.decode=gpu` (`edge.gpu_frames`); the offline tools (peers, evaluation)
start from frames in host memory. `tile_detector` gives them the same choice: with a detector that takes
device batches on CUDA, the frame (17 MB at 2700×2100) crosses PCIe once and is tiled there, global view
included (`tile_on_gpu`), instead of being cut and area-resized on the CPU and copied as 64 tiles
(`TileGrid.tiles` + `Detector.detect`, the path everywhere else).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..detections import Detections
from ..tiling import TileGrid

if TYPE_CHECKING:
    from ..detect.base import Detector

FrameDetect = Callable[[np.ndarray, "float | None"], Detections]


def on_cuda(detector: Detector) -> bool:
    return bool(detector.takes_device_batches) and getattr(detector.device, "type", str(detector.device)) == "cuda"


def tile_detector(detector: Detector, grid: TileGrid) -> tuple[FrameDetect, str]:
    """(frame (H, W, 3) uint8 RGB, score threshold) -> tile detections of its `grid.num_slots` batch; and where it tiles."""
    if on_cuda(detector):
        import torch

        from ..edge.gpu_frames import tile_on_gpu

        tiles = torch.empty((grid.num_slots, grid.tile_size, grid.tile_size, 3), dtype=torch.uint8, device=detector.device)

        def on_gpu(frame: np.ndarray, threshold: float | None) -> Detections:
            device_frame = torch.from_numpy(np.ascontiguousarray(frame)).to(detector.device)
            return detector.detect_tensor(tile_on_gpu(device_frame, grid, out=tiles), threshold)

        return on_gpu, "gpu"
    batch = grid.new_batch()

    def on_host(frame: np.ndarray, threshold: float | None) -> Detections:
        return detector.detect(grid.tiles(frame, out=batch), score_threshold=threshold)

    return on_host, "cpu"
