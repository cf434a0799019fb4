"""Second-look settings on the tuning seeds (issue 21): which crops, how many, when a crop box replaces a piece.

    INSPECTION_SHARED=../shared python benchmarks/cpu-2core/second_look_tuning.py --scenes 3 > benchmarks/cpu-2core/second_look_tuning.txt

Seeds 100 and 101 (issue 10's tuning seeds; the scene table is scored on 0, 1, 2), N scenes each. One
onnxruntime call per frame at COCO's 0.001 floor, stitched with the default config once; then each variant of
`SecondLookConfig` runs its own crops' call. s/frame: the first call + the variant's second look (the machine
is shared: compare rows of one seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inspection.config import DetectConfig, ModelConfig, SecondLookConfig, StitchConfig  # noqa: E402
from inspection.detect import create_detector  # noqa: E402
from inspection.second_look import second_look  # noqa: E402
from inspection.stitch import stitch  # noqa: E402
from inspection.tiling import TileGrid, detect_in_chunks  # noqa: E402
from inspection.tools.evaluate import category_map, to_dataset_classes  # noqa: E402
from inspection.tools.scene_eval import _score  # noqa: E402
from synthetic.coco import CocoDataset  # noqa: E402
from synthetic.scenes import compose_scenes  # noqa: E402

SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))
VARIANTS = {
    "base": None,
    "default": SecondLookConfig(),
    "ratio0": SecondLookConfig(replace_min_ratio=0.0),
    "ratio0.5": SecondLookConfig(replace_min_ratio=0.5),
    "min0.1": SecondLookConfig(min_score=0.1),
    "min0.5": SecondLookConfig(min_score=0.5),
    "crops8": SecondLookConfig(max_crops=8),
    "crops16": SecondLookConfig(max_crops=16),
    "cover0.7": SecondLookConfig(cover_threshold=0.7),
}
SHOWN = ("mAP", "AP_crossing", "AP_inside", "border_recall", "s_per_frame")


def main(scenes_per_seed: int, seeds: tuple[int, ...] = (100, 101)) -> dict[str, list[dict[str, float]]]:
    coco = SHARED / "data" / "coco_tiny"
    dataset = CocoDataset.load(coco / "val2017", coco / "annotations" / "instances_val2017.json")
    detector = create_detector(ModelConfig(path=SHARED / "models" / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx"), DetectConfig())
    mapping = category_map(detector.spec.class_names, dataset.categories)
    grid = TileGrid(global_view=True)
    config = StitchConfig()

    def detect(batch: np.ndarray):
        return to_dataset_classes(detector.detect(batch, score_threshold=0.001), mapping)

    results: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        scenes = compose_scenes(dataset, grid, scenes_per_seed, seed)
        out: dict[str, dict] = {k: {} for k in VARIANTS}
        seconds = dict.fromkeys(VARIANTS, 0.0)
        for f, frame in enumerate(scenes.frames()):
            fid = int(scenes.frame_ids[f])
            batch = grid.tiles(frame)
            start = time.perf_counter()
            tiles = detect_in_chunks(detect, batch, grid)
            first_s = time.perf_counter() - start
            stitched = stitch(tiles, grid, config)
            for name, look in VARIANTS.items():
                start = time.perf_counter()
                d = stitched if look is None else second_look(stitched, batch, grid, detect, look, config.border_tolerance_px)
                seconds[name] += first_s + time.perf_counter() - start
                out[name][fid] = d
        for name in VARIANTS:
            scores = _score(name, seed, scenes, out[name], seconds[name], 0.001).scores
            results.setdefault(name, []).append(scores)
            print(seed, name, {k: round(scores[k], 3) for k in SHOWN}, flush=True)
    print("MEAN")
    for name, rows in results.items():
        print(name, {k: round(float(np.mean([r[k] for r in rows])), 3) for k in SHOWN})
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=3, help="scenes per tuning seed")
    parser.add_argument("--seeds", default="100,101", help="tuning seeds (the scene table is scored on 0,1,2)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("second_look_tuning.json"))
    args = parser.parse_args()
    seeds = tuple(int(v) for v in args.seeds.split(",") if v.strip())
    args.out.write_text(json.dumps(main(args.scenes, seeds), indent=2))
