"""`bench --peers sahi`: our frame path and SAHI's sliced prediction around the same detector, same frames."""

from __future__ import annotations

import pytest

from inspection.config import DetectConfig, GridConfig, ModelConfig, StitchConfig
from inspection.detect import create_detector
from inspection.tiling import TileGrid
from inspection.tools.peers import run_peers, sahi_missing
from synthetic.coco import CocoDataset

pytestmark = pytest.mark.timeout(600)

GRID = GridConfig(frame_width=900, frame_height=600, tile_size=300, batch_size=6)  # 3 x 2 tiles


@pytest.fixture(scope="module")
def peer_setup(yolox_onnx, coco_tiny):
    detector = create_detector(ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx), DetectConfig())
    dataset = CocoDataset.load(coco_tiny / "val2017", coco_tiny / "annotations" / "instances_val2017.json")
    yield detector, dataset
    detector.close()


def test_our_path_is_timed_and_scored_at_both_thresholds(peer_setup):
    detector, dataset = peer_setup
    rows = run_peers(
        detector, dataset, TileGrid.from_config(GRID), StitchConfig(), thresholds=(0.3, 0.001), sahi_batches=(6, 1), frames=2
    )
    ours = {r.score_threshold: r for r in rows if r.method == "ours"}
    assert set(ours) == {0.3, 0.001}
    assert all(r.ms_per_frame > 0 and r.frames == 2 for r in rows)
    assert 0 < ours[0.3].frame_map <= 1 and ours[0.001].detections_per_frame > ours[0.3].detections_per_frame
    if sahi_missing() is None:
        methods = {(r.method, r.score_threshold) for r in rows}
        assert {("sahi batch 6", 0.3), ("sahi batch 1", 0.3), ("sahi batch 6", 0.001)} <= methods
        for r in rows:
            # same detector and the same slices: only the merge differs (SAHI's NMS vs our border join)
            assert abs(r.frame_map - ours[r.score_threshold].frame_map) < 0.05, r
    else:
        assert {r.method for r in rows} == {"ours"}
