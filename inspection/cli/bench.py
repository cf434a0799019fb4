"""`inspection bench` (detector sweep, peers, end to end) and `inspection plan`, with their tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Group
from rich.table import Table

from ..config import Settings
from .base import ConfigOpt, _command_line, _settings, _table, app, console
from .errors import CliError, UsageError


@app.command()
def bench(
    config: Optional[Path] = ConfigOpt,
    combo: list[str] = typer.Option(
        ["ssd_mobilenet_v2_coco:onnxruntime:fp32", "ssd_mobilenet_v2_coco:onnxruntime:int8"],
        help="MODEL:BACKEND:PRECISION[:eager], repeatable (MODEL: built-in or `model add`ed; int8: the QDQ graph of `model quantize`; eager: torch without CUDA graph, the GPU baseline)",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda for the torch/tensorrt combos (onnxruntime runs on the CPU)"),
    batch_sizes: str = typer.Option("1,2,4,8,16,32,64"),
    repeats: int = typer.Option(3, min=1),
    naive: bool = typer.Option(True, help="also time the one-tile-at-a-time baseline"),
    e2e: int = typer.Option(0, help="also run N whole cars end to end (broker -> database) on the first combo"),
    deadline: float = typer.Option(0.5, help="per-car deadline of the end-to-end cars, seconds"),
    consumers: int = typer.Option(
        1,
        min=1,
        help="edge consumers sharing the end-to-end cars: 1 in this process, more = `inspection edge --workers N` (N per GPU with --gpus)",
    ),
    gpus: Optional[str] = typer.Option(
        None, help="end to end on these GPUs, e.g. 0,1: `inspection edge --workers CONSUMERS --gpus ...`"
    ),
    join_wait: float = typer.Option(
        0.0,
        help="end to end with worker processes: extra seconds before the warm-up car (warm-up cars are sent "
        "until one was stored by every worker, so none is needed)",
    ),
    db: Optional[str] = typer.Option(None, help="database of the end-to-end run (default: a fresh SQLite file in --out)"),
    out: Path = typer.Option(Path("benchmarks/results"), help="folder for bench.json/csv/png and e2e.json"),
    peers: list[str] = typer.Option([], help="peer methods around the same detector on the same frames: sahi (extra [sahi])"),
    peer_images: Optional[Path] = typer.Option(None, help="--peers: COCO images directory the mosaic frames are composed from"),
    peer_annotations: Optional[Path] = typer.Option(None, help="--peers: COCO instances JSON of --peer-images"),
    peer_frames: int = typer.Option(2, min=1, help="--peers: mosaic frames timed and scored"),
    peer_thresholds: str = typer.Option("0.3,0.001", help="--peers: score thresholds (operating, evaluation floor)"),
    peer_batches: str = typer.Option("64,1", help="--peers: SAHI batch sizes"),
) -> None:
    """Time per frame and tiles/s per model × backend × precision × batch size, with peak memory; optionally whole cars end to end."""
    from ..tools.bench import Combo, comparison, machine_description, run_bench, write_results

    settings = _settings(config)
    try:
        combos = [Combo.parse(c) for c in combo]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sizes = [int(s) for s in batch_sizes.split(",")]
    command = _command_line()
    machine = machine_description()
    rows = []
    if sizes and sizes != [0]:
        with console.status("benchmarking") as status:
            rows = run_bench(settings, combos, sizes, repeats, naive, device, progress=lambda text: status.update(text))
        console.print(bench_table(rows))
        compared = comparison(rows)
        compare = _table(
            "baselines vs optimised (same run)",
            list(compared[0]) if compared else [],
            right=False,
            fold=tuple(compared[0]) if compared else (),
        )
        for item in compared:
            compare.add_row(*(str(v) for v in item.values()))
        console.print(compare)
        for written in write_results(rows, out, command, machine):
            console.print(f"wrote {written}")
    if peers:
        _bench_peers(
            settings,
            combos[0],
            device,
            peers,
            peer_images,
            peer_annotations,
            peer_frames,
            tuple(float(t) for t in peer_thresholds.split(",")),
            tuple(int(b) for b in peer_batches.split(",")),
            out,
            command,
            machine,
        )
    if e2e:
        gpu_list = [int(g) for g in gpus.split(",") if g.strip()] if gpus else None
        _bench_e2e(settings, combos[0], device, e2e, deadline, db, out, command, machine, consumers, gpu_list, join_wait)


def bench_table(rows: list[Any]) -> Group:
    """`inspection bench` rows (BenchRow): one table per model/backend/precision/device, so each fits 80 columns."""
    combos: dict[tuple[str, str, str, str], list[Any]] = {}
    for r in rows:
        combos.setdefault((r.model, r.backend, r.precision, r.device), []).append(r)
    tables = []
    for (model, backend, precision, device), group in combos.items():
        table = _table(
            f"{model} {backend}/{precision} on {device} (time per frame = the grid's tiles + blank padding)",
            ["mode", "batch", "ms/frame", "tiles/s", "peak MiB", "memory", "× naive"],
            key_width=7,
        )
        for r in group:
            table.add_row(
                r.mode,
                str(r.batch_size),
                f"{r.frame_ms:.1f}",
                f"{r.tiles_per_s:.1f}",
                "-" if r.peak_mem_mib is None else f"{r.peak_mem_mib:.0f}",
                r.mem_kind,
                str(r.extra.get("speedup_vs_naive", "")),
            )
        tables.append(table)
    return Group(*tables)


def _bench_peers(
    settings: Settings,
    combo: Any,
    device: str,
    peers: list[str],
    images: Optional[Path],
    annotations: Optional[Path],
    frames: int,
    thresholds: tuple[float, ...],
    batches: tuple[int, ...],
    out: Path,
    command: str,
    machine: dict[str, Any],
) -> None:
    from synthetic.coco import CocoDataset

    from ..detect import create_detector
    from ..tiling import TileGrid
    from ..tools.peers import run_peers, sahi_missing

    unknown = sorted(set(peers) - {"sahi"})
    if unknown:
        raise UsageError(f"--peers {', '.join(unknown)}: unknown peer (known: sahi)")
    if images is None or annotations is None or not images.is_dir() or not annotations.is_file():
        raise UsageError("--peers needs --peer-images DIR and --peer-annotations JSON (a COCO set, e.g. val2017)")
    reason = sahi_missing()
    if reason:
        console.print(f"skipped: {reason}")
    model = combo.model_config(settings.model, device)
    detector = create_detector(model, settings.detect)
    with console.status("peers") as status:
        rows = run_peers(
            detector,
            CocoDataset.load(images, annotations),
            TileGrid.from_config(settings.grid),
            settings.stitch,
            thresholds=thresholds,
            sahi_batches=batches,
            frames=frames,
            nms_iou=settings.detect.nms_iou,
            progress=lambda text: status.update(text),
        )
    detector.close()
    ours = {r.score_threshold: r.ms_per_frame for r in rows if r.method == "ours"}
    table = _table(
        f"{combo.model} {combo.backend}/{combo.precision} on {device}: our frame path vs peers, same detector, same frames",
        ["method", "score", "ms/frame", "× ours", "frame mAP", "AP50", "dets/frame"],
        key_width=13,
    )
    for r in rows:
        table.add_row(
            r.method,
            f"{r.score_threshold:g}",
            f"{r.ms_per_frame:.1f}",
            f"{r.ms_per_frame / ours[r.score_threshold]:.2f}",
            f"{r.frame_map:.4f}",
            f"{r.frame_ap50:.4f}",
            f"{r.detections_per_frame:.0f}",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "peers.json"
    path.write_text(
        json.dumps(
            {"command": command, "machine": machine, "sahi_skipped": reason, "rows": [r.to_dict() for r in rows]}, indent=2
        )
    )
    console.print(f"wrote {path}")


def _bench_e2e(
    settings: Settings,
    combo: Any,
    device: str,
    cars: int,
    deadline: float,
    db: Optional[str],
    out: Path,
    command: str,
    machine: dict[str, Any],
    consumers: int = 1,
    gpus: list[int] | None = None,
    join_wait: float = 0.0,
) -> None:
    from ..tools.bench_e2e import e2e_settings, run_e2e
    from ..tools.demo import kafka_cluster

    out.mkdir(parents=True, exist_ok=True)
    settings = e2e_settings(settings, combo, device, deadline, db, out)
    with console.status("end to end") as status, kafka_cluster(settings) as (bootstrap, _embedded):
        result = run_e2e(
            settings,
            bootstrap,
            cars,
            deadline,
            progress=lambda text: status.update(text),
            consumers=consumers,
            workdir=out,
            gpus=gpus,
            join_wait_s=join_wait,
        )
    stages = list(result.cars[0].stage_ms_per_frame)
    workers = f"{consumers} worker(s) per GPU on GPUs {gpus}" if gpus else f"{consumers} consumer(s)"
    table = _table(
        f"end to end: {result.frames_per_car} frames per car, {workers}, {result.backend}/{result.precision} "
        f"on {result.device}, decode {result.decode}, {result.db}",
        ["car", "car latency s", "produce s", "first stored s", "frames/s", "met"],
        key_width=4,
        fold=("car latency s", "produce s", "first stored s"),
    )
    per_stage = _table("time per frame in each stage, ms", ["car", *stages], key_width=4)
    for c in result.cars:
        table.add_row(
            c.car_id[-4:],
            f"{c.car_latency_s:.3f}",
            f"{c.produce_s:.3f}",
            f"{c.first_stored_s:.3f}",
            f"{c.pipeline_fps:.1f}",
            str(c.deadline_met),
        )
        per_stage.add_row(c.car_id[-4:], *(f"{v:.2f}" for v in c.stage_ms_per_frame.values()))
    console.print(table)
    if stages:
        console.print(per_stage)
    if result.stage_split.get("frames"):
        split = result.stage_split
        console.print(
            f"stage split over {split['frames']} frames (every worker): wall {split['wall_ms_per_frame']:.2f} ms per frame; "
            f"offset commits {split['commit_ms_per_frame']:.3f} ms per frame"
        )
    if result.frame_latency_p50_ms is not None:
        console.print(
            f"frame latency (received from Kafka -> stored): p50 {result.frame_latency_p50_ms:.1f} ms, "
            f"p99 {result.frame_latency_p99_ms:.1f} ms"
        )
    if result.peak_gpu_mem_mib_per_gpu:
        console.print(
            "peak GPU memory per GPU (NVML, all workers): "
            + ", ".join(f"GPU {g} {mib:.0f} MiB" for g, mib in result.peak_gpu_mem_mib_per_gpu.items())
        )
    if result.bare_model_ms:
        console.print(
            f"bare model {result.bare_model_ms:.2f} ms per 64-tile batch ({result.bare_model_fps:.0f} frames/s); "
            f"pipeline/bare = {result.pipeline_to_bare_ratio:.2f}; peak GPU memory {result.peak_gpu_mem_mib} MiB"
        )
    path = out / "e2e.json"
    path.write_text(json.dumps({"command": command, "machine": machine, "deadline_s": deadline, **result.to_dict()}, indent=2))
    console.print(f"wrote {path}")


@app.command("plan")
def plan_cmd(
    deadline: Optional[float] = typer.Option(
        None, help="seconds allowed per car (first frame captured -> last frame stored); needed unless --profile is given"
    ),
    takt: Optional[float] = typer.Option(None, help="seconds between cars: also size the line to keep up"),
    frames_per_car: int = typer.Option(95, help="cameras × shots"),
    results: list[Path] = typer.Option([Path("benchmarks")], help="bench/eval JSON files or folders"),
    top: int = typer.Option(10, help="rows to show"),
    scaling: Path = typer.Option(
        Path("benchmarks/h100/scaling.json"),
        help="measured whole-car latency on 1, 2, 4 GPUs (benchmarks/h100/run_multi_gpu.py); missing: linear scaling assumed and said",
    ),
    profile: list[Path] = typer.Option(
        [], help="site profile (configs/*.yaml, or a folder of them): pick its grid option (one call, second look, overlap)"
    ),
) -> None:
    """Most accurate model/backend/precision/batch meeting the per-car deadline on measured hardware, and GPUs per line;
    with --profile, the most accurate grid option whose measured time fits each profile's car deadline."""
    from ..tools.plan import GpuScaling, best, load_accuracy, load_rows, plan

    missing = [p for p in results if not p.exists()]
    if missing:
        raise UsageError(
            f"--results {', '.join(map(str, missing))}: no such file or folder (run `inspection bench --out DIR` "
            "first, or run from the repository, whose benchmarks/ holds measured results)"
        )
    if profile:
        _plan_grids(profile, results)
        if deadline is None:
            return
    if deadline is None:
        raise UsageError("give --deadline SECONDS (per car), or --profile CONFIG to pick a site's grid")
    rows = load_rows(results)
    if not rows:
        raise CliError(f"no bench results under {', '.join(map(str, results))} (run `inspection bench` first)")
    try:
        gpu_scaling = GpuScaling.load(scaling) if scaling.is_file() else GpuScaling.linear()
    except (ValueError, KeyError) as exc:
        raise UsageError(f"--scaling {scaling}: {exc}") from None
    ranked = plan(rows, load_accuracy(results), deadline, takt, frames_per_car, scaling=gpu_scaling)
    console.print(
        f"GPU scaling: {'measured on ' + gpu_scaling.machine + ' (' + gpu_scaling.source + ')' if gpu_scaling.measured else gpu_scaling.machine}"
    )
    console.print(
        plan_table(
            ranked[:top], f"deadline {deadline:g} s per car ({frames_per_car} frames)" + (f", takt {takt:g} s" if takt else "")
        )
    )
    choice = best(ranked)
    if choice is not None:
        fits = (
            "meets the deadline on one GPU"
            if choice.gpus_for_deadline == 1
            else f"needs {choice.gpus_for_deadline} GPUs for the deadline"
        )
        console.print(
            f"choose {choice.model} / {choice.backend} / {choice.precision}, batch {choice.batch_size} on {choice.device}: "
            f"{choice.car_s_one_gpu:.2f} s per car on one device, {fits}; a line at this takt needs {choice.gpus} device(s)"
        )


def _plan_grids(profiles: list[Path], results: list[Path]) -> None:
    """`inspection plan --profile`: per site profile, the grid option it can afford, and why."""
    from ..tools.plan import choose_grid, load_grid_options, times_for

    files = [f for p in profiles for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    measured = load_grid_options(results)
    if not measured:
        raise CliError(
            f"no grid_options_*.json under {', '.join(map(str, results))} (run `inspection eval --scenes N --json PATH` first)"
        )
    for f in files:
        settings = _settings(f)
        on_gpu = settings.model.device == "cuda" or settings.model.backend == "tensorrt"
        picked = times_for(measured, on_gpu)
        if picked is None:  # measured is not empty: times_for always finds some
            continue
        times, same_kind = picked
        line = settings.line
        choice = choose_grid(str(f), times, line.takt_s, line.deadline_margin, line.frames_per_car, same_kind)
        table = _table(
            f"{f}: car deadline {line.takt_s:g} s less {line.deadline_margin:.0%} margin = {choice.budget_s:.1f} s, "
            f"{line.frames_per_car} frames",
            ["grid option", "mAP", "border recall", "s/frame", "car s", "fits"],
        )
        for key, o in sorted(times.options.items(), key=lambda kv: -kv[1].map):
            table.add_row(
                key,
                f"{o.map:.3f}",
                f"{o.border_recall:.2f}",
                f"{o.s_per_frame:.3f}",
                f"{choice.car_s[key]:.1f}",
                "yes" if choice.car_s[key] <= choice.budget_s + 1e-9 else "no",
            )
        console.print(table)
        console.print(f"choose {choice.why()}")


def plan_table(candidates: list[Any], title: str | None = None) -> Table:
    """`inspection plan` candidates as a table that fits 80 columns."""
    table = _table(
        title,
        ["model", "runs on", "ms/frame", "car s (1 GPU)", "mAP", "GPUs"],
        key_width=max((len(c.model) for c in candidates), default=5),
        right=True,
        fold=("runs on", "car s (1 GPU)"),
    )
    for c in candidates:
        table.add_row(
            c.model,
            f"{c.backend} {c.precision} {c.device} {c.mode} batch {c.batch_size}",
            f"{c.frame_ms:.1f}",
            f"{c.car_s_one_gpu:.2f}",
            "?" if c.map is None else f"{c.map:.3f}",
            str(c.gpus),
        )
    return table
