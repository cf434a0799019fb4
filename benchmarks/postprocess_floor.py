"""Post-processing cost at the evaluation floor (score 0.001) vs the operating threshold (0.3), CPU numpy.

Issue 13 item 5: detect's post-processing (decode + candidate selection + batched class-wise NMS +
per-tile cap, `inspection.detect.postprocess`) and `stitch` per frame must cost at most 2x at the
floor what they cost at the operating threshold. The network runs once per frame (its outputs do not
depend on the threshold); only what follows it is timed, on real mosaic frames of a COCO set.

    python -m benchmarks.postprocess_floor --images ../shared/data/coco_tiny/val2017 \
        --annotations ../shared/data/coco_tiny/annotations/instances_val2017.json \
        --out benchmarks/cpu-2core/postprocess_floor.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from inspection.config import load_settings
from inspection.detect import create_detector
from inspection.detect.postprocess import select_detections
from inspection.stitch import stitch
from inspection.tiling import TileGrid
from inspection.tools.bench import machine_description
from synthetic.coco import CocoDataset
from synthetic.compose import compose_mosaics


def median_ms(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--thresholds", default="0.3,0.001")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    settings = load_settings(None, {"model.backend": "onnxruntime"})
    grid = TileGrid.from_config(settings.grid)
    detector = create_detector(settings.model, settings.detect)
    mosaics = compose_mosaics(CocoDataset.load(args.images, args.annotations), grid, limit=args.frames * grid.num_tiles)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows = []
    for f, frame in enumerate(mosaics.frames):
        tiles = grid.tiles(frame)
        outputs = detector.forward(tiles)
        for threshold in thresholds:

            def post(threshold: float = threshold, outputs=outputs, tiles=tiles):
                raw = detector.decoder.decode(outputs)
                return select_detections(raw, detector.spec, settings.detect, tiles.shape[1:3], threshold)

            dets = post()
            rows.append(
                {
                    "frame": f,
                    "score_threshold": threshold,
                    "tile_boxes": len(dets),
                    "frame_boxes": len(stitch(dets, grid, settings.stitch)),
                    "postprocess_ms": median_ms(post, args.repeats),
                    "stitch_ms": median_ms(lambda dets=dets: stitch(dets, grid, settings.stitch), args.repeats),
                }
            )
            print(rows[-1], flush=True)
    summary = {}
    for threshold in thresholds:
        mine = [r for r in rows if r["score_threshold"] == threshold]
        summary[str(threshold)] = {
            key: statistics.median(r[key] for r in mine) for key in ("tile_boxes", "postprocess_ms", "stitch_ms")
        }
        summary[str(threshold)]["total_ms"] = summary[str(threshold)]["postprocess_ms"] + summary[str(threshold)]["stitch_ms"]
    operating, floor = (summary[str(t)]["total_ms"] for t in thresholds[:2])
    result = {
        "command": "python -m benchmarks.postprocess_floor " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": machine_description(),
        "model": settings.model.name,
        "backend": detector.backend,
        "rows": rows,
        "median_per_frame": summary,
        "floor_over_operating": floor / operating,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2), f"\nfloor/operating = {floor / operating:.2f}")


if __name__ == "__main__":
    main()
