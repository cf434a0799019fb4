"""Stitch time against the score floor on scene frames (issue 10 item 5: post-processing scales with boxes).

    .venv/bin/python benchmarks/cpu-2core/stitch_scaling.py [--frames 3 --reps 15]   # reads ../shared (or $INSPECTION_SHARED)

Scene frames of seed 0 (synthetic.scenes), one onnxruntime detection per frame and grid at COCO's
0.001 floor; the operating set is the same detections at score >= 0.3. `stitch` (default
config: cut joining, global-view fusion; overlap grid: NMM/IoS) is then timed alone on both,
interleaved, median of `reps` runs per frame. The old pairwise rule is timed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inspection.config import DetectConfig, ModelConfig, StitchConfig  # noqa: E402
from inspection.detect import create_detector  # noqa: E402
from inspection.stitch import stitch  # noqa: E402
from inspection.tiling import TileGrid, detect_in_chunks  # noqa: E402
from synthetic.coco import CocoDataset  # noqa: E402
from synthetic.scenes import compose_scenes  # noqa: E402

SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))


def main(frames: int = 3, reps: int = 15) -> dict:
    coco = SHARED / "data" / "coco_tiny"
    dataset = CocoDataset.load(coco / "val2017", coco / "annotations" / "instances_val2017.json")
    detector = create_detector(ModelConfig(path=SHARED / "models" / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx"), DetectConfig())
    scenes = compose_scenes(dataset, TileGrid(), frames, seed=0)
    cases = {
        "64 slots, new default": (TileGrid(global_view=True), StitchConfig()),
        "64 slots, old pairwise rule": (
            TileGrid(),
            StitchConfig(border_rule="pairwise", fusion_score="max", border_tolerance_px=2.0),
        ),
        "overlap 60 (128 slots), NMM/IoS": (TileGrid(overlap=60, global_view=True), StitchConfig()),
    }
    times: dict[str, dict[str, list[float]]] = {name: {"0.001": [], "0.3": []} for name in cases}
    boxes: dict[str, dict[str, int]] = {name: {"0.001": 0, "0.3": 0} for name in cases}
    for frame in scenes.frames():
        for name, (grid, config) in cases.items():
            d = detect_in_chunks(lambda b: detector.detect(b, score_threshold=0.001), grid.tiles(frame), grid)
            sets = {"0.001": d, "0.3": d.with_score_at_least(0.3)}
            for floor, dets in sets.items():
                boxes[name][floor] += len(dets)
            for _ in range(reps):
                for floor, dets in sets.items():  # interleaved: load changes hit both floors alike
                    start = time.perf_counter()
                    stitch(dets, grid, config)
                    times[name][floor].append(time.perf_counter() - start)
    result = {}
    print(f"stitch on {frames} scene frames (seed 0), median of {reps} runs each, ms per frame")
    print(f"{'case':34s} {'floor':>6s} {'boxes/frame':>12s} {'ms':>8s}")
    for name in cases:
        for floor in ("0.3", "0.001"):
            ms = statistics.median(times[name][floor]) * 1000
            result.setdefault(name, {})[floor] = {"boxes_per_frame": boxes[name][floor] / frames, "ms": ms}
            print(f"{name:34s} {floor:>6s} {boxes[name][floor] / frames:12.0f} {ms:8.1f}")
        ratio = result[name]["0.001"]["ms"] / result[name]["0.3"]["ms"]
        result[name]["ratio_floor_to_operating"] = ratio
        print(f"{name:34s}  floor 0.001 / operating 0.3 = {ratio:.1f}×")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3, help="scene frames (seed 0)")
    parser.add_argument("--reps", type=int, default=15, help="timed stitch runs per frame, case and floor")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("stitch_scaling.json"))
    args = parser.parse_args()
    args.out.write_text(json.dumps(main(args.frames, args.reps), indent=2))
