"""Infer stage: one 64-tile detector call per frame, stitching into frame pixels, then the second look
(`inspection.second_look`: one small call on crops around cut objects, read from the same batch).

One `InferStage` per detector instance (its own thread): with several (each its own CUDA graph
and stream, like TensorRT execution contexts) one frame's post-processing overlaps the next
frame's forward pass. It takes a `Prepared` frame and answers it `Detected`; the tile batch goes back
to the preparer's pool whatever happens. Parked records never come here (they go straight to
persist); an exception is the detector's fault and stops the consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import SecondLookConfig, StitchConfig
from ..detect import Detector
from ..detections import Detections
from ..second_look import second_look
from ..stitch import stitch
from ..tiling import TileGrid, detect_in_chunks
from .prepare import FramePreparer
from .steps import Detected, Prepared


def detect_frame(
    detect: Callable[..., Detections],
    batch: Any,
    grid: TileGrid,
    stitch_config: StitchConfig,
    second_look_config: SecondLookConfig,
    mark: Callable[[str], object] = lambda _step: None,
) -> Detections:
    """A frame's tile batch (num_slots, T, T, 3) -> its detections in frame pixels: the grid's detector
    call (one for the 64-slot grid), stitching, then the second look at cut objects. The crops are
    read from `batch`: release it only after. `mark(step)` is called after each step ("detected",
    "stitched", "looked"). The edge's infer stage and the shadow runner both run this, so a candidate
    model is measured on the deployed model's path."""
    tile_detections = detect_in_chunks(detect, batch, grid)
    mark("detected")
    stitched = stitch(tile_detections, grid, stitch_config)
    mark("stitched")
    found = second_look(stitched, batch, grid, detect, second_look_config, stitch_config.border_tolerance_px)
    mark("looked")
    return found


class InferStage:
    """Detect on a prepared batch (host array, or device tensor when the preparer is on the GPU) and stitch."""

    def __init__(
        self,
        detector: Detector,
        preparer: FramePreparer,
        grid: TileGrid,
        stitch_config: StitchConfig,
        second_look_config: SecondLookConfig | None = None,
    ) -> None:
        self.detector = detector
        self.preparer = preparer
        self.grid = grid
        self.stitch_config = stitch_config
        self.second_look_config = second_look_config or SecondLookConfig(enabled=False)

    @property
    def _detect(self) -> Callable[..., Detections]:
        return self.detector.detect_tensor if self.preparer.on_device else self.detector.detect

    def __call__(self, prepared: Prepared) -> Detected:
        clock, batch = prepared.clock, prepared.batch
        clock.mark("detect_start")
        try:
            detections = detect_frame(self._detect, batch, self.grid, self.stitch_config, self.second_look_config, clock.mark)
        finally:
            self.preparer.release(batch)
        return prepared.detected(detections)
