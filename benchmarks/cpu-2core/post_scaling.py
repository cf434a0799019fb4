"""The torch backend's post-processing against the score floor, on the CPU (issue 13 item 5).

    .venv/bin/python benchmarks/cpu-2core/post_scaling.py      # reads ../shared (or $INSPECTION_SHARED)

One CPU forward of 64 real coco_tiny tiles (raw_fp32.onnx), then `select_from_candidates` (floor,
top-k per class, NMS, per-tile cap, one copy out) timed alone at the operating threshold 0.3 and
the evaluation floor 0.001: with NMS over each tile's best 3×max_per_tile candidates first (the
default) and over every candidate in one round (the code before), for the numpy NMS (the CPU
default) and `tile_dense_nms` (the CUDA default). Prints wall-clock medians; results are identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inspection.config import DetectConfig, ModelConfig  # noqa: E402
from inspection.detect import load_spec  # noqa: E402
from tests.gpu.detection_checks import coco_tiles  # noqa: E402

SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))


def main(reps: int = 3, n_tiles: int = 64) -> None:
    import torch  # the torch extra: imported here so that --help answers without it

    from inspection.detect.torch import TorchDetector
    from inspection.detect.torch_post import TorchCandidates, numpy_nms, select_from_candidates, tile_dense_nms

    spec = load_spec("ssd_mobilenet_v2_coco")
    config = DetectConfig()
    tiles = coco_tiles(SHARED / "data" / "coco_tiny", n_tiles)[0]
    onnx = SHARED / "models" / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx"
    raw = TorchDetector(spec, ModelConfig(backend="torch", device="cpu", path=onnx), config).forward(tiles)
    candidates = TorchCandidates(spec, config, (300, 300), torch.device("cpu"))({k: torch.from_numpy(v) for k, v in raw.items()})
    class_ids = torch.as_tensor(spec.output_class_ids)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; {n_tiles} coco_tiny tiles; median of {reps}"
    )
    print(f"{'floor':>6s} {'NMS':>14s} {'first round':>20s} {'ms':>9s} {'boxes':>6s}")
    for floor in (0.3, 0.001):
        results = []
        for nms in (numpy_nms, tile_dense_nms):
            for label, prefix in (("best 300 per tile", None), ("all (before)", 10**9)):
                times = []
                for _ in range(reps):
                    t = time.perf_counter()
                    found = select_from_candidates(candidates, n_tiles, class_ids, config, (300, 300), floor, nms, prefix)
                    times.append((time.perf_counter() - t) * 1e3)
                results.append(found)
                print(f"{floor:6g} {nms.__name__:>14s} {label:>20s} {statistics.median(times):9.1f} {len(found):6d}", flush=True)
        for other in results[1:]:
            assert np.array_equal(other.xyxy, results[0].xyxy) and np.array_equal(other.tile_index, results[0].tile_index)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="timed runs per floor, NMS and first round")
    parser.add_argument("--tiles", type=int, default=64, help="coco_tiny tiles in the batch")
    args = parser.parse_args()
    main(args.reps, args.tiles)
