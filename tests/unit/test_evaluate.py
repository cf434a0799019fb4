"""pycocotools scoring at tile and frame level, and the evaluate() loop with an oracle detector."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from inspection.detect import Detector, load_spec
from inspection.detections import Detections
from inspection.tiling import TileGrid
from inspection.tools.evaluate import (
    COCO_MAX_DETS,
    coco_scores,
    detections_to_coco_array,
    evaluate,
    frame_max_dets,
)
from synthetic.coco import CocoDataset
from synthetic.compose import Mosaics, compose_mosaics

GRID = TileGrid()
SHARED = Path(os.environ.get("INSPECTION_SHARED", Path(__file__).parents[2] / "../shared"))
COCO_TINY = SHARED / "data" / "coco_tiny"


@pytest.fixture(scope="module")
def tiny() -> CocoDataset:
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"coco_tiny not found at {COCO_TINY} (set INSPECTION_SHARED to the shared folder)")
    return CocoDataset.load(COCO_TINY / "val2017", COCO_TINY / "annotations" / "instances_val2017.json")


@pytest.fixture(scope="module")
def mosaics(tiny: CocoDataset) -> Mosaics:
    return compose_mosaics(tiny, GRID, seed=0)


def stitch_by_origin(dets: Detections, grid: TileGrid) -> Detections:
    """The trivial stitch: tile pixels + tile origin."""
    offset = np.tile(grid.origins[dets.tile_index], 2).astype(np.float32)
    return Detections(dets.xyxy + offset, dets.score, dets.class_id, dets.tile_index)


def gt_as_detections(gt: dict, shift: float = 0.0) -> np.ndarray:
    """Every non-crowd GT box as a score-1 detection, optionally shifted right by `shift` widths."""
    anns = [a for a in gt["annotations"] if not a["iscrowd"]]
    box = np.asarray([a["bbox"] for a in anns], np.float64)
    box[:, 0] += shift * box[:, 2]
    ids = np.asarray([a["image_id"] for a in anns], np.float64)
    cats = np.asarray([a["category_id"] for a in anns], np.float64)
    return np.c_[ids, box, np.ones(len(anns)), cats]


def test_ground_truth_as_detections_scores_one_at_tile_and_frame_level(mosaics: Mosaics) -> None:
    tile = coco_scores(mosaics.tile_gt, gt_as_detections(mosaics.tile_gt))
    frame = coco_scores(mosaics.frame_gt, gt_as_detections(mosaics.frame_gt), max_dets=frame_max_dets(GRID))
    assert tile == pytest.approx(dict.fromkeys(tile, 1.0))
    assert frame == pytest.approx(dict.fromkeys(frame, 1.0))


def test_shifted_boxes_score_lower(mosaics: Mosaics) -> None:
    # shifted by 30 % of the width: IoU 0.7/1.3 ≈ 0.54, a hit at IoU .50 only
    tile = coco_scores(mosaics.tile_gt, gt_as_detections(mosaics.tile_gt, shift=0.3))
    frame = coco_scores(mosaics.frame_gt, gt_as_detections(mosaics.frame_gt, shift=0.3), max_dets=frame_max_dets(GRID))
    for scores in (tile, frame):
        assert scores["AP50"] > 0.9
        assert scores["AP75"] == 0.0
        assert 0.05 < scores["mAP"] < 0.2
    assert frame["mAP"] == pytest.approx(tile["mAP"], abs=1e-6)


def test_mapping_input_equals_array_input(mosaics: Mosaics) -> None:
    arr = gt_as_detections(mosaics.frame_gt, shift=0.1)
    by_image = {}
    for image_id in np.unique(arr[:, 0]).astype(int):
        rows = arr[arr[:, 0] == image_id]
        xyxy = np.c_[rows[:, 1:3], rows[:, 1:3] + rows[:, 3:5]]
        by_image[image_id] = Detections(xyxy, rows[:, 5], rows[:, 6])
    caps = frame_max_dets(GRID)
    assert coco_scores(mosaics.frame_gt, by_image, max_dets=caps) == pytest.approx(
        coco_scores(mosaics.frame_gt, arr, max_dets=caps), abs=1e-5
    )


def _one_frame_gt(k: int = 63) -> dict:
    """A frame of k tiles, one 'person' (id 1) per tile at tile-local (50, 50, 100, 100)."""
    images = [{"id": t + 1, "width": 300, "height": 300} for t in range(k)]
    anns = [
        {"id": t + 1, "image_id": t + 1, "bbox": [50.0, 50.0, 100.0, 100.0], "area": 1e4, "category_id": 1, "iscrowd": 0}
        for t in range(k)
    ]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def test_frame_level_needs_max_dets_scaled_by_tiles_per_frame() -> None:
    # each tile: 9 confident false positives and the true box at a lower score
    tile_gt = _one_frame_gt()
    frame_gt = {
        "images": [{"id": 1, "width": 2700, "height": 2100}],
        "annotations": [
            {**a, "image_id": 1, "bbox": [a["bbox"][0] + x, a["bbox"][1] + y, 100.0, 100.0]}
            for a, (x, y) in zip(tile_gt["annotations"], GRID.origins.tolist())
        ],
        "categories": tile_gt["categories"],
    }
    rows_tile, rows_frame = [], []
    for t, (x, y) in enumerate(GRID.origins.tolist()):
        boxes = [(200.0, 200.0, 20.0, 20.0, 0.9)] * 9 + [(50.0, 50.0, 100.0, 100.0, 0.5)]
        for bx, by, w, h, s in boxes:
            rows_tile.append([t + 1, bx, by, w, h, s, 1])
            rows_frame.append([1, bx + x, by + y, w, h, s, 1])
    tile = coco_scores(tile_gt, np.asarray(rows_tile))
    frame = coco_scores(frame_gt, np.asarray(rows_frame), max_dets=frame_max_dets(GRID))
    capped = coco_scores(frame_gt, np.asarray(rows_frame), max_dets=COCO_MAX_DETS)
    assert frame["mAP"] == pytest.approx(tile["mAP"], abs=1e-9)
    assert tile["mAP"] > 0.05
    assert capped["mAP"] < tile["mAP"] / 2  # 630 detections, 100 scored: most hits never seen


def test_score_floor_and_per_image_cap() -> None:
    gt = _one_frame_gt(k=1)
    hit = [1, 50, 50, 100, 100, 0.0005, 1]
    assert coco_scores(gt, np.asarray([hit]))["mAP"] == 0.0  # below the 0.001 floor
    assert coco_scores(gt, np.asarray([hit]), score_floor=0.0)["mAP"] == pytest.approx(1.0)
    # 100 better-scored misses push the hit beyond the 100-per-image cap
    misses = [[1, 200, 200, 10, 10, 0.9, 1]] * 100
    assert coco_scores(gt, np.asarray(misses + [[1, 50, 50, 100, 100, 0.5, 1]]))["AP50"] == 0.0


def test_empty_and_bad_detections() -> None:
    gt = _one_frame_gt(k=2)
    # no detections: 0 where there is GT (boxes of area 1e4 are COCO "large"), -1 where there is none
    assert coco_scores(gt, {}) == {"mAP": 0.0, "AP50": 0.0, "AP75": 0.0, "AP_small": -1.0, "AP_medium": -1.0, "AP_large": 0.0}
    with pytest.raises(ValueError, match="image ids absent"):
        coco_scores(gt, np.asarray([[99, 0, 0, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="expected \\(N, 7\\)"):
        coco_scores(gt, np.zeros((3, 6)))


def test_detections_to_coco_array_converts_xyxy_to_xywh() -> None:
    dets = Detections([[10, 20, 40, 60]], [0.7], [18])
    np.testing.assert_allclose(detections_to_coco_array(5, dets), [[5, 10, 20, 30, 40, 0.7, 18]], rtol=1e-6)


class OracleDetector(Detector):
    """Returns, for each batch, the tile GT of the frame it belongs to (plus junk on the padding tile).

    Its spec is the COCO-trained default model's: class ids are COCO category ids, as the GT's."""

    backend = "oracle"
    precision = "exact"

    def __init__(self, mosaics: Mosaics, shift: float = 0.0) -> None:
        self.spec = load_spec("ssd_mobilenet_v2_coco")
        self.mosaics = mosaics
        self.shift = shift
        self.calls = 0
        self.thresholds: list[float | None] = []

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        assert tiles.shape == (64, 300, 300, 3) and tiles.dtype == np.uint8
        self.thresholds.append(score_threshold)
        ids = self.mosaics.tile_image_ids[self.calls]
        self.calls += 1
        anns = [a for a in self.mosaics.tile_gt["annotations"] if a["image_id"] in set(ids.tolist()) and not a["iscrowd"]]
        box = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        box[:, 0] += self.shift * box[:, 2]
        tile = np.searchsorted(ids, [a["image_id"] for a in anns])
        real = Detections(np.c_[box[:, :2], box[:, :2] + box[:, 2:]], np.ones(len(anns)), [a["category_id"] for a in anns], tile)
        junk = Detections([[0, 0, 300, 300]] * 3, [0.99] * 3, [1] * 3, [63] * 3)  # the padding tile: never scored
        return Detections.merge([real, junk])


def test_evaluate_with_an_oracle_detector_scores_one_at_both_levels(tiny: CocoDataset) -> None:
    subset = compose_mosaics(tiny, GRID, seed=2, limit=20)
    oracle = OracleDetector(subset)
    report = evaluate(oracle, tiny, GRID, stitch_fn=stitch_by_origin, max_tiles=20, seed=2)
    assert oracle.calls == 1 == report.frames and report.images == 20 and report.tiles == 63
    assert oracle.thresholds == [0.001]
    assert report.tile["mAP"] == pytest.approx(1.0) and report.frame["mAP"] == pytest.approx(1.0)
    assert report.tile_detections == report.frame_detections == sum(1 for a in subset.tile_gt["annotations"] if not a["iscrowd"])
    assert report.frame_max_dets == (63, 630, 6300) and report.tiles_per_s > 0
    data = json.loads(report.to_json())
    assert data["tile"]["mAP"] == pytest.approx(1.0) and data["stitch_gap"] == pytest.approx(0.0)


def test_evaluate_frame_level_equals_tile_level_for_imperfect_boxes(tiny: CocoDataset) -> None:
    subset = compose_mosaics(tiny, GRID, seed=2, limit=20)
    report = evaluate(OracleDetector(subset, shift=0.15), tiny, GRID, stitch_fn=stitch_by_origin, max_tiles=20, seed=2)
    assert report.tile["mAP"] < 0.9
    assert report.frame["mAP"] == pytest.approx(report.tile["mAP"], abs=1e-6)
