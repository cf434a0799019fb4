"""Timings of the torch backend on a CUDA GPU (a script, not a test: tests assert no timings).

    INSPECTION_SHARED=../shared python tests/gpu/torch_timing.py [--out timings.json]

Measures, on real coco_tiny tiles: the bare network (normalisation + forward) for a 64-tile batch
in fp16 with its CUDA graph, fp32 eager at batch 1 and the variants between; the full `detect()`
per 64-tile numpy batch (pinned upload, graph replay, GPU NMS, download); `detect_tensor` on
tiles already on the GPU; nvJPEG decode of a 2700×2100 frame (single and batched) against
OpenCV on one CPU core; `tile_on_gpu`. GPU-side times are CUDA-event medians; host-side ones
are wall-clock medians after synchronisation.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inspection.config import DetectConfig, ModelConfig  # noqa: E402
from inspection.detect import load_spec  # noqa: E402
from inspection.detect.torch import TorchDetector  # noqa: E402
from inspection.detect.torch_post import torchvision_batched_nms  # noqa: E402
from inspection.edge.gpu_frames import decode_jpegs_cuda, tile_on_gpu  # noqa: E402
from inspection.tiling import TileGrid  # noqa: E402
from tests.gpu.detection_checks import coco_tiles  # noqa: E402

SHARED = Path(os.environ.get("INSPECTION_SHARED", REPO.parent / "shared"))


def gpu_median_ms(fn, reps: int = 50, warmup: int = 5) -> float:
    """Median of per-call CUDA-event times (ms)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def wall_median_ms(fn, reps: int = 30, warmup: int = 3) -> float:
    """Median wall-clock time (ms) of calls that end synchronised (results on the host)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--onnx", type=Path, default=None)
    parser.add_argument(
        "--map", action="store_true", help="also the coco_tiny tile-level mAP (onnxruntime reference, torch fp32/fp16)"
    )
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms for these shapes")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    ssd_dir = SHARED / "models" / "ssd_mobilenet_v2_coco"
    onnx = args.onnx or next(p for p in (ssd_dir / "raw_fp32.onnx", ssd_dir / "raw_fp16.onnx") if p.is_file())
    spec = load_spec("ssd_mobilenet_v2_coco")
    tiles = coco_tiles(SHARED / "data" / "coco_tiny", 64)[0]
    tiles_gpu = torch.from_numpy(tiles).cuda()
    results: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "onnx_file": onnx.name,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }

    def section(name, fn):
        try:
            value = fn()
            results[name] = round(value, 3) if isinstance(value, float) else value
            print(f"{name:58s} {results[name]}", flush=True)
        except Exception:
            results[name] = "error: " + traceback.format_exc(limit=3)
            print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)

    def detector(precision, graph, batch=64, model="ssd_mobilenet_v2_coco", path=onnx):
        cfg = ModelConfig(name=model, backend="torch", device="cuda", precision=precision, path=path, cuda_graph=graph)
        return TorchDetector(load_spec(model), cfg, DetectConfig(), batch_size=batch)

    fp16 = detector("fp16", True)
    fp32 = detector("fp32", True)
    section("forward fp16 cuda-graph batch64 ms (median, events)", lambda: gpu_median_ms(lambda: fp16.forward_only(tiles_gpu)))
    section("forward fp32 cuda-graph batch64 ms", lambda: gpu_median_ms(lambda: fp32.forward_only(tiles_gpu)))
    eager16 = detector("fp16", False)
    eager32 = detector("fp32", False, batch=1)
    section("forward fp16 eager batch64 ms", lambda: gpu_median_ms(lambda: eager16.forward_only(tiles_gpu)))
    section("forward fp32 eager batch1 ms", lambda: gpu_median_ms(lambda: eager32.forward_only(tiles_gpu[:1])))
    section("forward fp32 eager batch1 wall ms", lambda: wall_median_ms(lambda: eager32.forward_only(tiles_gpu[:1])))
    eager32_64 = detector("fp32", False)
    section("forward fp32 eager batch64 ms", lambda: gpu_median_ms(lambda: eager32_64.forward_only(tiles_gpu)))

    section("detect() fp16 graph, numpy 64 tiles, floor 0.3, wall ms", lambda: wall_median_ms(lambda: fp16.detect(tiles)))
    section(
        "detect() fp16 graph, numpy 64 tiles, floor 0.001, wall ms", lambda: wall_median_ms(lambda: fp16.detect(tiles, 0.001))
    )
    section("detect() fp32 graph, numpy 64 tiles, floor 0.3, wall ms", lambda: wall_median_ms(lambda: fp32.detect(tiles)))
    section("detect() fp16 eager, numpy 64 tiles, floor 0.3, wall ms", lambda: wall_median_ms(lambda: eager16.detect(tiles)))
    section(
        "detect_tensor() fp16 graph, GPU 64 tiles, floor 0.3, wall ms",
        lambda: wall_median_ms(lambda: fp16.detect_tensor(tiles_gpu)),
    )
    section("detections per batch at floor 0.3 (fp16)", lambda: len(fp16.detect(tiles)))
    section("detections per batch at floor 0.001 (fp16)", lambda: len(fp16.detect(tiles, 0.001)))
    section(
        "fixed part fp16 graph (normalise+net+decode+top-k) ms", lambda: gpu_median_ms(lambda: fp16._run("detect", tiles_gpu))
    )
    default_nms = fp16.nms
    for per_call in (1024, 2048, 8192, 16384):
        fp16.nms = functools.partial(torchvision_batched_nms, max_boxes_per_call=per_call)
        section(
            f"detect() fp16 floor 0.001, NMS calls of <= {per_call} boxes, wall ms",
            lambda: wall_median_ms(lambda: fp16.detect(tiles, 0.001), reps=10),
        )
    fp16.nms = default_nms

    grid = TileGrid()
    frame = grid.untile(np.concatenate([tiles[:63], tiles[:1]]))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    data = jpeg.tobytes()
    results["jpeg_bytes"] = len(data)
    section("nvJPEG decode 1 frame 2700x2100 wall ms", lambda: wall_median_ms(lambda: decode_jpegs_cuda([data])))
    section(
        "nvJPEG decode 8 frames batched, per frame wall ms", lambda: wall_median_ms(lambda: decode_jpegs_cuda([data] * 8)) / 8
    )
    cv2.setNumThreads(1)
    section(
        "cv2.imdecode 1 frame (1 CPU thread) wall ms",
        lambda: wall_median_ms(lambda: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), reps=10),
    )
    decoded = decode_jpegs_cuda([data])[0]
    out = torch.empty((64, 300, 300, 3), dtype=torch.uint8, device="cuda")
    section("tile_on_gpu 2700x2100 -> 64 tiles ms (events)", lambda: gpu_median_ms(lambda: tile_on_gpu(decoded, grid, out)))
    section(
        "GPU frame path: decode + tile + detect_tensor fp16, wall ms",
        lambda: wall_median_ms(lambda: fp16.detect_tensor(tile_on_gpu(decode_jpegs_cuda([data])[0], grid, out))),
    )
    host_tiles = grid.new_batch()
    section(
        "host frame path: cv2 decode + grid.tiles + detect fp16, wall ms",
        lambda: wall_median_ms(
            lambda: fp16.detect(grid.tiles(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), host_tiles)),
            reps=10,
        ),
    )
    yolox = SHARED / "models" / "yolox_nano" / "yolox_nano_dynamic.onnx"
    if yolox.is_file():
        yolo16 = detector("fp16", True, model="yolox_nano", path=yolox)
        section("yolox_nano forward fp16 cuda-graph batch64 ms", lambda: gpu_median_ms(lambda: yolo16.forward_only(tiles_gpu)))
        section("yolox_nano detect() fp16 graph numpy 64 tiles wall ms", lambda: wall_median_ms(lambda: yolo16.detect(tiles)))
    results["max_memory_allocated_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if args.map:
        import tempfile

        from inspection.detect.onnxruntime import OnnxRuntimeDetector
        from tests.gpu.detection_checks import fp32_copy, tile_level_map

        coco = SHARED / "data" / "coco_tiny"
        reference = onnx if "fp16" not in onnx.name else fp32_copy(onnx, Path(tempfile.mkdtemp()) / "fp32.onnx")
        ort = OnnxRuntimeDetector(spec, ModelConfig(backend="onnxruntime", path=reference), DetectConfig())
        section(f"tile-level mAP onnxruntime ({reference.name})", lambda: tile_level_map(ort, coco))
        section("tile-level mAP torch cuda fp32 graph", lambda: tile_level_map(fp32, coco))
        section("tile-level mAP torch cuda fp16 graph", lambda: tile_level_map(fp16, coco))
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
