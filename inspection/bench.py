"""`inspection bench`: the reference paper's experiment as one command.

For each model × backend × precision × batch size: time per frame (the grid's real tiles plus the
blank padding, processed in batches of that size), tiles/s, and peak memory sampled every 10 ms
while it runs (GPU memory through NVML where a GPU is used, the process's resident memory on CPU).
A naive baseline — one tile at a time, cut with a Python loop — sits beside the batched runs.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import ModelConfig, Settings
from .detect import FIXED_BATCH_BACKENDS, Detector, create_detector
from .tiling import TileGrid

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
CPU_BACKENDS = ("onnxruntime",)
SAMPLE_PERIOD_S = 0.01


@dataclass(frozen=True)
class Combo:
    """One configuration to time: MODEL:BACKEND:PRECISION[:eager] on the command line."""

    model: str
    backend: str
    precision: str
    eager: bool = False  # torch/tensorrt: no CUDA graph (the "baseline" of the paper-style table)

    @classmethod
    def parse(cls, text: str) -> Combo:
        parts = text.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "eager"):
            raise ValueError(f"combo {text!r} must be MODEL:BACKEND:PRECISION or MODEL:BACKEND:PRECISION:eager")
        return cls(parts[0], parts[1], parts[2], len(parts) == 4)

    def __str__(self) -> str:
        return f"{self.model}:{self.backend}:{self.precision}" + (":eager" if self.eager else "")

    def model_config(self, base: ModelConfig, device: str) -> ModelConfig:
        """`base` running this combo on `device`; CPU-only backends run on the CPU beside the GPU ones."""
        return base.model_copy(
            update={
                "name": self.model,
                "backend": self.backend,
                "precision": self.precision,
                "device": "cpu" if self.backend in CPU_BACKENDS else device,
                "cuda_graph": base.cuda_graph and not self.eager,
            }
        )


@dataclass
class BenchRow:
    model: str
    backend: str
    precision: str
    device: str
    mode: str  # "batched", "naive" (one tile at a time), "forward" (bare model)
    batch_size: int
    frame_ms: float  # median time to process one frame's batch of tiles
    frame_ms_min: float
    tiles_per_s: float  # real tiles per second
    peak_mem_mib: float | None
    mem_kind: str
    repeats: int
    detections: int = 0
    extra: dict = field(default_factory=dict)


class MemorySampler:
    """Samples memory every 10 ms on a thread: NVML used GPU memory, or this process's RSS.

    The GPU figure is the device's used memory minus what was in use before sampling began, as
    the paper's nvidia-smi sampling measured the whole card.
    """

    def __init__(self, gpu_index: int | None = None, period_s: float = SAMPLE_PERIOD_S, baseline: int | None = None) -> None:
        self.period_s = period_s
        self.kind = "rss"
        self._handle = None
        self._nvml = None
        if gpu_index is not None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
                self.kind = "gpu"
            except Exception:  # no NVML on this machine: fall back to host memory
                self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline = self._read() if baseline is None else baseline
        self.peak = self.baseline

    def _read(self) -> int:
        if self._handle is not None:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._read())
            self._stop.wait(self.period_s)

    def __enter__(self) -> MemorySampler:
        self.peak = self._read()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, self._read())

    def current(self) -> int:
        return self._read()

    @property
    def peak_mib(self) -> float:
        """Peak in MiB: absolute RSS on CPU; on GPU the card's peak minus its use before the
        process loaded anything (CUDA context, weights, workspaces and caches all count)."""
        value = self.peak - self.baseline if self.kind == "gpu" else self.peak
        return value / 2**20


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def frame_in_batches(detector: Detector, batch: np.ndarray, batch_size: int) -> Callable[[], int]:
    """A call processing one frame's tile batch in chunks of `batch_size` (the paper's sweep)."""
    chunks = [np.ascontiguousarray(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]

    def run() -> int:
        return sum(len(detector.detect(chunk)) for chunk in chunks)

    return run


def naive_frame(detector: Detector, frame: np.ndarray, grid: TileGrid) -> Callable[[], int]:
    """The baseline a first version would write: cut each tile in a Python loop, detect it alone."""

    def run() -> int:
        found = 0
        for x0, y0 in grid.origins:
            tile = np.ascontiguousarray(frame[y0 : y0 + grid.tile_size, x0 : x0 + grid.tile_size])[None]
            found += len(detector.detect(tile))
        return found

    return run


def bench_detector(
    detector: Detector,
    frame: np.ndarray,
    grid: TileGrid,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: int = 3,
    naive: bool = True,
    device: str = "cpu",
    gpu_index: int | None = None,
    progress: Callable[[str], None] | None = None,
    memory_baseline: int | None = None,
    label: str | None = None,
    forward: bool = True,
) -> list[BenchRow]:
    """Batched sweep, naive baseline and bare forward pass of one detector on one frame's tiles.

    On CUDA every timed call ends in a device synchronisation, so times are complete. The bare
    model ("forward") runs the fixed 64-tile batch already on the device (CUDA graph where the
    backend captured one): no host I/O, no decoding, no NMS.
    """
    batch = grid.tiles(frame)
    rows: list[BenchRow] = []
    sync = device_sync(device)
    precision = label or detector.precision

    def record(mode: str, size: int, call: Callable[[], object], n_repeats: int) -> None:
        if progress:
            progress(f"{detector.spec.name} {detector.backend} {precision} {mode} batch {size}")

        def synced() -> object:
            out = call()
            sync()
            return out

        with MemorySampler(gpu_index, baseline=memory_baseline) as memory:
            times = time_calls(synced, n_repeats)
            found = synced()
        median = statistics.median(times)
        rows.append(
            BenchRow(
                detector.spec.name,
                detector.backend,
                precision,
                device,
                mode,
                size,
                frame_ms=median * 1e3,
                frame_ms_min=min(times) * 1e3,
                tiles_per_s=grid.num_tiles / median,
                peak_mem_mib=round(memory.peak_mib, 1),
                mem_kind=memory.kind,
                repeats=n_repeats,
                detections=int(found) if isinstance(found, (int, np.integer)) else 0,
            )
        )

    for size in batch_sizes:
        record("batched", size, frame_in_batches(detector, batch, size), repeats)
    if naive:
        record("naive", 1, naive_frame(detector, frame, grid), max(1, repeats // 2))
    if not forward:
        pass
    elif detector.takes_device_batches and device == "cuda":
        import torch

        on_device = torch.from_numpy(batch).to(detector.device)
        record("forward", grid.batch_size, lambda: detector.forward_only(on_device), max(repeats, 20))
    elif detector.has_forward:
        record("forward", grid.batch_size, lambda: detector.forward(batch), repeats)
    return rows


def device_sync(device: str) -> Callable[[], None]:
    if device != "cuda":
        return lambda: None
    import torch

    return torch.cuda.synchronize


def machine_description() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(handle)
        info["gpu"] = name.decode() if isinstance(name, bytes) else name
        info["gpu_driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:
        info["gpu"] = None
    return info


def add_ratios(rows: list[BenchRow]) -> None:
    """Speed-up of every row against the naive one-tile-at-a-time run of the same backend."""
    naive = {(r.model, r.backend, r.precision, r.device): r.frame_ms for r in rows if r.mode == "naive"}
    for r in rows:
        base = naive.get((r.model, r.backend, r.precision, r.device))
        if base:
            r.extra["speedup_vs_naive"] = round(base / r.frame_ms, 2)


def comparison(rows: list[BenchRow]) -> list[dict[str, object]]:
    """The TensorRT-vs-TF-style table: CPU and GPU baselines (batch 1) against the fastest
    batch-64 configuration and the bare model, with speed-ups measured in this same run."""
    batched = [r for r in rows if r.mode == "batched"]
    picks: list[tuple[str, BenchRow]] = []
    cpu_b1 = [r for r in batched if r.device == "cpu" and r.batch_size == 1]
    if cpu_b1:
        picks.append(("CPU baseline (batch 1)", min(cpu_b1, key=lambda r: r.frame_ms)))
    eager = [r for r in batched if r.device == "cuda" and r.batch_size == 1 and r.precision == "fp32-eager"]
    if eager:
        picks.append(("GPU baseline (eager fp32, batch 1)", eager[0]))
    baselines = list(picks)
    if batched:
        largest = max(r.batch_size for r in batched)
        picks.append(
            (
                "optimised (fastest at the largest batch)",
                min((r for r in batched if r.batch_size == largest), key=lambda r: r.frame_ms),
            )
        )
    forward = [r for r in rows if r.mode == "forward" and r.device == "cuda"]
    if forward:
        picks.append(("bare model (forward only, batch 64)", min(forward, key=lambda r: r.frame_ms)))
    table = []
    for name, r in picks:
        row: dict[str, object] = {
            "row": name,
            "model": r.model,
            "backend": r.backend,
            "precision": r.precision,
            "device": r.device,
            "batch_size": r.batch_size,
            "frame_ms": round(r.frame_ms, 3),
            "peak_mem_mib": r.peak_mem_mib,
        }
        for _, base in baselines:
            row["speedup_vs_" + ("cpu" if base.device == "cpu" else "gpu_eager")] = round(base.frame_ms / r.frame_ms, 1)
        table.append(row)
    return table


def write_results(
    rows: list[BenchRow], out_dir: Path, command: str, machine: dict[str, object], stem: str = "bench"
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = [asdict(r) for r in rows]
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(
        json.dumps({"command": command, "machine": machine, "rows": data, "comparison": comparison(rows)}, indent=2)
    )
    csv_path = out_dir / f"{stem}.csv"
    with csv_path.open("w", newline="") as f:
        fields = [k for k in data[0] if k != "extra"] + ["speedup_vs_naive"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in data:
            writer.writerow({**row, "speedup_vs_naive": row["extra"].get("speedup_vs_naive", "")})
    written = [json_path, csv_path]
    plot = plot_results(rows, out_dir / f"{stem}.png")
    if plot:
        written.append(plot)
    return written


def plot_results(rows: Iterable[BenchRow], path: Path) -> Path | None:
    """Time per frame and peak memory against batch size, one line per model/backend/precision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    batched = [r for r in rows if r.mode == "batched"]
    if not batched:
        return None
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    keys = sorted({(r.model, r.backend, r.precision, r.device) for r in batched})
    for key in keys:
        series = sorted((r for r in batched if (r.model, r.backend, r.precision, r.device) == key), key=lambda r: r.batch_size)
        label = "/".join(key)
        sizes = [r.batch_size for r in series]
        ax_time.plot(sizes, [r.frame_ms for r in series], marker="o", label=label)
        ax_mem.plot(sizes, [r.peak_mem_mib or 0 for r in series], marker="o", label=f"{label} ({series[0].mem_kind})")
    for ax, title, unit in ((ax_time, "time per frame", "ms"), (ax_mem, "peak memory", "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (tiles)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_time.set_yscale("log")
    ax_time.legend(fontsize=7)
    ax_mem.legend(fontsize=7)  # rss = host process memory, gpu = device memory used since start
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench_frame(settings: Settings, seed: int = 0) -> np.ndarray:
    """A frame of real photographs (the demo's source) for timing; needs no dataset."""
    from synthetic.photos import PhotoFrameSource

    return PhotoFrameSource(TileGrid.from_config(settings.grid), seed=seed)(0, 0, 0)


def run_bench(
    settings: Settings,
    combos: Sequence[Combo],
    batch_sizes: Sequence[int],
    repeats: int,
    naive: bool = True,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """The sweep for every combo on one device; on CUDA, memory is counted from before any model loaded."""
    grid = TileGrid.from_config(settings.grid)
    frame = bench_frame(settings)
    gpu_index = 0 if device == "cuda" else None
    baseline = MemorySampler(gpu_index).current() if gpu_index is not None else None
    rows: list[BenchRow] = []
    for combo in combos:
        model = combo.model_config(settings.model, device)
        combo_device = model.device
        label = f"{combo.precision}-eager" if combo.eager else None
        combo_gpu = gpu_index if combo_device == "cuda" else None
        memory_baseline = baseline if combo_gpu is not None else None
        if combo.backend in FIXED_BATCH_BACKENDS and model.cuda_graph and combo_device == "cuda":
            # A graph captured for 64 tiles would replay all 64 for a chunk of one: each batch size
            # gets a detector built for it, so batch b really runs b tiles.
            for size in batch_sizes:
                detector = create_detector(model, settings.detect, batch_size=size)
                try:
                    rows += bench_detector(
                        detector,
                        frame,
                        grid,
                        [size],
                        repeats,
                        naive and size == 1,
                        combo_device,
                        combo_gpu,
                        progress,
                        memory_baseline,
                        label,
                        forward=size == grid.batch_size,
                    )
                finally:
                    detector.close()
                    _free_device_memory(combo_device)
            continue
        detector = create_detector(model, settings.detect)
        try:
            rows += bench_detector(
                detector, frame, grid, batch_sizes, repeats, naive, combo_device, combo_gpu, progress, memory_baseline, label
            )
        finally:
            detector.close()
            _free_device_memory(combo_device)
    add_ratios(rows)
    return rows


def _free_device_memory(device: str) -> None:
    if device == "cuda":
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()
