"""Accuracy: pycocotools bbox mAP of tile-level and stitched frame-level detections.

`evaluate` composes mosaic frames from a COCO dataset (synthetic.compose), runs the detector once
per frame on the grid's 64-tile batch, and scores the same detections twice:
- tile level: each tile is its own 300×300 image (what the model sees), COCO's maxDets 1/10/100;
- frame level: the detections stitched to frame pixels, one image per frame.

COCOeval's maxDets caps detections per image *and category*, and the summary AP uses the
largest cap. A frame holds K = 63 tiles, each a COCO image to the model, so the frame-level caps
are scaled by K ([63, 630, 6300]): with the unscaled 100, a frame's 63 tiles would compete for
100 slots per class and the frame score would fall for a reason that has nothing to do with
stitching. With the scaled caps, the stitched score equals the tile score unless stitching
changes boxes. The COCO practice of a 0.001 score floor and at most 100 detections per tile
(max_dets[-1] per image overall) applies at both levels.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..boxes import top_k_per_group
from ..config import SecondLookConfig
from ..detections import Detections
from ..extras import require
from ..second_look import second_look
from ..tiling import TileGrid, detect_in_chunks

if TYPE_CHECKING:
    from synthetic.coco import CocoDataset

    from ..detect.base import Detector

COCO_MAX_DETS = (1, 10, 100)
SCORE_FLOOR = 0.001

StitchFn = Callable[[Detections, TileGrid], Detections]


def frame_max_dets(grid: TileGrid) -> tuple[int, int, int]:
    """COCO's maxDets scaled by the tiles in a frame (see the module docstring)."""
    k = grid.num_tiles
    return (COCO_MAX_DETS[0] * k, COCO_MAX_DETS[1] * k, COCO_MAX_DETS[2] * k)


def detections_to_coco_array(image_ids: np.ndarray | int, detections: Detections) -> np.ndarray:
    """(N, 7) float64 [image_id, x, y, w, h, score, category_id] as `COCO.loadRes` takes it.

    image_ids: (N,) image id of each detection, or one id for all.
    """
    n = len(detections)
    out = np.empty((n, 7), np.float64)
    out[:, 0] = np.broadcast_to(np.asarray(image_ids, np.float64), (n,))
    xyxy = detections.xyxy.astype(np.float64)
    out[:, 1:3] = xyxy[:, :2]
    out[:, 3:5] = xyxy[:, 2:] - xyxy[:, :2]
    out[:, 5] = detections.score
    out[:, 6] = detections.class_id
    return out


def _as_array(detections: Mapping[int, Detections] | np.ndarray) -> np.ndarray:
    if isinstance(detections, np.ndarray):
        if detections.ndim != 2 or detections.shape[1] != 7:
            raise ValueError(
                f"detections array has shape {detections.shape}, expected (N, 7) [image_id, x, y, w, h, score, class]"
            )
        return detections.astype(np.float64, copy=False)
    parts = [detections_to_coco_array(image_id, d) for image_id, d in detections.items() if len(d)]
    return np.concatenate(parts) if parts else np.zeros((0, 7), np.float64)


def _ap(evaluator: Any, iou: float | None = None, area: str = "all") -> float:
    """Mean precision as COCOeval.summarize computes it, at the largest maxDets (-1: nothing to score)."""
    p = evaluator.params
    s = evaluator.eval["precision"][:, :, :, p.areaRngLbl.index(area), len(p.maxDets) - 1]
    if iou is not None:
        s = s[np.flatnonzero(np.isclose(p.iouThrs, iou))]
    s = s[s > -1]
    return float(s.mean()) if s.size else -1.0


def coco_scores(
    gt: Mapping[str, Any],
    detections: Mapping[int, Detections] | np.ndarray,
    *,
    max_dets: tuple[int, int, int] = COCO_MAX_DETS,
    score_floor: float = SCORE_FLOOR,
    verbose: bool = False,
) -> dict[str, float]:
    """pycocotools bbox scores of `detections` against the COCO dict `gt`.

    detections: {image_id: Detections in that image's pixels, class ids = dataset category ids}
    or an (N, 7) array from `detections_to_coco_array`. Detections below `score_floor` are
    dropped, each image keeps its `max_dets[-1]` best, and detections of categories absent
    from `gt` are dropped (they cannot be scored). Returns mAP (AP@[.50:.95]), AP50, AP75,
    AP_small, AP_medium, AP_large (COCOeval stats[0..5]; -1.0 where COCO has nothing to score).
    """
    COCO = require("pycocotools.coco", "analysis", "COCO scoring").COCO
    COCOeval = require("pycocotools.cocoeval", "analysis", "COCO scoring").COCOeval

    dets = _as_array(detections)
    known_images = np.asarray([im["id"] for im in gt["images"]], np.int64)
    stray = np.setdiff1d(dets[:, 0].astype(np.int64), known_images)
    if stray.size:
        raise ValueError(f"detections refer to image ids absent from the ground truth, e.g. {stray[:5].tolist()}")
    known_cats = np.asarray([c["id"] for c in gt["categories"]], np.int64)
    dets = dets[(dets[:, 5] >= score_floor) & np.isin(dets[:, 6].astype(np.int64), known_cats)]
    dets = dets[np.sort(top_k_per_group(dets[:, 5], dets[:, 0].astype(np.int64), max_dets[-1]))]

    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = COCO()
        # COCOeval writes an `ignore` key into each GT annotation: give it copies
        coco_gt.dataset = {
            "images": list(gt["images"]),
            "annotations": [dict(a) for a in gt["annotations"]],
            "categories": list(gt["categories"]),
        }
        coco_gt.createIndex()
        if len(dets):
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes fails on an empty list; no detections scores AP 0 wherever there is GT
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "annotations": [], "categories": list(gt["categories"])}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.maxDets = list(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
    scores = {
        "mAP": _ap(evaluator),
        "AP50": _ap(evaluator, iou=0.5),
        "AP75": _ap(evaluator, iou=0.75),
        "AP_small": _ap(evaluator, area="small"),
        "AP_medium": _ap(evaluator, area="medium"),
        "AP_large": _ap(evaluator, area="large"),
    }
    if verbose:
        for key, value in scores.items():
            print(f"{key:>10} @maxDets={max_dets[-1]:<5d} = {value:.4f}")
    return scores


# Darknet's spellings of COCO category names (coco.names files of YOLO-family models), normalised
COCO_NAME_ALIASES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "tvmonitor": "tv"}


def _norm(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return COCO_NAME_ALIASES.get(key, key)


def category_map(class_names: Mapping[int, str], categories: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """Model class id -> dataset category id.

    Where the model's ids already are the dataset's (every shared id has the same name, as with the
    built-in COCO models) the map is the identity; otherwise classes are matched by name (case,
    spaces, '_' and '-' ignored; Darknet's spellings of COCO names accepted), as for a user model
    whose classes file lists names in score-column order. Classes without a namesake are left out.
    """
    names_by_id = {int(c["id"]): _norm(c["name"]) for c in categories}
    shared = [k for k in class_names if k in names_by_id]
    if shared and all(names_by_id[k] == _norm(class_names[k]) for k in shared):
        return {k: k for k in shared}
    ids_by_name = {name: cid for cid, name in names_by_id.items()}
    return {k: ids_by_name[_norm(n)] for k, n in class_names.items() if _norm(n) in ids_by_name}


def to_dataset_classes(detections: Detections, mapping: Mapping[int, int]) -> Detections:
    """Detections with class ids replaced through `mapping`; classes it lacks are dropped."""
    if not len(detections):
        return detections
    keys = np.fromiter(mapping.keys(), np.int64, len(mapping))
    values = np.fromiter(mapping.values(), np.int64, len(mapping))
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    pos = np.clip(np.searchsorted(keys, detections.class_id), 0, max(len(keys) - 1, 0))
    known = (keys[pos] == detections.class_id) if len(keys) else np.zeros(len(detections), bool)
    kept = detections[known]
    return Detections(kept.xyxy, kept.score, values[pos[known]].astype(kept.class_id.dtype), kept.tile_index)


@dataclass(frozen=True)
class EvalReport:
    """Accuracy of one detector on mosaics of one dataset, at tile and stitched-frame level."""

    tile: dict[str, float]
    frame: dict[str, float]
    tiles_per_s: float  # real (non-padding) tiles / detector wall time
    frames: int
    tiles: int  # real tiles run through the detector: frames × tiles per frame
    images: int  # dataset images scored (blank fill slots excluded)
    detect_s: float
    tile_detections: int
    frame_detections: int
    model: str
    backend: str
    precision: str
    seed: int
    letterbox: bool
    score_floor: float
    tile_max_dets: tuple[int, int, int]
    frame_max_dets: tuple[int, int, int]
    classes_scored: int = -1  # model classes matched to dataset categories
    second_look_s: float = 0.0  # crops' calls and replacement (0 without the second look)

    @property
    def stitch_gap(self) -> float:
        """frame mAP − tile mAP: what stitching lost (negative) or gained."""
        return self.frame["mAP"] - self.tile["mAP"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stitch_gap"] = self.stitch_gap
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def evaluate(
    detector: Detector,
    dataset: CocoDataset,
    grid: TileGrid,
    *,
    stitch_fn: StitchFn,
    score_floor: float = SCORE_FLOOR,
    max_tiles: int | None = None,
    seed: int = 0,
    letterbox: bool = False,
    max_per_tile: int = COCO_MAX_DETS[-1],
    second_look_config: SecondLookConfig | None = None,
    tolerance_px: float = 6.0,
    progress: Callable[[int, int], None] | None = None,
    verbose: bool = False,
) -> EvalReport:
    """Score `detector` on seeded mosaics of `dataset` at tile and frame level.

    Each frame goes the pipeline's way: `grid.tiles(frame)` (K real tiles + blank padding),
    one `detector.detect(batch, score_threshold=score_floor)`, detections on padding tiles
    dropped, at most `max_per_tile` per tile, then `stitch_fn(detections, grid)` to frame pixels
    (the global view's boxes, with `grid.global_view`, count at frame level only), then, with
    `second_look_config` enabled, the edge's second look at cut objects (`inspection.second_look`;
    `tolerance_px`: the stitch's border tolerance), timed apart in `second_look_s`.
    `max_tiles` scores only the first `max_tiles` images of the seeded permutation (fast CI runs).
    `progress(done_frames, total_frames)` is called after each frame.
    """
    from synthetic.compose import compose_mosaics

    spec = detector.spec
    mapping = category_map(spec.class_names, dataset.categories)
    if not mapping:
        raise ValueError(
            f"model {spec.name}'s classes ({', '.join(list(spec.class_names.values())[:5])}, ...) share no name with "
            f"the dataset's categories ({', '.join(c['name'] for c in dataset.categories[:5])}, ...): nothing to score"
        )
    mosaics = compose_mosaics(dataset, grid, seed=seed, letterbox=letterbox, limit=max_tiles)
    k = grid.num_tiles
    batch = grid.new_batch()
    tile_parts: list[np.ndarray] = []
    frame_parts: list[np.ndarray] = []
    detect_s = second_look_s = 0.0
    for f, frame in enumerate(mosaics.frames):
        tiles = grid.tiles(frame, out=batch)
        start = time.perf_counter()
        dets = detect_in_chunks(lambda chunk: detector.detect(chunk, score_threshold=score_floor), tiles, grid)
        detect_s += time.perf_counter() - start
        used = (dets.tile_index >= 0) & (dets.tile_index < k + int(grid.global_view)) & (dets.score >= score_floor)
        dets = dets[used]
        dets = dets[np.sort(top_k_per_group(dets.score, dets.tile_index, max_per_tile))]
        dets = to_dataset_classes(dets, mapping)
        in_tile = dets[dets.tile_index < k]  # the global view is no tile image: frame level only
        tile_parts.append(detections_to_coco_array(mosaics.tile_image_ids[f][in_tile.tile_index], in_tile))
        stitched = stitch_fn(dets, grid)
        if second_look_config is not None and second_look_config.enabled:
            start = time.perf_counter()
            stitched = second_look(
                stitched,
                tiles,
                grid,
                lambda crops: to_dataset_classes(detector.detect(crops, score_threshold=score_floor), mapping),
                second_look_config,
                tolerance_px,
            )
            second_look_s += time.perf_counter() - start
        frame_parts.append(detections_to_coco_array(int(mosaics.frame_ids[f]), stitched))
        if progress is not None:
            progress(f + 1, mosaics.num_frames)

    tile_dets = np.concatenate(tile_parts)
    frame_dets = np.concatenate(frame_parts)
    frame_caps = frame_max_dets(grid)
    tile_scores = coco_scores(mosaics.tile_gt, tile_dets, max_dets=COCO_MAX_DETS, score_floor=score_floor, verbose=verbose)
    frame_scores = coco_scores(mosaics.frame_gt, frame_dets, max_dets=frame_caps, score_floor=score_floor, verbose=verbose)
    tiles = mosaics.num_frames * k
    return EvalReport(
        tile=tile_scores,
        frame=frame_scores,
        tiles_per_s=tiles / max(detect_s, 1e-9),
        frames=mosaics.num_frames,
        tiles=tiles,
        images=mosaics.num_images,
        detect_s=detect_s,
        tile_detections=len(tile_dets),
        frame_detections=len(frame_dets),
        model=spec.name,
        backend=detector.backend,
        precision=detector.precision,
        seed=seed,
        letterbox=letterbox,
        score_floor=score_floor,
        tile_max_dets=COCO_MAX_DETS,
        frame_max_dets=frame_caps,
        classes_scored=len(mapping),
        second_look_s=second_look_s,
    )
