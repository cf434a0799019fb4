"""The `inspection` command: demo, broker, produce, edge, eval, bench, model, db.

Every command turns a failure into one `error:` line naming the fix (exit 2 for a usage mistake,
1 for a runtime failure); `inspection --debug ...` (or INSPECTION_DEBUG=1) shows the traceback
instead. Tables fold long cells instead of cutting them, so they stay readable at 80 columns.
"""

from __future__ import annotations

import functools
import json
import logging
import shlex
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import ConfigError, Settings, load_settings
from .logs import configure_logging

# typer >= 0.26 runs on its own copy of click: its context stack is not `click`'s, even where click
# is installed beside it (uvicorn needs click), so take the function typer itself uses.
try:
    from typer.main import get_current_context  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer re-exports nothing here
    from click import get_current_context  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])


class UsageError(ValueError):
    """A command was called wrongly (exit 2); the message names the right call."""


def _debug() -> bool:
    ctx = get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def _errors(command: F) -> F:
    """Run a command; an exception becomes one `error:` line (exit 2 usage, 1 runtime), unless --debug."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _debug():
                raise
            usage = isinstance(exc, (UsageError, ConfigError))
            known = usage or isinstance(exc, (OSError, ValueError, RuntimeError, LookupError))
            text = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc}"
            err_console.print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
            err_console.print("(run `inspection --debug ...` for the traceback)", style="dim", soft_wrap=True)
            raise typer.Exit(2 if usage else 1) from None

    return run  # type: ignore[return-value]


class _Typer(typer.Typer):
    """A Typer whose commands all report failures through `_errors`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(_errors(fn))
            return fn

        return decorator


app = _Typer(help="Streaming edge inspection: Kafka camera frames -> tiled batch detection -> SQL.", no_args_is_help=True)
model_app = _Typer(help="Models: list, convert to ONNX, build TensorRT engines.", no_args_is_help=True)
db_app = _Typer(help="Results database: migrations, retention.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", envvar="INSPECTION_DEBUG", help="show the traceback of a failure instead of one error line"),
) -> None:
    """Streaming edge inspection: Kafka camera frames -> tiled batch detection -> SQL."""


def _table(title: str | None, columns: list[str], *, key_width: int = 0, right: bool = True, fold: tuple[str, ...] = ()) -> Table:
    """A table that stays readable at 80 columns: ids and numbers are never cut (`car-00…`) nor
    broken; only the text columns named in `fold` (and the first, when `key_width` is 0) wrap."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(columns):
        wraps = name in fold or (i == 0 and not key_width)
        table.add_column(
            name,
            justify="left" if i == 0 or not right else "right",
            no_wrap=not wraps,
            overflow="fold",
            min_width=key_width if i == 0 and key_width else None,
        )
    return table


DEMO_SHOTS = 6  # per camera: 5 × 6 = 30 frames, about 3 minutes on 2 CPU cores with the opencv backend

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML site config (configs/*.yaml); env INSPECTION__SECTION__KEY overrides")


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


LogFormatOpt = typer.Option(None, "--log-format", help="text or json (one JSON object per line); default: config logging.format")


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)  # messages name extras like inspection[gpu]
    return typer.Exit(code)


# --------------------------------------------------------------------------- demo


@app.command()
def demo(
    config: Optional[Path] = ConfigOpt,
    shots: int = typer.Option(DEMO_SHOTS, help="shots per camera (the line has 19; --full runs them all)"),
    full: bool = typer.Option(False, "--full", help="a whole car: every camera × every shot of the config (5 × 19)"),
    cars: int = typer.Option(1, min=1),
    backend: Optional[str] = typer.Option(None, help="detector backend (default: config, opencv)"),
    db: Optional[str] = typer.Option(None, help="database URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test"),
    bootstrap: Optional[str] = typer.Option(None, help="HOST:PORT of an external Kafka instead of the embedded broker"),
    takt: Optional[float] = typer.Option(None, help="seconds between cars (sets each car's deadline)"),
    realtime: bool = typer.Option(True, help="fire the shots on the line's schedule (--no-realtime: all at once)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the per-car results as JSON"),
    serve: bool = typer.Option(False, "--serve", help="keep the dashboard up on 127.0.0.1:8050 during and after the run (Ctrl-C ends)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Run the whole system locally: embedded broker, one car on the simulated line, an edge consumer, SQLite."""
    from .demo import dashboard_hint, run_demo, start_demo_dashboard

    settings = _settings(
        config, **{"model.backend": backend, "store.url": db, "kafka.bootstrap_servers": bootstrap, "line.takt_s": takt,
                   "logging.format": log_format}
    )
    configure_logging(settings.logging.format, verbose=verbose)
    if not full:
        settings = settings.model_copy(update={"line": settings.line.model_copy(update={"shots_per_camera": shots})})
    line = settings.line
    console.print(
        f"demo: {cars} car(s) × {line.cameras} cameras × {line.shots_per_camera} shots = "
        f"{cars * line.frames_per_car} frames {'(--full)' if full else f'(--shots {shots}; --full for {line.cameras} × 19)'}; "
        f"backend {settings.model.backend}/{settings.model.precision}; takt {line.takt_s:g} s; db {settings.store.url}; "
        f"broker {settings.kafka.bootstrap_servers or 'embedded'}"
    )
    dashboard = None
    if serve:
        try:
            dashboard = start_demo_dashboard(settings)
        except Exception as exc:
            raise _fail(f"cannot start the dashboard: {exc}") from None
        console.print(f"dashboard: [bold]{dashboard.url}[/bold] (watch the car arrive; Ctrl-C ends the demo)")
    with Progress(TextColumn("frames stored"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("frames", total=cars * line.frames_per_car)
        try:
            result = run_demo(settings, cars, realtime, on_progress=lambda done, total: bar.update(task, completed=done))
        except Exception as exc:  # every failure ends in one clear line; --verbose (or --debug) shows the trace
            if dashboard is not None:
                dashboard.stop()
            if verbose:
                raise
            raise _fail(f"{type(exc).__name__}: {exc}") from None
    console.print(demo_table(result.to_dict()["cars"], f"cars ({result.backend}, {result.stats.frames_handled / result.wall_s:.2f} frames/s overall)"))
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str))
        console.print(f"wrote {json_path}")
    if dashboard is None:
        console.print(f"see the car and its boxes: {escape(dashboard_hint(settings))}  then open http://127.0.0.1:8050")
        return
    console.print(f"dashboard still up at [bold]{dashboard.url}[/bold]; Ctrl-C to stop")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dashboard.stop()


def demo_table(cars: list[dict[str, Any]], title: str | None = None) -> Table:
    """The demo's per-car table (rows of `DemoResult.to_dict()["cars"]`); fits 80 columns."""
    # latencies: mean and max per frame (capture -> stored), the car's (first capture -> last stored)
    table = _table(title, ["car", "frames", "err", "boxes", "mean s", "max s", "car s", "deadline", "met"],
                   key_width=max((len(c["car_id"]) for c in cars), default=3), fold=("met",))

    def seconds(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for car in cars:
        met = car["deadline_met"]
        table.add_row(
            car["car_id"],
            f"{car['frames']}/{car['frames_expected']}",
            str(car["errors"]),
            str(car["detections"]),
            seconds(car["mean_frame_latency_s"]),
            seconds(car["max_frame_latency_s"]),
            seconds(car["car_latency_s"]),
            f"{car['deadline_s']:.1f} s",
            ("[yellow]overdue[/yellow]" if car.get("state") == "overdue" else "-") if met is None
            else ("[green]met[/green]" if met else f"[red]late {car['lateness_s']:.1f} s[/red]"),
        )
    return table


# --------------------------------------------------------------------------- streaming parts


@app.command()
def broker(port: int = typer.Option(0, help="port on 127.0.0.1 (0: a free one)")) -> None:
    """Run the embedded Kafka-protocol broker (tansu, in memory) until Ctrl-C."""
    from .kafka import EmbeddedBroker

    with EmbeddedBroker(port=port or None) as running:
        console.print(f"broker ready: bootstrap.servers={running.bootstrap_servers} (in-memory: a restart loses its records)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


@app.command()
def produce(
    bootstrap: Optional[str] = typer.Option(None, help="HOST:PORT of the Kafka cluster (default: config kafka.bootstrap_servers)"),
    config: Optional[Path] = ConfigOpt,
    cars: int = typer.Option(1, min=0, help="cars to produce (0: until Ctrl-C)"),
    start_car: int = typer.Option(1, min=0),
    source: str = typer.Option("photos", help="photos (built-in), coco (needs --images/--annotations) or dir (needs --images)"),
    images: Optional[Path] = typer.Option(None, help="image directory (coco or dir source)"),
    annotations: Optional[Path] = typer.Option(None, help="COCO instances JSON (coco source)"),
    realtime: bool = typer.Option(True, help="keep the line's takt schedule (--no-realtime: as fast as possible, stamped when sent)"),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Camera producers: push cars of frames (JPEG + headers) into Kafka on the simulated line."""
    from synthetic.line import LineSimulator

    from .kafka import FrameProducer, check_reachable, ensure_topics
    from .tiling import TileGrid

    settings = _settings(config, **{"kafka.bootstrap_servers": bootstrap, "logging.format": log_format})
    configure_logging(settings.logging.format)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise _fail("no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers", 2)
    if images is not None and not images.is_dir():
        raise _fail(f"--images {images}: no such directory", 2)
    if annotations is not None and not annotations.is_file():
        raise _fail(f"--annotations {annotations}: no such file (a COCO instances JSON)", 2)
    grid = TileGrid.from_config(settings.grid)
    if source == "photos":
        from synthetic.photos import PhotoFrameSource

        frames: Any = PhotoFrameSource(grid)
    elif source == "coco":
        from synthetic.coco import CocoDataset
        from synthetic.compose import MosaicFrameSource

        if not images or not annotations:
            raise _fail("--source coco needs --images DIR and --annotations instances.json", 2)
        frames = MosaicFrameSource(CocoDataset.load(images, annotations), grid)
    elif source == "dir":
        if not images or not images.is_dir():
            raise _fail("--source dir needs --images DIR of JPEG frames", 2)
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not files:
            raise _fail(f"no .jpg files in {images}", 2)
        frames = lambda car, cam, shot: files[(car * 1000 + cam * 100 + shot) % len(files)].read_bytes()  # noqa: E731
    else:
        raise _fail(f"unknown --source {source!r} (allowed: photos, coco, dir)", 2)
    check_reachable(bootstrap, timeout=10)
    ensure_topics(bootstrap, settings.kafka)
    with FrameProducer(bootstrap, settings.kafka) as producer:
        sim = LineSimulator(settings.line, frames, producer)
        signal.signal(signal.SIGTERM, lambda *_: sim.stop())
        try:
            sent = sim.run(cars or None, start_car=start_car, realtime=realtime)
        except KeyboardInterrupt:
            sim.stop()
            sent = []
    console.print(f"produced {len(sent)} frames to {settings.kafka.topic} on {bootstrap}")


@app.command()
def edge(
    bootstrap: Optional[str] = typer.Option(None, help="HOST:PORT of the Kafka cluster (default: config kafka.bootstrap_servers)"),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"),
    backend: Optional[str] = typer.Option(None),
    metrics_port: int = typer.Option(0, help="serve Prometheus /metrics, /healthz and /readyz on this port (0: off)"),
    metrics_addr: str = typer.Option("127.0.0.1", help="address for /metrics (0.0.0.0 for a scraper outside the host/pod)"),
    max_frames: int = typer.Option(0, help="stop after handling this many frames (0: run until SIGTERM/Ctrl-C)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Edge consumer: poll -> decode -> tile -> detect -> stitch -> store -> commit, in the consumer group.

    With --metrics-port, also serves /healthz (process up) and /readyz (assigned, making progress
    while lagging, database reachable) for probes.
    """
    from .health import HealthServer
    from .pipeline import EdgePipeline, PipelineError, create_detectors
    from .store import ResultStore

    settings = _settings(config, **{"kafka.bootstrap_servers": bootstrap, "store.url": db, "model.backend": backend,
                                    "logging.format": log_format})
    configure_logging(settings.logging.format, verbose=verbose)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise _fail("no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers (INSPECTION__KAFKA__BOOTSTRAP_SERVERS)", 2)
    from .kafka import check_reachable

    check_reachable(bootstrap, timeout=10)
    store = ResultStore.open(settings.store)
    pipeline = EdgePipeline(settings, create_detectors(settings), store, bootstrap)
    server = HealthServer(pipeline.metrics.registry, pipeline.readiness)
    if metrics_port:
        server.start(metrics_port, metrics_addr)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pipeline.stop())
    try:
        stats = pipeline.run(stop_when=(lambda s: s.frames_handled >= max_frames) if max_frames else None)
    except PipelineError as exc:
        raise _fail(str(exc)) from None
    finally:
        server.close()
        store.close()
    console.print(f"stopped cleanly: {stats.frames_stored} frames stored, {stats.frames_parked} parked, {stats.commits} commits")


# --------------------------------------------------------------------------- accuracy and speed


@app.command("eval")
def eval_(
    images: Path = typer.Option(..., help="COCO images directory (e.g. val2017)"),
    annotations: Path = typer.Option(..., help="COCO instances JSON"),
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = typer.Option(None),
    backend: Optional[str] = typer.Option(None),
    precision: Optional[str] = typer.Option(None),
    path: Optional[Path] = typer.Option(None, help="model file instead of the registry's location"),
    max_tiles: Optional[int] = typer.Option(None, help="score only this many images (fast check)"),
    seed: int = 0,
    letterbox: bool = False,
    json_path: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """pycocotools mAP at tile level and at stitched-frame level on mosaics of a COCO dataset, plus tiles/s."""
    from synthetic.coco import CocoDataset

    from .detect import create_detector
    from .evaluate import evaluate
    from .stitch import stitch
    from .tiling import TileGrid

    settings = _settings(config, **{"model.name": model, "model.backend": backend, "model.precision": precision, "model.path": path})
    if not images.is_dir():
        raise _fail(f"--images {images}: no such directory (the COCO images, e.g. val2017/)", 2)
    if not annotations.is_file():
        raise _fail(f"--annotations {annotations}: no such file (the COCO instances JSON)", 2)
    detector = create_detector(settings.model, settings.detect)
    dataset = CocoDataset.load(images, annotations)
    grid = TileGrid.from_config(settings.grid)
    with Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=None)
        report = evaluate(detector, dataset, grid, stitch_fn=functools.partial(stitch, config=settings.stitch),
                          max_tiles=max_tiles, seed=seed, letterbox=letterbox,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = _table(f"{report.model} {report.backend}/{report.precision}: {report.images} images, {report.tiles_per_s:.1f} tiles/s",
                   ["level", *report.tile])
    for level, scores in (("tile", report.tile), ("frame (stitched)", report.frame)):
        table.add_row(level, *(f"{v:.4f}" for v in scores.values()))
    console.print(table)
    if json_path:
        json_path.write_text(json.dumps({"tile": report.tile, "frame": report.frame, "tiles_per_s": report.tiles_per_s,
                                         "model": report.model, "backend": report.backend, "precision": report.precision,
                                         "images": report.images}, indent=2))


@app.command()
def bench(
    config: Optional[Path] = ConfigOpt,
    combo: list[str] = typer.Option(
        ["ssd_mobilenet_v2_coco:opencv:fp32", "ssd_mobilenet_v2_coco:onnxruntime:fp32"],
        help="MODEL:BACKEND:PRECISION[:eager], repeatable (eager: torch without CUDA graph, the GPU baseline)",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda for the torch/tensorrt combos (opencv/onnxruntime run on the CPU)"),
    batch_sizes: str = typer.Option("1,2,4,8,16,32,64"),
    repeats: int = typer.Option(3, min=1),
    naive: bool = typer.Option(True, help="also time the one-tile-at-a-time baseline"),
    e2e: int = typer.Option(0, help="also run N whole cars end to end (broker -> database) on the first combo"),
    deadline: float = typer.Option(0.5, help="per-car deadline of the end-to-end cars, seconds"),
    consumers: int = typer.Option(1, min=1, help="edge consumers sharing the end-to-end cars (this process + N-1 `inspection edge` processes)"),
    db: Optional[str] = typer.Option(None, help="database of the end-to-end run (default: a fresh SQLite file in --out)"),
    out: Path = typer.Option(Path("benchmarks/results"), help="folder for bench.json/csv/png and e2e.json"),
) -> None:
    """Time per frame and tiles/s per model × backend × precision × batch size, with peak memory; optionally whole cars end to end."""
    from .bench import Combo, comparison, machine_description, run_bench, write_results

    settings = _settings(config)
    try:
        combos = [Combo.parse(c) for c in combo]
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    sizes = [int(s) for s in batch_sizes.split(",")]
    command = shlex.join(
        ["inspection", "bench", *(f"--combo={c}" for c in combo), f"--device={device}", f"--batch-sizes={batch_sizes}",
         f"--repeats={repeats}", "--naive" if naive else "--no-naive", f"--out={out}",
         *([f"--e2e={e2e}", f"--deadline={deadline}", f"--consumers={consumers}"] if e2e else []),
         *([f"--config={config}"] if config else [])]
    )
    machine = machine_description()
    rows = []
    if sizes and sizes != [0]:
        with console.status("benchmarking") as status:
            rows = run_bench(settings, combos, sizes, repeats, naive, device, progress=lambda text: status.update(text))
        console.print(bench_table(rows))
        compared = comparison(rows)
        compare = _table("baselines vs optimised (same run)", list(compared[0]) if compared else [], right=False,
                     fold=tuple(compared[0]) if compared else ())
        for item in compared:
            compare.add_row(*(str(v) for v in item.values()))
        console.print(compare)
        for written in write_results(rows, out, command, machine):
            console.print(f"wrote {written}")
    if e2e:
        _bench_e2e(settings, combos[0], device, e2e, deadline, db, out, command, machine, consumers)


def bench_table(rows: list[Any]) -> Group:
    """`inspection bench` rows (BenchRow): one table per model/backend/precision/device, so each fits 80 columns."""
    combos: dict[tuple[str, str, str, str], list[Any]] = {}
    for r in rows:
        combos.setdefault((r.model, r.backend, r.precision, r.device), []).append(r)
    tables = []
    for (model, backend, precision, device), group in combos.items():
        table = _table(f"{model} {backend}/{precision} on {device} (time per frame = the grid's tiles + blank padding)",
                       ["mode", "batch", "ms/frame", "tiles/s", "peak MiB", "memory", "× naive"], key_width=7)
        for r in group:
            table.add_row(r.mode, str(r.batch_size), f"{r.frame_ms:.1f}", f"{r.tiles_per_s:.1f}",
                          "-" if r.peak_mem_mib is None else f"{r.peak_mem_mib:.0f}", r.mem_kind,
                          str(r.extra.get("speedup_vs_naive", "")))
        tables.append(table)
    return Group(*tables)


def _bench_e2e(settings: Settings, combo: Any, device: str, cars: int, deadline: float, db: Optional[str], out: Path,
               command: str, machine: dict[str, Any], consumers: int = 1) -> None:
    from .bench_e2e import run_e2e
    from .demo import kafka_cluster

    out.mkdir(parents=True, exist_ok=True)
    model = settings.model.model_copy(update={
        "name": combo.model, "backend": combo.backend, "precision": combo.precision,
        "device": "cpu" if combo.backend in ("opencv", "onnxruntime") else device})
    store = settings.store.model_copy(update={"url": db or f"sqlite:///{(out / 'e2e.db').resolve()}", "image_dir": None})
    settings = settings.model_copy(update={"model": model, "store": store,
                                           "line": settings.line.model_copy(update={"takt_s": deadline})})
    with console.status("end to end") as status, kafka_cluster(settings) as (bootstrap, _embedded):
        result = run_e2e(settings, bootstrap, cars, deadline, progress=lambda text: status.update(text),
                         consumers=consumers, workdir=out)
    stages = list(result.cars[0].stage_ms_per_frame)
    table = _table(f"end to end: {result.frames_per_car} frames per car, {consumers} consumer(s), {result.backend}/{result.precision} "
                   f"on {result.device}, decode {result.decode}, {result.db}",
                   ["car", "car latency s", "produce s", "first stored s", "frames/s", "met"], key_width=4,
                   fold=("car latency s", "produce s", "first stored s"))
    per_stage = _table("time per frame in each stage, ms", ["car", *stages], key_width=4)
    for c in result.cars:
        table.add_row(c.car_id[-4:], f"{c.car_latency_s:.3f}", f"{c.produce_s:.3f}", f"{c.first_stored_s:.3f}", f"{c.pipeline_fps:.1f}",
                      str(c.deadline_met))
        per_stage.add_row(c.car_id[-4:], *(f"{v:.2f}" for v in c.stage_ms_per_frame.values()))
    console.print(table)
    console.print(per_stage)
    if result.bare_model_ms:
        console.print(f"bare model {result.bare_model_ms:.2f} ms per 64-tile batch ({result.bare_model_fps:.0f} frames/s); "
                      f"pipeline/bare = {result.pipeline_to_bare_ratio:.2f}; peak GPU memory {result.peak_gpu_mem_mib} MiB")
    path = out / "e2e.json"
    path.write_text(json.dumps({"command": command, "machine": machine, "deadline_s": deadline, **result.to_dict()}, indent=2))
    console.print(f"wrote {path}")


@app.command("plan")
def plan_cmd(
    deadline: float = typer.Option(..., help="seconds allowed per car (first frame captured -> last frame stored)"),
    takt: Optional[float] = typer.Option(None, help="seconds between cars: also size the line to keep up"),
    frames_per_car: int = typer.Option(95, help="cameras × shots"),
    results: list[Path] = typer.Option([Path("benchmarks")], help="bench/eval JSON files or folders"),
    top: int = typer.Option(10, help="rows to show"),
) -> None:
    """Most accurate model/backend/precision/batch meeting the per-car deadline on measured hardware, and GPUs per line."""
    from .plan import best, load_accuracy, load_rows, plan

    missing = [p for p in results if not p.exists()]
    if missing:
        raise _fail(f"--results {', '.join(map(str, missing))}: no such file or folder (run `inspection bench --out DIR` "
                    "first, or run from the repository, whose benchmarks/ holds measured results)", 2)
    rows = load_rows(results)
    if not rows:
        raise _fail(f"no bench results under {', '.join(map(str, results))} (run `inspection bench` first)")
    ranked = plan(rows, load_accuracy(results), deadline, takt, frames_per_car)
    console.print(plan_table(ranked[:top], f"deadline {deadline:g} s per car ({frames_per_car} frames)" + (f", takt {takt:g} s" if takt else "")))
    choice = best(ranked)
    if choice is not None:
        fits = "meets the deadline on one GPU" if choice.gpus_for_deadline == 1 else f"needs {choice.gpus_for_deadline} GPUs for the deadline"
        console.print(
            f"choose {choice.model} / {choice.backend} / {choice.precision}, batch {choice.batch_size} on {choice.device}: "
            f"{choice.car_s_one_gpu:.2f} s per car on one device, {fits}; a line at this takt needs {choice.gpus} device(s)"
        )


def plan_table(candidates: list[Any], title: str | None = None) -> Table:
    """`inspection plan` candidates as a table that fits 80 columns."""
    table = _table(title, ["model", "runs on", "ms/frame", "car s (1 GPU)", "mAP", "GPUs"],
                   key_width=max((len(c.model) for c in candidates), default=5), right=True, fold=("runs on", "car s (1 GPU)"))
    for c in candidates:
        table.add_row(c.model, f"{c.backend} {c.precision} {c.device} {c.mode} batch {c.batch_size}", f"{c.frame_ms:.1f}",
                      f"{c.car_s_one_gpu:.2f}", "?" if c.map is None else f"{c.map:.3f}", str(c.gpus))
    return table


# --------------------------------------------------------------------------- dashboard


@app.command()
def dashboard(
    db: Optional[str] = typer.Option(None, help="results database URL (default: config store.url); opened read-only"),
    images: Optional[Path] = typer.Option(None, help="the edge's image store (default: config store.image_dir)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback needs --token"),
    port: int = typer.Option(8050, min=0, max=65535),
    token: Optional[str] = typer.Option(None, envvar="INSPECTION_DASHBOARD_TOKEN",
                                        help="required on every request (header, or ?token= once in the browser)"),
    thumbs: Optional[Path] = typer.Option(None, help="thumbnail cache folder (default: the user cache directory)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Web dashboard and JSON API on the results database: line, cars, frame viewer, detections, problems."""
    from .dashboard import BindRefusedError, DashboardConfig, check_bind, serve

    settings = _settings(config, **{"store.url": db, "store.image_dir": str(images) if images else None})
    try:
        check_bind(host, token)
    except BindRefusedError as exc:
        raise _fail(str(exc), 2) from None
    options: dict[str, Any] = {"db_url": settings.store.url, "images_dir": settings.store.image_dir, "host": host,
                               "port": port, "token": token, "cameras": settings.line.cameras, "grid": settings.grid}
    if thumbs is not None:
        options["thumbs_dir"] = thumbs
    dashboard_config = DashboardConfig(**options)
    from .analytics import DatabaseMissingError, open_readonly_engine

    try:  # fail here, with one line, rather than inside the server's start-up
        open_readonly_engine(dashboard_config.db_url).dispose()
    except (DatabaseMissingError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"dashboard on http://{shown}:{port}/ (db {escape(settings.store.url)}, read-only)"
                  + (" — open it once as /?token=<token>" if token else ""))
    serve(dashboard_config)


# --------------------------------------------------------------------------- models and database


@model_app.command("list")
def model_list() -> None:
    """Registered models and where their files come from."""
    from .detect import available_models, load_spec

    table = _table(None, ["model", "family", "input", "classes", "files", "licence"], key_width=21, right=False,
                   fold=("family", "files", "licence"))
    for name in available_models():
        spec = load_spec(name)
        table.add_row(name, spec.family, "×".join(map(str, spec.input_size)), str(len(spec.class_names)),
                      ", ".join(spec.files), spec.licence)
    console.print(table)


@model_app.command("convert")
def model_convert(name: str = typer.Argument("ssd_mobilenet_v2_coco"), out: Optional[Path] = typer.Option(None)) -> None:
    """Frozen TF graph -> raw ONNX in the model cache (needs: pip install 'inspection[convert]')."""
    from .detect import load_spec
    from .detect.convert import ConverterMissingError, convert_to_onnx

    try:
        path = convert_to_onnx(load_spec(name), out)
    except (ConverterMissingError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {path}")


@model_app.command("build-engine")
def model_build_engine(
    name: str = typer.Argument("ssd_mobilenet_v2_coco"),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8"),
    calibration_images: Optional[Path] = typer.Option(None, help="int8: a folder of real line frames (or tiles) to calibrate on"),
    max_calibration_batches: int = typer.Option(32, min=1, help="int8: calibration batches of 16 tiles"),
    onnx: Optional[Path] = typer.Option(None, help="the raw ONNX graph (default: the model cache, see `inspection model convert`)"),
    cache_dir: Optional[Path] = typer.Option(None, help="engine/timing/calibration caches (default: <model cache>/engines)"),
    contexts: int = typer.Option(2, min=1, max=8, help="optimisation profiles = execution contexts in flight"),
    force: bool = typer.Option(False, help="rebuild even if a cached engine matches"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """TensorRT: ONNX -> engine (batch 1..64 profile, FP16/INT8, timing cache), cached by model hash, GPU and TensorRT version."""
    import hashlib
    import importlib.util

    from .detect import load_spec, resolve_model_file
    from .tiling import TileGrid

    if precision not in ("fp32", "fp16", "int8"):
        raise _fail(f"--precision {precision!r}: allowed fp32, fp16, int8", 2)
    if precision == "int8" and (calibration_images is None or not calibration_images.is_dir()):
        raise _fail("--precision int8 needs --calibration-images DIR: real frames from the line, so INT8 ranges fit what the cameras see", 2)
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        raise _fail(f"building an engine needs {' and '.join(missing)}: on a Jetson JetPack ships TensorRT (python3-libnvinfer) "
                    "and pycuda installs with pip; on an x86 GPU node: pip install 'inspection[gpu]' (see deploy/jetson/README.md)")
    from .detect.calibration import CalibrationBatches, make_entropy_calibrator, tile_batches_from_images
    from .detect.engine import build_engine, calibration_cache_path, cuda_primary_context, default_engine_dir, file_sha256

    settings = _settings(config)
    spec = load_spec(name)
    onnx_path = resolve_model_file(spec, "onnx", onnx)
    cache = cache_dir or (settings.model.engine_cache_dir and Path(settings.model.engine_cache_dir)) or default_engine_dir()
    calibrator, calibration_id = None, ""
    if precision == "int8":
        paths = sorted(p for p in calibration_images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))  # type: ignore[union-attr]
        if not paths:
            raise _fail(f"no .jpg/.png images in {calibration_images}", 2)
        calibration_id = hashlib.sha256("\n".join(p.name for p in paths).encode()).hexdigest()[:16]
        tiles = list(tile_batches_from_images(paths, TileGrid.from_config(settings.grid)))
        batches = CalibrationBatches(tiles, spec, 16, max_calibration_batches)
        calibrator = make_entropy_calibrator(batches, calibration_cache_path(cache, file_sha256(onnx_path)))
    with cuda_primary_context():
        path = build_engine(onnx_path, precision, calibrator, cache, profiles=contexts, calibration_id=calibration_id, force=force)
    console.print(f"engine ready: {path}")


@db_app.command("upgrade")
def db_upgrade(db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"), config: Optional[Path] = ConfigOpt) -> None:
    """Bring the results database schema to the newest Alembic revision."""
    from .store import upgrade_database

    settings = _settings(config, **{"store.url": db})
    try:
        upgrade_database(settings.store.url)
    except Exception as exc:
        raise _fail(f"cannot upgrade {settings.store.url}: {exc}") from None
    console.print(f"{settings.store.url}: schema at head")


@db_app.command("prune")
def db_prune(
    older_than: Optional[str] = typer.Option(None, help="delete results and images older than this (30d, 12h, 2w); default: config retention"),
    images_older_than: Optional[str] = typer.Option(None, help="delete only frame images older than this (rows stay)"),
    yes: bool = typer.Option(False, "--yes", help="really delete (without it: a dry run that reports what would go)"),
    db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Retention: delete cars, frames, detections, rejected messages and frame images older than a cutoff (dry run by default)."""
    from .retention import parse_duration, prune
    from .store import ResultStore

    settings = _settings(config, **{"store.url": db})
    retention = settings.retention
    try:
        rows_age = parse_duration(older_than) if older_than else None
        images_age = parse_duration(images_older_than) if images_older_than else None
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    if older_than is None and images_older_than is None:
        rows_age = timedelta(days=retention.rows_days) if retention.rows_days else None
        images_age = timedelta(days=retention.images_days) if retention.images_days else None
    if rows_age is None and images_age is None:
        raise _fail("nothing to prune: pass --older-than 30d (or --images-older-than 7d), or set retention.rows_days / retention.images_days", 2)
    with ResultStore.open(settings.store, migrate=False) as store:
        report = prune(store, rows_older_than=rows_age, images_older_than=images_age,
                       default_image_dir=settings.store.image_dir, dry_run=not yes)
    when = ", ".join(
        f"{what} before {at:%Y-%m-%d %H:%M} UTC" for what, at in (("rows", report.rows_before), ("images", report.images_before)) if at
    )
    table = _table(f"{'would delete (dry run)' if report.dry_run else 'deleted'}: {when}", ["what", "count", "bytes"], key_width=14)
    for what, count in (("cars", report.cars), ("frames", report.frames), ("detections", report.detections),
                        ("rejected", report.rejected), ("image uri cleared", report.images_cleared)):
        table.add_row(what, str(count), "")
    table.add_row("image files", str(report.image_files), f"{report.image_bytes:,}")
    console.print(table)
    if report.images_missing:
        console.print(f"{report.images_missing} referenced image file(s) were already gone or outside a known image directory")
    if report.dry_run:
        console.print("dry run: nothing deleted; add --yes to delete")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
