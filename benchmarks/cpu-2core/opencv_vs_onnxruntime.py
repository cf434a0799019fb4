"""Why the opencv backend was retired (issue 16): cv2.dnn against onnxruntime on the same converted ONNX graph.

    .venv/bin/python benchmarks/cpu-2core/opencv_vs_onnxruntime.py --out benchmarks/cpu-2core/opencv_retired.json

Runs with whatever OpenCV is installed (4.x or 5.x; it needs only cv2, numpy and onnxruntime, so it also runs
in a bare venv with `opencv-python-headless<5`). The batch is 64 real coco_tiny photos resized to 300x300 tiles
(the network's input, NHWC RGB scaled x*2/255-1); both runtimes get the same array, timed interleaved
(opencv, onnxruntime, opencv, ...) so machine load hits both alike; the raw outputs are compared element-wise.
OpenCV 5 has no TensorFlow importer (what the backend used to run), so the ONNX graph is the only way left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))


def photo_tiles(folder: Path, n: int) -> np.ndarray:
    """(n, 300, 300, 3) float32 network input from the first n images of `folder` (sorted)."""
    paths = sorted(folder.glob("*.jpg"))[:n]
    tiles = [cv2.resize(cv2.imread(str(p))[:, :, ::-1], (300, 300), interpolation=cv2.INTER_AREA) for p in paths]
    return np.stack(tiles).astype(np.float32) * (2.0 / 255.0) - 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=SHARED / "models" / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx")
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "coco_tiny" / "val2017")
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    x = photo_tiles(args.images, args.tiles)
    session = onnxruntime.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    net = cv2.dnn.readNetFromONNX(str(args.onnx))
    result: dict = {
        "command": f"python benchmarks/cpu-2core/opencv_vs_onnxruntime.py --tiles {args.tiles} --rounds {args.rounds}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} before",
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tiles": len(x),
    }

    def run_opencv() -> list[np.ndarray]:
        net.setInput(x)
        return list(net.forward(names))

    try:
        cv_out = run_opencv()
    except cv2.error as exc:  # OpenCV 4's importer: a batch > 1 breaks its shape inference of the graph's concat
        result["opencv_error"] = str(exc).strip().splitlines()[-1]
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"OpenCV {cv2.__version__} cannot run a batch of {len(x)}: {result['opencv_error']}")
        return
    ort_out = session.run(names, {session.get_inputs()[0].name: x})
    times: dict[str, list[float]] = {"opencv": [], "onnxruntime": []}
    for _ in range(args.rounds):
        for name, run in (("opencv", run_opencv), ("onnxruntime", lambda: session.run(names, {session.get_inputs()[0].name: x}))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result.update(
        {
            "max_abs_diff": {n: float(np.abs(a - b).max()) for n, a, b in zip(names, cv_out, ort_out)},
            "seconds_per_batch_median": medians,
            "seconds_per_batch_all": times,
            "opencv_over_onnxruntime": medians["opencv"] / medians["onnxruntime"],
            "load_after": os.getloadavg()[0],
        }
    )
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("opencv", "max_abs_diff", "seconds_per_batch_median", "opencv_over_onnxruntime")}))


if __name__ == "__main__":
    main()
