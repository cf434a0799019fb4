"""GPU experiments for the torch backend's network and post-processing (issue 13, items 4 and 5).

One command, one device call (default budget 450 s), only the fp16 ONNX file needed:

    python -m benchmarks.h100.experiments --onnx models_carry/raw_fp16.onnx --out "$OUT"

Each variant runs in its own process with its own time budget, so a compiler that hangs or a
variant that fails loses only itself; a child writes its figures as it measures them, so a variant
stopped by its budget still reports what it finished. Variants, cheapest first:

- `eager`        fp16 forward of 64 tiles without a CUDA graph; kernel table of that forward (profiler)
- `graph`        fp16 with the backend's CUDA graph: bare forward, `detect` (numpy tiles in) and
                 `detect_tensor` at the operating threshold 0.3 and the evaluation floor 0.001, the
                 fixed part alone, NMS variants (dense per tile / torchvision / before: one NMS round
                 over all candidates), and a profiler table of `detect_tensor` at 0.001
- `bf16`         the same network in bf16 with the CUDA graph: forward, detect at 0.3 / 0.001
- `onnx2torch`   onnx2torch's module of the same file (if installed): eager forward, and whether a
                 CUDA graph capture and a fullgraph trace work
- `compile-default`       torch.compile (inductor) + the backend's CUDA graph: forward, then detect
- `compile-max-autotune`  the same with max-autotune (inductor cudagraphs off: the backend captures)

Writes under --out: experiments.json (every figure, errors included), one
profile_<variant>_<what>.txt kernel table per profiled call, and prints a compact table.
GPU times are medians of CUDA-event timings; wall times are medians of synchronised calls.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS: dict[str, int] = {  # name -> default time budget (s)
    "eager": 60,
    "graph": 90,
    "bf16": 60,
    "onnx2torch": 60,
    "compile-default": 150,
    "compile-max-autotune": 240,
}
RESERVE_S = 10  # kept back for the parent's own work at the end


# -- figures ------------------------------------------------------------------------------------


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gpu_ms(fn: Callable[[], object], reps: int = 30, warmup: int = 5) -> float:
    """Median CUDA-event time (ms) of `fn`; wall-clock where there is no GPU (--device cpu)."""
    import torch

    if not torch.cuda.is_available():
        return wall_ms(fn, reps, warmup)
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


def wall_ms(fn: Callable[[], object], reps: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def kernel_table(fn: Callable[[], object], path: Path, reps: int = 5) -> str:
    """torch.profiler over `reps` calls -> the top kernels by GPU time, written to `path`."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(reps):
            fn()
        sync()
    averages = prof.key_averages()
    keys = ("device_time_total", "cuda_time_total") if torch.cuda.is_available() else ("cpu_time_total",)
    table = "no table"
    for key in keys:
        try:
            table = averages.table(sort_by=key, row_limit=40, max_name_column_width=90)
            break
        except Exception:
            continue
    path.write_text(f"{reps} calls; times are totals over them\n{table}\n")
    return path.name


def load_tiles(batch: int = 64) -> tuple[np.ndarray, str]:
    """64 real-looking 300×300 tiles: scikit-image's bundled photos (as the demo), else coco_tiny
    ($INSPECTION_SHARED), else a fixed synthetic pattern (then detect at 0.3 finds little)."""
    from inspection.tiling import TileGrid

    grid = TileGrid()
    try:
        from synthetic.photos import PhotoFrameSource

        return grid.tiles(PhotoFrameSource(grid)(0, 0, 0))[:batch], "photos (synthetic.photos, scikit-image)"
    except Exception:
        pass
    shared = os.environ.get("INSPECTION_SHARED")
    if shared and (Path(shared) / "data" / "coco_tiny").is_dir():
        from tests.gpu.detection_checks import coco_tiles

        return coco_tiles(Path(shared) / "data" / "coco_tiny", batch)[0], "coco_tiny"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:300, :300]
    tiles = (
        np.stack(
            [((np.sin(xx / (5 + i)) + np.cos(yy / (7 + i))) * 60 + 128 + rng.normal(0, 10, (300, 300))) for i in range(batch)]
        )
        .clip(0, 255)
        .astype(np.uint8)
    )
    return np.repeat(tiles[..., None], 3, -1), "synthetic pattern"


# -- one variant, in a child process --------------------------------------------------------------


class Recorder:
    """Figures of one variant, flushed to its result file after each one (a timeout keeps them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = round(value, 3) if isinstance(value, float) else value
        print(f"  {key:55s} {self.data[key]}", flush=True)
        self.path.write_text(json.dumps(self.data, indent=1))

    def measure(self, key: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
        except Exception:
            self.put(key, "error: " + traceback.format_exc(limit=4)[-1500:])
            return None
        self.put(key, value)
        return value


def run_variant(name: str, onnx: Path, out: Path, rec: Recorder, device: str = "cuda", reps: int = 20, batch: int = 64) -> None:
    """One variant's figures. device "cpu" only checks the script where there is no GPU (fp32)."""
    import torch

    from inspection.config import DetectConfig, ModelConfig
    from inspection.detect import load_spec, torch_post
    from inspection.detect.torch import TorchDetector

    spec = load_spec("ssd_mobilenet_v2_coco")
    tiles, source = load_tiles(batch)
    tiles_gpu = torch.from_numpy(tiles).to(device)
    rec.put("tiles", source)
    rec.put("gpu", torch.cuda.get_device_name() if device == "cuda" else "none (--device cpu: a check of the script)")
    rec.put("torch", torch.__version__)

    warm = 5 if device == "cuda" else 1
    gpu_ms_ = functools.partial(gpu_ms, reps=reps, warmup=warm)
    wall_ms_ = functools.partial(wall_ms, reps=reps, warmup=warm)
    few = max(2, reps // 2)

    def detector(precision: str = "fp16", cuda_graph: bool = True, compile: str = "none") -> TorchDetector:
        precision = precision if device == "cuda" else "fp32" if precision == "fp16" else precision
        cfg = ModelConfig(backend="torch", device=device, precision=precision, path=onnx, cuda_graph=cuda_graph, compile=compile)
        return TorchDetector(spec, cfg, DetectConfig(), batch_size=batch)

    def detect_figures(det: TorchDetector, prefix: str = "") -> None:
        rec.measure(f"{prefix}detect numpy 0.3 wall ms", lambda: wall_ms_(lambda: det.detect(tiles)))
        rec.measure(f"{prefix}detect numpy 0.001 wall ms", lambda: wall_ms_(lambda: det.detect(tiles, 0.001), reps=few))
        rec.measure(f"{prefix}detect_tensor 0.3 wall ms", lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu)))
        rec.measure(
            f"{prefix}detect_tensor 0.001 wall ms", lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu, 0.001), reps=few)
        )
        rec.measure(f"{prefix}detections at 0.3", lambda: len(det.detect(tiles)))
        rec.measure(f"{prefix}detections at 0.001", lambda: len(det.detect(tiles, 0.001)))

    if name == "eager":
        det = detector(cuda_graph=False)
        rec.measure("forward fp16 eager ms", lambda: gpu_ms_(lambda: det.forward_only(tiles_gpu)))
        rec.measure("profile", lambda: kernel_table(lambda: det.forward_only(tiles_gpu), out / "profile_eager_forward_fp16.txt"))
        rec.measure("detect_tensor 0.3 wall ms", lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu)))
    elif name in ("graph", "bf16"):
        det = detector("fp16" if name == "graph" else "bf16")
        rec.measure("forward ms", lambda: gpu_ms_(lambda: det.forward_only(tiles_gpu)))
        detect_figures(det)
        if name == "graph":
            rec.measure("fixed part (normalise+net+decode+top-k) ms", lambda: gpu_ms_(lambda: det._run("detect", tiles_gpu)))
            default_nms = det.nms
            rec.put("default NMS", default_nms.__name__)
            factor = torch_post.PREFIX_FACTOR
            torch_post.PREFIX_FACTOR = 10**6  # one NMS round over every candidate
            try:
                rec.measure(
                    f"detect_tensor 0.001, one NMS round, {default_nms.__name__}, wall ms",
                    lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu, 0.001), reps=few),
                )
            finally:
                torch_post.PREFIX_FACTOR = factor
            if torch_post.have_torchvision_nms():
                det.nms = torch_post.torchvision_batched_nms
                rec.measure(
                    "detect_tensor 0.001, torchvision NMS, wall ms",
                    lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu, 0.001), reps=few),
                )
                rec.measure("detect_tensor 0.3, torchvision NMS, wall ms", lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu)))
                factor = torch_post.PREFIX_FACTOR
                torch_post.PREFIX_FACTOR = 10**6  # the code before: one NMS round over every candidate
                try:
                    rec.measure(
                        "before: detect_tensor 0.001, one NMS round, torchvision, wall ms",
                        lambda: wall_ms_(lambda: det.detect_tensor(tiles_gpu, 0.001), reps=few),
                    )
                finally:
                    torch_post.PREFIX_FACTOR = factor
            det.nms = default_nms
            rec.measure(
                "profile",
                lambda: kernel_table(lambda: det.detect_tensor(tiles_gpu, 0.001), out / "profile_graph_detect_tensor_0.001.txt"),
            )
    elif name == "onnx2torch":
        try:
            from onnx2torch import convert
        except Exception as exc:
            rec.put("status", f"skipped: onnx2torch not importable ({exc!r})")
            return
        from inspection.detect.preprocess import to_network_input

        net = convert(str(onnx)).eval().to(device)
        x = torch.from_numpy(to_network_input(tiles, spec)).to(device)
        with torch.inference_mode():
            rec.measure("forward eager ms", lambda: gpu_ms_(lambda: net(x)))
            rec.measure("forward eager wall ms", lambda: wall_ms_(lambda: net(x)))

            def capture() -> str:
                if device != "cuda":
                    return "no CUDA"
                graph = torch.cuda.CUDAGraph()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    net(x)
                torch.cuda.current_stream().wait_stream(side)
                with torch.cuda.graph(graph):
                    net(x)
                return f"captured; replay {gpu_ms_(graph.replay):.3f} ms"

            rec.measure("CUDA graph capture", capture)

            def trace() -> str:
                torch.compile(net, fullgraph=True, backend="eager", dynamic=False)(x)
                return "traced"

            rec.measure("torch.compile fullgraph trace", trace)
    elif name.startswith("compile-"):
        mode = name.removeprefix("compile-")
        det = detector(compile=mode)
        t = time.perf_counter()
        ok = rec.measure(
            "forward: compile + capture s", lambda: (det.forward_only(tiles_gpu), sync(), time.perf_counter() - t)[-1]
        )
        if ok is not None:
            rec.measure("forward ms", lambda: gpu_ms_(lambda: det.forward_only(tiles_gpu)))
            compiled = det._fixed[("forward", (300, 300))]  # the compiled function alone, outside the CUDA graph
            rec.measure("profile", lambda: kernel_table(lambda: compiled(tiles_gpu), out / f"profile_{name}_forward.txt"))
        t = time.perf_counter()
        ok = rec.measure(
            "detect: compile + capture s", lambda: (det.detect_tensor(tiles_gpu), sync(), time.perf_counter() - t)[-1]
        )
        if ok is not None:
            detect_figures(det)
    else:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    if device == "cuda":
        rec.put("max_memory_allocated_MiB", round(torch.cuda.max_memory_allocated() / 2**20, 1))
    rec.put("status", "done")


# -- the parent: every variant under its budget, one table ---------------------------------------


COLUMNS = [
    ("forward ms", ("forward ms", "forward fp16 eager ms", "forward eager ms")),
    ("detect .3", ("detect numpy 0.3 wall ms",)),
    ("detect .001", ("detect numpy 0.001 wall ms",)),
    ("tensor .3", ("detect_tensor 0.3 wall ms",)),
    ("tensor .001", ("detect_tensor 0.001 wall ms",)),
    ("compile s", ("forward: compile + capture s",)),
]


def table(results: dict[str, dict[str, Any]]) -> str:
    def cell(data: dict[str, Any], keys: tuple[str, ...]) -> str:
        for k in keys:
            v = data.get(k)
            if isinstance(v, (int, float)):
                return f"{v:.2f}"
            if isinstance(v, str) and v.startswith("error"):
                return "error"
        return "-"

    head = f"{'variant':22s}" + "".join(f"{c:>13s}" for c, _ in COLUMNS) + "  status"
    lines = [head, "-" * len(head)]
    for name, data in results.items():
        lines.append(f"{name:22s}" + "".join(f"{cell(data, keys):>13s}" for _, keys in COLUMNS) + f"  {data.get('status', '?')}")
    graph = results.get("graph", {})
    extra = [k for k in graph if "NMS" in k or "fixed part" in k or k.startswith("detections")]
    lines += [f"graph: {k}: {graph[k]}" for k in extra if isinstance(graph[k], (int, float))]
    o2t = results.get("onnx2torch", {})
    lines += [
        f"onnx2torch: {k}: {str(o2t[k]).splitlines()[-1][:150]}"
        for k in ("CUDA graph capture", "torch.compile fullgraph trace")
        if k in o2t
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, required=True, help="raw_fp16.onnx (or raw_fp32.onnx) of ssd_mobilenet_v2_coco")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all variants together")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: check the script where there is no GPU")
    parser.add_argument("--reps", type=int, default=20, help="timed calls per figure (half of it at the 0.001 floor)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every variant's own budget (a slow machine)")
    parser.add_argument(
        "--batch", type=int, default=64, help="tiles per batch (64: a frame; fewer only to check the script on a CPU)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        run_variant(args.child, args.onnx.resolve(), args.out, Recorder(args.result), args.device, args.reps, args.batch)
        return
    deadline = time.monotonic() + args.budget
    results: dict[str, dict[str, Any]] = {}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        left = deadline - time.monotonic() - RESERVE_S
        budget = min(VARIANTS.get(name, 60) * args.scale, left)
        if budget < 20:
            results[name] = {"status": f"not run: {left:.0f} s of the budget left"}
            continue
        result = args.out / f"variant_{name}.json"
        result.unlink(missing_ok=True)
        print(f"== {name} (budget {budget:.0f} s)", flush=True)
        t = time.monotonic()
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.h100.experiments",
            "--child",
            name,
            "--onnx",
            str(args.onnx.resolve()),
            "--out",
            str(args.out.resolve()),
            "--result",
            str(result.resolve()),
            "--device",
            args.device,
            "--reps",
            str(args.reps),
            "--batch",
            str(args.batch),
        ]
        log = args.out / f"variant_{name}.log"
        with log.open("w") as sink:
            # Its own process group: a compiler's worker processes go down with it at the budget.
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=budget)
                status = None if code == 0 else f"exit {code}: " + log.read_text()[-600:]
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                status = f"stopped at its budget of {budget:.0f} s"
        print(log.read_text(), end="", flush=True)
        data = json.loads(result.read_text()) if result.is_file() else {}
        if status is not None:
            data["status"] = status
        data["wall_s"] = round(time.monotonic() - t, 1)
        results[name] = data
        (args.out / "experiments.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    (args.out / "experiments.txt").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
