"""`inspection bench --peers sahi`: our frame path against SAHI's sliced prediction, same detector.

SAHI (`sahi.predict.get_sliced_prediction`) slices a frame, runs a `DetectionModel` on the slices
(`batch_size` at a time), shifts each `ObjectPrediction` to frame pixels and merges them. Here its
model is our adapter (`sahi_adapter.make_sahi_model`, also the scene table's) that calls the SAME detector object our path calls,
so only slicing, batching and post-processing differ. Slices are the grid's tiles (300×300, no
overlap), SAHI's merge is NMS/IoU at the detector's `nms_iou`, and the full-frame pass
(`perform_standard_pred`) is off: what our path does, the SAHI way. Both start from the frame in host
memory; ours tiles it on the GPU when the detector is on CUDA (`frame_path.tile_detector`), as the edge does.

Both run on the same mosaic frames (synthetic.compose over a COCO set, ground truth known), at the
operating threshold and at the evaluation floor, in one process; each row reports time per frame
(median over the frames, methods interleaved frame by frame, after one warm-up call each) and frame-level mAP (pycocotools, frame caps as `evaluate`).
SAHI is an optional extra (`pip install 'inspection[sahi]'`): without it the peers are skipped
with a one-line reason.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import StitchConfig
from ..detections import Detections
from ..stitch import stitch
from ..tiling import TileGrid
from .evaluate import category_map, coco_scores, detections_to_coco_array, frame_max_dets, to_dataset_classes
from .frame_path import tile_detector
from .sahi_adapter import make_sahi_model, predictions_to_detections

if TYPE_CHECKING:
    from synthetic.coco import CocoDataset

    from ..detect.base import Detector


def sahi_missing() -> str | None:
    """Why the SAHI peer cannot run here, or None."""
    if importlib.util.find_spec("sahi") is None:
        return "sahi is not installed (pip install 'inspection[sahi]'): SAHI peer skipped"
    return None


def sahi_frame(model: Any, frame: np.ndarray, grid: TileGrid, batch_size: int, nms_iou: float) -> Detections:
    """SAHI sliced prediction of one frame (grid-sized slices, no overlap) -> frame Detections."""
    from sahi.predict import get_sliced_prediction

    result = get_sliced_prediction(
        frame,
        model,
        slice_height=grid.tile_size,
        slice_width=grid.tile_size,
        overlap_height_ratio=0.0,
        overlap_width_ratio=0.0,
        perform_standard_pred=False,
        postprocess_type="NMS",
        postprocess_match_metric="IOU",
        postprocess_match_threshold=nms_iou,
        postprocess_class_agnostic=False,
        batch_size=batch_size,
        force_postprocess_type=True,
        verbose=0,
    )
    return predictions_to_detections(result.object_prediction_list)


@dataclass(frozen=True)
class PeerRow:
    method: str  # "ours", "sahi batch 64", "sahi batch 1"
    score_threshold: float
    frames: int
    ms_per_frame: float  # median over the frames after one warm-up
    frame_map: float
    frame_ap50: float
    detections_per_frame: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_peers(
    detector: Detector,
    dataset: CocoDataset,
    grid: TileGrid,
    stitch_config: StitchConfig,
    *,
    thresholds: tuple[float, ...] = (0.3, 0.001),
    sahi_batches: tuple[int, ...] = (64, 1),
    frames: int = 2,
    nms_iou: float = 0.6,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[PeerRow]:
    """Our path (tile, detect, stitch) and SAHI at each batch size, at each threshold, on the same frames."""
    from synthetic.compose import compose_mosaics

    say = progress or (lambda text: None)
    mosaics = compose_mosaics(dataset, grid, seed=seed, limit=frames * grid.num_tiles)
    images = [np.ascontiguousarray(f) for f in mosaics.frames]
    ids = [int(i) for i in mosaics.frame_ids]
    mapping = category_map(detector.spec.class_names, dataset.categories)
    k = grid.num_tiles
    detect_frame, _ = tile_detector(detector, grid)  # tiled on the GPU where the detector is on CUDA

    def ours(threshold: float) -> Callable[[np.ndarray], Detections]:
        def run(frame: np.ndarray) -> Detections:
            dets = detect_frame(frame, threshold)
            return stitch(dets[(dets.tile_index >= 0) & (dets.tile_index < k)], grid, stitch_config)

        return run

    def sahi(threshold: float, size: int) -> Callable[[np.ndarray], Detections]:
        model = make_sahi_model(detector, threshold, grid.tile_size, grid.batch_size)
        return lambda frame: sahi_frame(model, frame, grid, size, nms_iou)

    methods: list[tuple[str, float, Callable[[np.ndarray], Detections]]] = []
    for threshold in thresholds:
        methods.append(("ours", threshold, ours(threshold)))
        if sahi_missing() is None:
            methods += [(f"sahi batch {b}", threshold, sahi(threshold, b)) for b in sahi_batches]
    for name, threshold, run in methods:  # warm-up (graphs, caches)
        say(f"warm-up: {name} at score {threshold:g}")
        run(images[0])
    # Interleaved: every method on frame 1, then on frame 2, ...: drift of the machine hits all alike.
    times: dict[int, list[float]] = {m: [] for m in range(len(methods))}
    found: dict[int, dict[int, Detections]] = {m: {} for m in range(len(methods))}
    for f, (image_id, frame) in enumerate(zip(ids, images)):
        for m, (name, threshold, run) in enumerate(methods):
            say(f"frame {f + 1}/{len(images)}: {name} at score {threshold:g}")
            start = time.perf_counter()
            dets = run(frame)
            times[m].append(time.perf_counter() - start)
            found[m][image_id] = to_dataset_classes(dets, mapping)
    rows = []
    for m, (name, threshold, _) in enumerate(methods):
        dets_array = np.concatenate([detections_to_coco_array(i, d) for i, d in found[m].items()])
        scores = coco_scores(mosaics.frame_gt, dets_array, max_dets=frame_max_dets(grid), score_floor=threshold)
        rows.append(
            PeerRow(
                name,
                threshold,
                len(images),
                statistics.median(times[m]) * 1e3,
                scores["mAP"],
                scores["AP50"],
                len(dets_array) / len(images),
            )
        )
    return rows
