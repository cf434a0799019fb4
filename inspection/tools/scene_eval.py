"""Accuracy on line-size scenes (synthetic.scenes): one table of tiling and stitching configurations.

Each configuration turns a 2700×2100 scene into frame detections; all are scored against the
same exact ground truth with pycocotools (frame mAP, AP small/medium/large) and by the recall of
objects that cross a tile border (a detection of the class with IoU >= 0.5 at score >= 0.3).
Time per frame is the configuration's own wall time: tiling (+ global view), detector calls,
stitching, and for the second-look rows their crops' call and the replacement
(`inspection.second_look`, the infer stage's own function). Rows on the same 64-slot batch
share its detector call (the slots cost the same whether the 64th is blank or holds the global
view) and add their own tiling and stitching. Configurations run interleaved frame by frame, so
a change of machine load hits them alike.

Where accuracy is lost: AP small/medium/large are COCO's areas in frame pixels (< 32², < 96², ≥ 96²);
AP crossing / AP inside score the objects that cross a tile border / that do not, the others
marked crowd (COCO's ignore: a detection on them is neither a hit nor a false positive).

Rows with a `GridOption` name are the choices `inspection plan` picks from: `grid_options`
gives their accuracy and measured time per frame on this machine.

COCO's maxDets are scaled to a frame as in `evaluate` ([63, 630, 6300]) for every row, and the
score floor is COCO's 0.001 for every row, SAHI's included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..boxes import box_iou
from ..config import SecondLookConfig, StitchConfig
from ..detections import Detections
from ..second_look import second_look
from ..stitch import stitch
from ..tiling import TileGrid, detect_in_chunks
from .evaluate import SCORE_FLOOR, category_map, coco_scores, frame_max_dets, to_dataset_classes

if TYPE_CHECKING:
    from synthetic.coco import CocoDataset
    from synthetic.scenes import Scenes

    from ..detect.base import Detector

RECALL_SCORE = 0.3
RECALL_IOU = 0.5
ONE_SHOT = "one shot: whole frame downscaled to one tile"
# name: force GREEDYNMM/IOS at the 0.001 floor (False: SAHI's own switch to NMS/IOU there). Issue 10 measured the forced
# GREEDYNMM row too (0.073 mAP: it unions junk into good boxes at the floor); only SAHI's own merge is kept as the anchor.
SAHI_ROWS = {"SAHI: 300 px slices, overlap 0.2 + full frame, SAHI's own merge at floor 0.001 (NMS/IOU 0.5)": False}
SCORE_KEYS = (
    "mAP",
    "AP50",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AP_crossing",
    "AP_inside",
    "border_recall",
    "s_per_frame",
)


@dataclass(frozen=True)
class TiledConfiguration:
    """A row run on a tile grid: the grid (overlap, batch, global view) and the stitch rules."""

    name: str
    grid: TileGrid
    stitch: StitchConfig
    second_look: SecondLookConfig | None = None
    option: str | None = None  # the grid option `inspection plan` knows it by (one_call, second_look, overlap_60, ...)


def option_name(overlap: int, with_second_look: bool) -> str:
    """The grid option's key: one_call, second_look, overlap_30, overlap_30+second_look, ..."""
    base = f"overlap_{overlap}" if overlap else "one_call"
    if with_second_look:
        return "second_look" if not overlap else f"{base}+second_look"
    return base


@dataclass(frozen=True)
class SceneRow:
    """One configuration's scores on one seed's scenes."""

    name: str
    seed: int
    scores: dict[str, float]
    detections: int


@dataclass(frozen=True)
class SceneReport:
    """Every configuration on every seed, plus the scenes' make-up."""

    rows: list[SceneRow]
    scenes: list[dict[str, Any]]
    model: str
    backend: str
    precision: str
    score_floor: float
    skipped: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # row name -> grid option (plan's choices)

    def names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.rows))

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """{configuration: {score: (mean, sample standard deviation over seeds)}}."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for name in self.names():
            rows = [r for r in self.rows if r.name == name]
            out[name] = {}
            for key in SCORE_KEYS:
                v = np.array([r.scores[key] for r in rows], np.float64)
                out[name][key] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        return out

    def grid_options(self, machine: Mapping[str, Any]) -> dict[str, Any]:
        """What `inspection plan` reads: each grid option's mean scores and time per frame, and the machine."""
        summary = self.summary()
        seeds = sorted({r.seed for r in self.rows})
        return {
            "machine": dict(machine),
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "seeds": seeds,
            "scenes": sum(s["scenes"] for s in self.scenes),
            "options": {
                option: {
                    "row": name,
                    "mAP": summary[name]["mAP"][0],
                    "border_recall": summary[name]["border_recall"][0],
                    "s_per_frame": summary[name]["s_per_frame"][0],
                    "s_per_frame_sd": summary[name]["s_per_frame"][1],
                }
                for name, option in self.options.items()
                if name in summary
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "backend": self.backend,
            "precision": self.precision,
            "score_floor": self.score_floor,
            "scenes": self.scenes,
            "rows": [asdict(r) for r in self.rows],
            "skipped": self.skipped,
            "options": self.options,
            "summary": {n: {k: {"mean": m, "sd": s} for k, (m, s) in v.items()} for n, v in self.summary().items()},
        }


def default_configurations(
    grid: TileGrid, stitch_config: StitchConfig, overlaps: Sequence[int] = (30, 60), second_look: SecondLookConfig | None = None
) -> list[TiledConfiguration]:
    """The table's tiled rows: 63+1 tiles without joining, the earlier pairwise joining, one call
    (global view + cut joining + fusion), then overlapping grids; each grid option also with the
    second look (`second_look`, enabled; default settings when None), and the one call's second look
    without its zoom-out windows when they are on."""
    look = (second_look or SecondLookConfig()).model_copy(update={"enabled": True})
    plain = TileGrid(grid.frame_width, grid.frame_height, grid.tile_size, 0, grid.batch_size, False)
    with_global = TileGrid(grid.frame_width, grid.frame_height, grid.tile_size, 0, grid.batch_size, True)
    cut = stitch_config.model_copy(update={"border_rule": "cut"})
    rows = [
        TiledConfiguration("63+1 tiles, no joining", plain, stitch_config.model_copy(update={"border_merge": False})),
        TiledConfiguration(
            "63+1 tiles, pairwise joining (old default)",
            plain,
            stitch_config.model_copy(update={"border_merge": True, "border_rule": "pairwise", "border_tolerance_px": 2.0}),
        ),
        TiledConfiguration("63+1 tiles, cut joining + fusion", plain, cut),
        TiledConfiguration(
            "one call: 63 tiles + global view, cut joining + fusion", with_global, cut, option=option_name(0, False)
        ),
        TiledConfiguration(
            f"one call + second look (<= {look.max_crops} crops, 1 call)", with_global, cut, look, option_name(0, True)
        ),
    ]
    if look.max_zoom > 1:  # what the zoom-out windows add: the same look with tile-sized crops only
        rows.append(
            TiledConfiguration(
                "one call + second look, tile-sized crops only (max_zoom 1)",
                with_global,
                cut,
                look.model_copy(update={"max_zoom": 1.0}),
            )
        )
    for overlap in overlaps:
        g = TileGrid(grid.frame_width, grid.frame_height, grid.tile_size, overlap, grid.batch_size, True)
        name = (
            f"overlap {overlap} px: {g.num_tiles} tiles + global view, {g.num_chunks} calls of {g.batch_size}, "
            f"{stitch_config.merge.upper()}/{stitch_config.match_metric.upper()} {stitch_config.match_threshold:g} + fusion"
        )
        rows.append(TiledConfiguration(name, g, stitch_config, option=option_name(overlap, False)))
        rows.append(TiledConfiguration(f"overlap {overlap} px + second look", g, stitch_config, look, option_name(overlap, True)))
    return rows


def marked_subset(gt: Mapping[str, Any], crossing: bool) -> dict[str, Any]:
    """The GT with the objects that do not (crossing=True) / do (False) cross a border marked crowd (ignored)."""
    anns = []
    for a in gt["annotations"]:
        a = dict(a)
        if bool(a.get("crosses_border")) != crossing:
            a["iscrowd"] = 1
        anns.append(a)
    return {**gt, "annotations": anns}


def border_recall(
    gt: Mapping[str, Any], detections: Mapping[int, Detections], score: float = RECALL_SCORE, iou: float = RECALL_IOU
) -> float:
    """Share of non-crowd GT boxes flagged `crosses_border` matched by a same-class detection
    (score >= `score`, IoU >= `iou`). -1.0 when no object crosses a border."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        if a.get("crosses_border") and not a.get("iscrowd"):
            by_image.setdefault(int(a["image_id"]), []).append(a)
    total = sum(len(v) for v in by_image.values())
    if not total:
        return -1.0
    found = 0
    for image_id, anns in by_image.items():
        d = detections.get(image_id, Detections.empty())
        d = d[d.score >= score]
        if not len(d):
            continue
        xywh = np.array([a["bbox"] for a in anns], np.float64)
        gt_xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        cats = np.array([a["category_id"] for a in anns])
        overlap = box_iou(gt_xyxy, d.xyxy.astype(np.float64))
        same = cats[:, None] == d.class_id[None, :]
        found += int(np.any((overlap >= iou) & same, axis=1).sum())
    return found / total


def _score(name: str, seed: int, scenes: Scenes, dets: dict[int, Detections], seconds: float, floor: float) -> SceneRow:
    caps = frame_max_dets(TileGrid())
    scores = coco_scores(scenes.gt, dets, max_dets=caps, score_floor=floor)
    scores = {k: scores[k] for k in ("mAP", "AP50", "AP_small", "AP_medium", "AP_large")}
    scores["AP_crossing"] = coco_scores(marked_subset(scenes.gt, True), dets, max_dets=caps, score_floor=floor)["mAP"]
    scores["AP_inside"] = coco_scores(marked_subset(scenes.gt, False), dets, max_dets=caps, score_floor=floor)["mAP"]
    scores["border_recall"] = border_recall(scenes.gt, dets)
    scores["s_per_frame"] = seconds / max(len(scenes), 1)
    return SceneRow(name, seed, scores, sum(len(d) for d in dets.values()))


def evaluate_scenes(
    detector: Detector,
    dataset: CocoDataset,
    grid: TileGrid,
    stitch_config: StitchConfig,
    *,
    num_scenes: int,
    seeds: Sequence[int] = (0, 1, 2),
    overlaps: Sequence[int] = (30, 60),
    second_look_config: SecondLookConfig | None = None,
    sahi: bool = True,
    score_floor: float = SCORE_FLOOR,
    progress: Callable[[str], None] | None = None,
) -> SceneReport:
    """The scene table: every configuration of `default_configurations`, the one-shot downscaled
    frame and (when sahi is installed and wanted) SAHI around the same detector, on each seed."""
    from synthetic.scenes import compose_scenes

    spec = detector.spec
    mapping = category_map(spec.class_names, dataset.categories)
    configurations = default_configurations(grid, stitch_config, overlaps, second_look_config)
    skipped: dict[str, str] = {}
    sahi_model = None
    if sahi:
        from .sahi_adapter import SahiNotInstalled, make_sahi_model, sahi_detections

        try:
            sahi_model = make_sahi_model(detector, score_floor, grid.tile_size, grid.batch_size)
        except SahiNotInstalled as exc:
            skipped["SAHI"] = str(exc)

    def detect(batch: np.ndarray) -> Detections:
        return detector.detect(batch, score_threshold=score_floor)

    def dataset_classes(d: Detections) -> Detections:
        return to_dataset_classes(d, mapping)

    # Build and capture before timing (CUDA graphs for the frame batch and for a few crops, cuDNN's choices):
    # on a GPU the first seed's times carried the warm-up (H100, 2026-12-07: 0.77 s/frame on seed 0, 0.07-0.08 after).
    detector.warmup((grid.tile_size, grid.tile_size))
    rows: list[SceneRow] = []
    scene_info: list[dict[str, Any]] = []
    for seed in seeds:
        scenes = compose_scenes(dataset, grid, num_scenes, seed)
        scene_info.append(scenes.summary())
        results: dict[str, dict[int, Detections]] = {}
        seconds: dict[str, float] = {}
        # batches shared by rows with the same slot layout: {(overlap, num_slots): (tile detections, detect seconds)}
        for f, frame in enumerate(scenes.frames()):
            fid = int(scenes.frame_ids[f])
            if progress is not None:
                progress(f"seed {seed}: scene {f + 1}/{len(scenes)}")
            shared: dict[tuple[int, int], tuple[Detections, float]] = {}
            for c in configurations:
                start = time.perf_counter()
                batch = c.grid.tiles(frame)
                tiled = time.perf_counter() - start
                key = (c.grid.overlap, c.grid.num_slots)
                if key not in shared:
                    start = time.perf_counter()
                    full = TileGrid(
                        c.grid.frame_width, c.grid.frame_height, c.grid.tile_size, c.grid.overlap, c.grid.batch_size, True
                    )
                    # one detector run on the slots with the global view serves the rows with and without it
                    # (the 64-slot call costs the same whether the last slot is blank or not)
                    shared[key] = (
                        detect_in_chunks(detect, full.tiles(frame) if not c.grid.global_view else batch, full),
                        time.perf_counter() - start,
                    )
                tile_dets, detect_s = shared[key]
                start = time.perf_counter()
                frame_dets = stitch(dataset_classes(tile_dets), c.grid, c.stitch)
                if c.second_look is not None:
                    frame_dets = second_look(
                        frame_dets,
                        batch,
                        c.grid,
                        lambda crops: dataset_classes(detect(crops)),
                        c.second_look,
                        c.stitch.border_tolerance_px,
                    )
                stitch_s = time.perf_counter() - start
                results.setdefault(c.name, {})[fid] = frame_dets
                seconds[c.name] = seconds.get(c.name, 0.0) + tiled + detect_s + stitch_s
            # one shot: the whole frame downscaled to one tile, one detector call of one tile
            start = time.perf_counter()
            one = grid.global_tile(frame)[None]
            d = dataset_classes(detect(one))
            sx, sy = grid.global_scale
            d = Detections(d.xyxy * np.array([sx, sy, sx, sy], np.float32), d.score, d.class_id)
            seconds[ONE_SHOT] = seconds.get(ONE_SHOT, 0.0) + time.perf_counter() - start
            results.setdefault(ONE_SHOT, {})[fid] = d
            if sahi_model is not None:
                for name, force in SAHI_ROWS.items():
                    start = time.perf_counter()
                    d = dataset_classes(
                        sahi_detections(sahi_model, frame, slice_size=grid.tile_size, batch_size=grid.batch_size, force=force)
                    )
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                    results.setdefault(name, {})[fid] = d
        for name, dets in results.items():
            rows.append(_score(name, seed, scenes, dets, seconds[name], score_floor))
    order = [ONE_SHOT, *(c.name for c in configurations)]
    rows.sort(key=lambda r: (order.index(r.name) if r.name in order else len(order), r.seed))
    options = {c.name: c.option for c in configurations if c.option}
    return SceneReport(rows, scene_info, spec.name, detector.backend, detector.precision, score_floor, skipped, options)
