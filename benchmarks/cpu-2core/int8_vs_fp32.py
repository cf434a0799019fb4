"""INT8 (QDQ, `inspection model quantize`) against fp32 on the CPU: coco_tiny mAP and time per frame.

The CPU of the development machine is shared, so the variants are timed interleaved (fp32, int8,
int8-tensorrt-flavour, fp32, ...) in the same run, each round on the same 64-tile photo frame,
and the load average is recorded before and after. Run from the repository root:

    .venv/bin/python benchmarks/cpu-2core/int8_vs_fp32.py \
        --images ../shared/data/coco_tiny/val2017 \
        --annotations ../shared/data/coco_tiny/annotations/instances_val2017.json \
        --rounds 7 --out benchmarks/cpu-2core/int8.json

Uses the model cache (`INSPECTION_MODEL_DIR`): the fp32 graph is converted on first use and the
INT8 graphs are made with the default calibration (256 tiles of the demo's photo frames) when absent.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import onnxruntime

from inspection.bench import bench_frame, machine_description
from inspection.config import DetectConfig, ModelConfig, Settings, StitchConfig
from inspection.detect import create_detector, load_spec
from inspection.detect.quantize import FLAVOURS, QuantizeSettings, int8_metadata, int8_path, quantize_model
from inspection.evaluate import evaluate
from inspection.stitch import stitch
from inspection.tiling import TileGrid
from synthetic.coco import CocoDataset


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--model", default="ssd_mobilenet_v2_coco")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/cpu-2core/int8.json"))
    parser.add_argument("--max-tiles", type=int, default=None, help="score only the first N images (a smoke run); all by default")
    parser.add_argument("--calibration-tiles", type=int, default=QuantizeSettings().tiles, help="tiles that calibrate INT8")
    parser.add_argument("--flavours", default=",".join(FLAVOURS), help=f"INT8 graphs to make and time, of: {', '.join(FLAVOURS)}")
    args = parser.parse_args()
    flavours = [f for f in args.flavours.split(",") if f]

    spec = load_spec(args.model)
    grid = TileGrid()
    if not all(int8_path(spec, flavour=f).is_file() for f in flavours):
        settings = QuantizeSettings(tiles=args.calibration_tiles)
        quantize_model(spec, grid, settings=settings, flavours=flavours, progress=print)
    variants = {"fp32": ModelConfig(name=args.model, backend="onnxruntime", precision="fp32")}
    if "onnxruntime" in flavours:
        variants["int8"] = ModelConfig(name=args.model, backend="onnxruntime", precision="int8")
    if "tensorrt" in flavours:
        variants["int8 (tensorrt flavour, run by onnxruntime)"] = ModelConfig(
            name=args.model, backend="onnxruntime", precision="int8", path=int8_path(spec, flavour="tensorrt")
        )
    detectors = {name: create_detector(model, DetectConfig()) for name, model in variants.items()}

    dataset = CocoDataset.load(args.images, args.annotations)
    accuracy = {}
    for name, detector in detectors.items():
        report = evaluate(
            detector, dataset, grid, stitch_fn=functools.partial(stitch, config=StitchConfig()), max_tiles=args.max_tiles
        )
        accuracy[name] = {"tile": report.tile, "frame": report.frame}
        print(f"{name}: tile mAP {report.tile['mAP']:.4f} frame mAP {report.frame['mAP']:.4f}", flush=True)

    batch = grid.tiles(bench_frame(Settings()))
    load_before = load()
    times: dict[str, list[float]] = {name: [] for name in detectors}
    forward: dict[str, list[float]] = {name: [] for name in detectors}
    for detector in detectors.values():  # warm-up: first runs allocate and pick kernels
        detector.detect(batch)
    for _ in range(args.rounds):
        for name, detector in detectors.items():
            start = time.perf_counter()
            detector.detect(batch)
            times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            detector.forward(batch)
            forward[name].append(time.perf_counter() - start)
    load_after = load()
    fp32_median = statistics.median(times["fp32"])
    timing = {
        name: {
            "frame_s_median": round(statistics.median(t), 3),
            "frame_s_min": round(min(t), 3),
            "frame_s_all": [round(x, 3) for x in t],
            "forward_s_median": round(statistics.median(forward[name]), 3),
            "speedup_vs_fp32": round(fp32_median / statistics.median(t), 2),
        }
        for name, t in times.items()
    }
    for name, t in timing.items():
        print(
            f"{name}: {t['frame_s_median']} s per frame (64 tiles, detect incl. NMS), x{t['speedup_vs_fp32']} vs fp32", flush=True
        )
    result = {
        "command": shlex.join([sys.executable.split("/")[-1], *sys.argv]),
        "machine": machine_description(),
        "onnxruntime": onnxruntime.__version__,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rounds": args.rounds,
        "batch": "one 2700x2100 photo frame = 63 tiles + 1 blank, detect() with the 0.3 operating threshold",
        "calibration": int8_metadata(spec),
        "accuracy_coco_tiny": accuracy,
        "time_per_frame": timing,
    }
    result["calibration"] = {k: v for k, v in (result["calibration"] or {}).items() if k != "excluded_nodes"}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
