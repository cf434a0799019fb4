"""Infer stage: one 64-tile detector call per frame, then stitching into frame pixels.

One `InferStage` per detector instance (its own thread): with several (each its own CUDA graph
and stream, like TensorRT execution contexts) one frame's post-processing overlaps the next
frame's forward pass. The tile batch goes back to the preparer's pool whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import StitchConfig
from ..detect import Detector
from ..detections import Detections
from ..stitch import stitch
from ..tiling import TileGrid, detect_in_chunks
from .job import FrameJob
from .prepare import FramePreparer


class InferStage:
    """Detect on `job.batch` (host array, or device tensor when the preparer is on the GPU) and stitch."""

    def __init__(self, detector: Detector, preparer: FramePreparer, grid: TileGrid, stitch_config: StitchConfig) -> None:
        self.detector = detector
        self.preparer = preparer
        self.grid = grid
        self.stitch_config = stitch_config

    @property
    def _detect(self) -> Callable[..., Detections]:
        return self.detector.detect_tensor if self.preparer.on_device else self.detector.detect

    def __call__(self, job: FrameJob) -> FrameJob:
        if job.batch is None:
            return job
        job.clock.mark("detect_start")
        try:
            tile_detections = detect_in_chunks(self._detect, job.batch, self.grid)  # one call for the 64-slot grid
        finally:
            self.preparer.release(job.batch)
            job.batch = None
        job.clock.mark("detected")
        job.detections = stitch(tile_detections, self.grid, self.stitch_config)
        job.clock.mark("stitched")
        return job
