"""The scene table on a real detector and real COCO images (one scene: a fast check of the wiring)."""

from __future__ import annotations

import pytest

from inspection.config import DetectConfig, ModelConfig, StitchConfig
from inspection.detect import create_detector
from inspection.tiling import TileGrid
from inspection.tools.scene_eval import ONE_SHOT, evaluate_scenes
from synthetic.coco import CocoDataset


@pytest.fixture(scope="module")
def dataset(coco_tiny) -> CocoDataset:
    return CocoDataset.load(coco_tiny / "val2017", coco_tiny / "annotations" / "instances_val2017.json")


def test_one_scene_scores_every_configuration_and_tiling_beats_one_shot(dataset, ssd_onnx):
    detector = create_detector(ModelConfig(backend="onnxruntime", path=ssd_onnx), DetectConfig())
    calls: list[str] = []
    detector.warmup = lambda tile_hw: calls.append(f"warmup {tile_hw}")  # type: ignore[method-assign]
    detect = detector.detect
    detector.detect = lambda *a, **k: calls.append("detect") or detect(*a, **k)  # type: ignore[method-assign]
    report = evaluate_scenes(
        detector, dataset, TileGrid(global_view=True), StitchConfig(), num_scenes=1, seeds=(0,), overlaps=(), sahi=False
    )
    assert calls[0] == "warmup (300, 300)" and "warmup (300, 300)" not in calls[1:]  # built before anything is timed
    names = report.names()
    assert names[0] == ONE_SHOT and len(names) == 7
    assert "one call + second look, tile-sized crops only (max_zoom 1)" in names  # what the zoom-out windows add
    assert report.scenes[0]["objects"] > 0 and 0 < report.scenes[0]["crossing_share"] <= 1
    for row in report.rows:
        assert 0.0 <= row.scores["mAP"] <= 1.0 and 0.0 <= row.scores["border_recall"] <= 1.0 and row.detections > 0
    by_name = {r.name: r.scores for r in report.rows}
    default = next(n for n in names if n.startswith("one call:"))
    looked = next(n for n in names if n.startswith("one call + second look"))
    assert by_name[default]["mAP"] > by_name[ONE_SHOT]["mAP"]
    # the default row really has the global view's boxes: it differs from the same joining without them
    count = {r.name: r.detections for r in report.rows}
    assert count[default] != count[next(n for n in names if n.startswith("63+1 tiles, cut joining"))]
    # the second look re-detects cut objects: its own boxes, at least as many crossing objects found
    assert count[looked] != count[default]
    assert by_name[looked]["border_recall"] >= by_name[default]["border_recall"]
    for row in report.rows:  # AP of the crossing and the other objects, each in [0, 1]
        assert 0.0 <= row.scores["AP_crossing"] <= 1.0 and 0.0 <= row.scores["AP_inside"] <= 1.0
    data = report.to_dict()
    assert set(data["summary"][default]) >= {"mAP", "AP_small", "AP_medium", "AP_large", "AP_crossing", "border_recall"}
    options = report.grid_options({"cpu_model": "test cpu", "cpu_count": 2})
    assert set(options["options"]) == {"one_call", "second_look"} and options["scenes"] == 1
    assert options["options"]["second_look"]["s_per_frame"] == by_name[looked]["s_per_frame"]
