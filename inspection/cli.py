"""The `inspection` command: demo, broker, produce, edge, eval, bench, model, db.

Every command turns a failure into one `error:` line naming the fix (exit 2 for a usage mistake,
1 for a runtime failure); `inspection --debug ...` (or INSPECTION_DEBUG=1) shows the traceback
instead. Tables fold long cells instead of cutting them, so they stay readable at 80 columns.
"""

from __future__ import annotations

import functools
import json
import shlex
import signal
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import ConfigError, Settings, load_settings
from .extras import require
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
            known = usage or isinstance(exc, (OSError, ValueError, RuntimeError, LookupError, ImportError))
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
model_app = _Typer(
    help="Models: list, add your own, convert to ONNX, quantize to INT8, build TensorRT engines.", no_args_is_help=True
)
db_app = _Typer(help="Results database: migrations, retention.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="INSPECTION_DEBUG", help="show the traceback of a failure instead of one error line"
    ),
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


DEMO_SHOTS = 6  # per camera: 5 × 6 = 30 frames, about a minute on 2 CPU cores with the onnxruntime backend

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML site config (configs/*.yaml); env INSPECTION__SECTION__KEY overrides")


def _settings(config: Optional[Path], **overrides: Any) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


LogFormatOpt = typer.Option(None, "--log-format", help="text or json (one JSON object per line); default: config logging.format")


def _model_errors() -> tuple[type[BaseException], ...]:
    """Model-layer errors whose message names the fix: shown as one `error:` line."""
    from .detect import MissingBackendError, ModelMismatchError, ModelNotFoundError, UnknownModelError

    return (MissingBackendError, ModelMismatchError, ModelNotFoundError, UnknownModelError)


def _command_line() -> str:
    """The running command as a user would type it, every option given (defaults too) and nothing
    left out: written beside results so a run can be repeated exactly."""
    ctx = get_current_context()
    words = ["inspection", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or not param.opts:
            continue
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            names = param.opts if value else getattr(param, "secondary_opts", [])
            words.extend(names[:1])
            continue
        for each in value if isinstance(value, (list, tuple)) else [value]:
            words.append(f"{max(param.opts, key=len)}={each}")
    return shlex.join(words)


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
    backend: Optional[str] = typer.Option(None, help="detector backend (default: config, onnxruntime)"),
    db: Optional[str] = typer.Option(None, help="database URL, e.g. postgresql+psycopg://postgres@127.0.0.1/test"),
    bootstrap: Optional[str] = typer.Option(None, help="HOST:PORT of an external Kafka instead of the embedded broker"),
    takt: Optional[float] = typer.Option(None, help="seconds between cars (sets each car's deadline)"),
    realtime: bool = typer.Option(True, help="fire the shots on the line's schedule (--no-realtime: all at once)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the per-car results as JSON"),
    serve: bool = typer.Option(
        False, "--serve", help="keep the dashboard up on 127.0.0.1:8050 during and after the run (Ctrl-C ends)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Run the whole system locally: embedded broker, one car on the simulated line, an edge consumer, SQLite."""
    from .demo import dashboard_hint, run_demo, start_demo_dashboard

    settings = _settings(
        config,
        **{
            "model.backend": backend,
            "store.url": db,
            "kafka.bootstrap_servers": bootstrap,
            "line.takt_s": takt,
            "logging.format": log_format,
        },
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
    console.print(
        demo_table(
            result.to_dict()["cars"],
            f"cars ({result.backend}, {result.stats.frames_handled / result.wall_s:.2f} frames/s overall)",
        )
    )
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
    table = _table(
        title,
        ["car", "frames", "err", "boxes", "mean s", "max s", "car s", "deadline", "met"],
        key_width=max((len(c["car_id"]) for c in cars), default=3),
        fold=("met",),
    )

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
            ("[yellow]overdue[/yellow]" if car.get("state") == "overdue" else "-")
            if met is None
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
    bootstrap: Optional[str] = typer.Option(
        None, help="HOST:PORT of the Kafka cluster (default: config kafka.bootstrap_servers)"
    ),
    config: Optional[Path] = ConfigOpt,
    cars: int = typer.Option(1, min=0, help="cars to produce (0: until Ctrl-C)"),
    start_car: int = typer.Option(1, min=0),
    source: str = typer.Option("photos", help="photos (built-in), coco (needs --images/--annotations) or dir (needs --images)"),
    images: Optional[Path] = typer.Option(None, help="image directory (coco or dir source)"),
    annotations: Optional[Path] = typer.Option(None, help="COCO instances JSON (coco source)"),
    realtime: bool = typer.Option(
        True, help="keep the line's takt schedule (--no-realtime: as fast as possible, stamped when sent)"
    ),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Camera producers: push cars of frames (JPEG + headers) into Kafka on the simulated line."""
    from synthetic.line import LineSimulator
    from synthetic.sources import SourceChoiceError, frame_source

    from .kafka import FrameProducer, check_reachable, ensure_topics
    from .tiling import TileGrid

    settings = _settings(config, **{"kafka.bootstrap_servers": bootstrap, "logging.format": log_format})
    configure_logging(settings.logging.format)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise _fail("no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers", 2)
    try:
        frames = frame_source(source, TileGrid.from_config(settings.grid), images, annotations)
    except SourceChoiceError as exc:
        raise _fail(str(exc), 2) from None
    check_reachable(bootstrap, timeout=settings.kafka.connect_timeout_s)
    ensure_topics(bootstrap, settings.kafka)
    with FrameProducer(bootstrap, settings.kafka, shots_per_camera=settings.line.shots_per_camera) as producer:
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
    bootstrap: Optional[str] = typer.Option(
        None, help="HOST:PORT of the Kafka cluster (default: config kafka.bootstrap_servers)"
    ),
    config: Optional[Path] = ConfigOpt,
    db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"),
    backend: Optional[str] = typer.Option(None),
    metrics_port: int = typer.Option(0, help="serve Prometheus /metrics, /healthz and /readyz on this port (0: off)"),
    metrics_addr: str = typer.Option("127.0.0.1", help="address for /metrics (0.0.0.0 for a scraper outside the host/pod)"),
    max_frames: int = typer.Option(0, help="stop after handling this many frames (0: run until SIGTERM/Ctrl-C)"),
    workers: Optional[str] = typer.Option(
        None, help="worker processes per GPU (or on the CPU), N or auto (default: config pipeline.workers)"
    ),
    gpus: Optional[str] = typer.Option(
        None, help="GPU indices the workers spread over, e.g. 0,1 (default: config pipeline.gpus)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_format: Optional[str] = LogFormatOpt,
) -> None:
    """Edge consumer: poll -> decode -> tile -> detect -> stitch -> store -> commit, in the consumer group.

    With --metrics-port, also serves /healthz (process up) and /readyz (assigned, making progress
    while lagging, database reachable) for probes. With --workers N (or auto) and/or --gpus, one
    supervisor starts N worker processes per GPU in the same consumer group, forwards SIGTERM/SIGINT,
    restarts a worker that dies, and serves one /metrics, /healthz, /readyz for all workers on --metrics-port.
    """
    from .edge import PipelineError
    from .edge.compose import build_edge
    from .health import HealthServer
    from .store import ResultStore

    gpu_list = None
    if gpus is not None:
        try:
            gpu_list = [int(g) for g in gpus.split(",") if g.strip()]
        except ValueError:
            raise _fail(f"--gpus {gpus!r}: expected GPU indices like 0,1", 2) from None
    settings = _settings(
        config,
        **{
            "kafka.bootstrap_servers": bootstrap,
            "store.url": db,
            "model.backend": backend,
            "logging.format": log_format,
            "pipeline.workers": int(workers) if workers and workers.isdigit() else workers,
            "pipeline.gpus": gpu_list,
        },
    )
    configure_logging(settings.logging.format, verbose=verbose)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise _fail(
            "no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers (INSPECTION__KAFKA__BOOTSTRAP_SERVERS)",
            2,
        )
    from .kafka import check_reachable

    check_reachable(bootstrap, timeout=settings.kafka.connect_timeout_s)
    if settings.pipeline.workers != 1 or settings.pipeline.gpus is not None:
        if max_frames:
            raise _fail("--max-frames needs one in-process consumer (pipeline.workers 1, no --gpus)", 2)
        _supervise(settings, bootstrap, metrics_port, metrics_addr, verbose)
        return
    store = ResultStore.open(settings.store)
    pipeline = build_edge(settings, bootstrap, store)
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


def _supervise(settings: Settings, bootstrap: str, metrics_port: int, metrics_addr: str, verbose: bool) -> None:
    from .edge.supervisor import EdgeSupervisor
    from .store import ResultStore

    ResultStore.open(settings.store).close()  # schema migrated once, before the workers race to it
    supervisor = EdgeSupervisor(settings, bootstrap, metrics_port=metrics_port, metrics_addr=metrics_addr, verbose=verbose)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    console.print(f"edge: {len(supervisor.slots)} worker process(es) in group {settings.kafka.group_id}")
    result = supervisor.run()
    if result.error:
        raise _fail(result.error)
    console.print(f"stopped cleanly: {len(supervisor.slots)} workers drained, {result.restarts} restart(s)")


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
    scenes: int = typer.Option(
        0,
        min=0,
        help="instead of mosaics: N line-size scenes per seed (scaled, off-grid images), "
        "one table of tiling/stitching configurations and SAHI",
    ),
    seeds: str = typer.Option("0,1,2", help="--scenes: comma-separated scene seeds (mean and spread over them)"),
    overlaps: str = typer.Option("60", help="--scenes: overlapping grids to compare, pixels, comma-separated ('' for none)"),
    sahi: bool = typer.Option(
        True, help="--scenes: add the SAHI row (needs the [sahi] extra; skipped with its reason otherwise)"
    ),
    device: Optional[str] = typer.Option(None, help="model.device: cpu, cuda or auto"),
) -> None:
    """pycocotools mAP at tile level and at stitched-frame level on mosaics of a COCO dataset, plus tiles/s
    (with --scenes: the scene table of tiling and stitching configurations, see inspection.scene_eval)."""
    from synthetic.coco import CocoDataset

    from .detect import create_detector
    from .evaluate import evaluate
    from .stitch import stitch
    from .tiling import TileGrid

    settings = _settings(
        config,
        **{
            "model.name": model,
            "model.backend": backend,
            "model.precision": precision,
            "model.path": path,
            "model.device": device,
        },
    )
    if not images.is_dir():
        raise _fail(f"--images {images}: no such directory (the COCO images, e.g. val2017/)", 2)
    if not annotations.is_file():
        raise _fail(f"--annotations {annotations}: no such file (the COCO instances JSON)", 2)
    try:
        detector = create_detector(settings.model, settings.detect)
    except (*_model_errors(), ValueError) as exc:
        raise _fail(str(exc)) from None
    dataset = CocoDataset.load(images, annotations)
    grid = TileGrid.from_config(settings.grid)
    if scenes:
        _scene_table(detector, dataset, grid, settings, scenes, seeds, overlaps, sahi, json_path)
        return
    with Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("eval", total=None)
        report = evaluate(
            detector,
            dataset,
            grid,
            stitch_fn=functools.partial(stitch, config=settings.stitch),
            max_tiles=max_tiles,
            seed=seed,
            letterbox=letterbox,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = _table(
        f"{report.model} {report.backend}/{report.precision}: {report.images} images, {report.tiles_per_s:.1f} tiles/s",
        ["level", *report.tile],
    )
    for level, scores in (("tile", report.tile), ("frame (stitched)", report.frame)):
        table.add_row(level, *(f"{v:.4f}" for v in scores.values()))
    console.print(table)
    if json_path:
        json_path.write_text(
            json.dumps(
                {
                    "tile": report.tile,
                    "frame": report.frame,
                    "tiles_per_s": report.tiles_per_s,
                    "model": report.model,
                    "backend": report.backend,
                    "precision": report.precision,
                    "images": report.images,
                    "classes_scored": report.classes_scored,
                },
                indent=2,
            )
        )


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _fail(f"{option} {text!r}: expected comma-separated integers, e.g. 0,1,2", 2) from None


def _scene_table(
    detector: Any,
    dataset: Any,
    grid: Any,
    settings: Settings,
    scenes: int,
    seeds: str,
    overlaps: str,
    sahi: bool,
    json_path: Optional[Path],
) -> None:
    """`inspection eval --scenes N`: one table, mean ± spread over the seeds, JSON beside it."""
    from .scene_eval import evaluate_scenes

    seed_list = _int_list(seeds, "--seeds")
    if not seed_list:
        raise _fail("--seeds: give at least one seed, e.g. 0,1,2", 2)
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("scenes", total=None)
        report = evaluate_scenes(
            detector,
            dataset,
            grid,
            settings.stitch,
            num_scenes=scenes,
            seeds=seed_list,
            overlaps=_int_list(overlaps, "--overlaps"),
            sahi=sahi,
            progress=lambda text: bar.update(task, description=text),
        )
    objects = sum(s["objects"] for s in report.scenes)
    crossing = sum(s["crossing"] for s in report.scenes)
    spread = "mean ± sd over seeds " + ",".join(str(s) for s in seed_list)
    table = _table(
        f"{report.model} {report.backend}/{report.precision}: {scenes} scenes × {len(seed_list)} seeds, {objects} objects, "
        f"{crossing / max(objects, 1):.0%} crossing a tile border ({spread})",
        ["configuration", "frame mAP", "AP small", "AP medium", "AP large", "border recall", "s/frame"],
        fold=("configuration",),
    )
    for name, scores in report.summary().items():
        table.add_row(
            name,
            *(f"{scores[k][0]:.3f}±{scores[k][1]:.3f}" for k in ("mAP", "AP_small", "AP_medium", "AP_large", "border_recall")),
            f"{scores['s_per_frame'][0]:.2f}±{scores['s_per_frame'][1]:.2f}",
        )
    Console(width=max(console.width, 150)).print(table)  # 7 columns of figures: too wide to fold at 80
    for name, why in report.skipped.items():
        console.print(f"{name} row skipped: {why}")
    if json_path:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))


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
    from .bench import Combo, comparison, machine_description, run_bench, write_results

    settings = _settings(config)
    try:
        combos = [Combo.parse(c) for c in combo]
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    sizes = [int(s) for s in batch_sizes.split(",")]
    command = _command_line()
    machine = machine_description()
    rows = []
    if sizes and sizes != [0]:
        with console.status("benchmarking") as status:
            try:
                rows = run_bench(settings, combos, sizes, repeats, naive, device, progress=lambda text: status.update(text))
            except _model_errors() as exc:
                raise _fail(str(exc)) from None
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

    from .detect import create_detector
    from .peers import run_peers, sahi_missing
    from .tiling import TileGrid

    unknown = sorted(set(peers) - {"sahi"})
    if unknown:
        raise _fail(f"--peers {', '.join(unknown)}: unknown peer (known: sahi)", 2)
    if images is None or annotations is None or not images.is_dir() or not annotations.is_file():
        raise _fail("--peers needs --peer-images DIR and --peer-annotations JSON (a COCO set, e.g. val2017)", 2)
    reason = sahi_missing()
    if reason:
        console.print(f"skipped: {reason}")
    model = combo.model_config(settings.model, device)
    try:
        detector = create_detector(model, settings.detect)
    except _model_errors() as exc:
        raise _fail(str(exc)) from None
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
    from .bench_e2e import e2e_settings, run_e2e
    from .demo import kafka_cluster

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
    deadline: float = typer.Option(..., help="seconds allowed per car (first frame captured -> last frame stored)"),
    takt: Optional[float] = typer.Option(None, help="seconds between cars: also size the line to keep up"),
    frames_per_car: int = typer.Option(95, help="cameras × shots"),
    results: list[Path] = typer.Option([Path("benchmarks")], help="bench/eval JSON files or folders"),
    top: int = typer.Option(10, help="rows to show"),
    scaling: Path = typer.Option(
        Path("benchmarks/h100/scaling.json"),
        help="measured whole-car latency on 1, 2, 4 GPUs (benchmarks/h100/run_multi_gpu.py); missing: linear scaling assumed and said",
    ),
) -> None:
    """Most accurate model/backend/precision/batch meeting the per-car deadline on measured hardware, and GPUs per line."""
    from .plan import GpuScaling, best, load_accuracy, load_rows, plan

    missing = [p for p in results if not p.exists()]
    if missing:
        raise _fail(
            f"--results {', '.join(map(str, missing))}: no such file or folder (run `inspection bench --out DIR` "
            "first, or run from the repository, whose benchmarks/ holds measured results)",
            2,
        )
    rows = load_rows(results)
    if not rows:
        raise _fail(f"no bench results under {', '.join(map(str, results))} (run `inspection bench` first)")
    try:
        gpu_scaling = GpuScaling.load(scaling) if scaling.is_file() else GpuScaling.linear()
    except (ValueError, KeyError) as exc:
        raise _fail(f"--scaling {scaling}: {exc}", 2) from None
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


# --------------------------------------------------------------------------- dashboard


@app.command()
def dashboard(
    db: Optional[str] = typer.Option(None, help="results database URL (default: config store.url); opened read-only"),
    images: Optional[Path] = typer.Option(None, help="the edge's image store (default: config store.image_dir)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback needs --token"),
    port: int = typer.Option(8050, min=0, max=65535),
    token: Optional[str] = typer.Option(
        None, envvar="INSPECTION_DASHBOARD_TOKEN", help="required on every request (header, or ?token= once in the browser)"
    ),
    thumbs: Optional[Path] = typer.Option(None, help="thumbnail cache folder (default: the user cache directory)"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Web dashboard and JSON API on the results database: line, cars, frame viewer, detections, problems."""
    require("fastapi", "dashboard", "inspection dashboard")
    from .dashboard import BindRefusedError, DashboardConfig, check_bind, serve

    settings = _settings(config, **{"store.url": db, "store.image_dir": str(images) if images else None})
    try:
        check_bind(host, token)
    except BindRefusedError as exc:
        raise _fail(str(exc), 2) from None
    options: dict[str, Any] = {
        "db_url": settings.store.url,
        "images_dir": settings.store.image_dir,
        "host": host,
        "port": port,
        "token": token,
        "cameras": settings.line.cameras,
        "grid": settings.grid,
    }
    if thumbs is not None:
        options["thumbs_dir"] = thumbs
    dashboard_config = DashboardConfig(**options)
    from .analytics import DatabaseMissingError, open_readonly_engine

    try:  # fail here, with one line, rather than inside the server's start-up
        open_readonly_engine(dashboard_config.db_url).dispose()
    except (DatabaseMissingError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"dashboard on http://{shown}:{port}/ (db {escape(settings.store.url)}, read-only)"
        + (" — open it once as /?token=<token>" if token else "")
    )
    serve(dashboard_config)


# --------------------------------------------------------------------------- models and database


@model_app.command("list")
def model_list(
    results: list[Path] = typer.Option([Path("benchmarks")], help="eval JSON files or folders holding them (measured mAP)"),
) -> None:
    """Built-in and user models: family, input, classes, files present (and where), backends runnable now, measured mAP."""
    from .detect import available_models, load_spec
    from .detect.base import model_cache_dir
    from .detect.inventory import model_status
    from .plan import load_accuracy

    accuracy = load_accuracy([p for p in results if p.exists()])
    console.print(f"model directory (user models, converted and quantized files): {model_cache_dir()}")
    for name in available_models():
        console.print()
        try:
            status = model_status(load_spec(name), accuracy)
        except _model_errors() as exc:
            console.print(f"[bold]{name}[/bold]  [red]{escape(str(exc))}[/red]")
            continue
        spec = status.spec
        names = list(spec.class_names.values())
        source = "built-in" if spec.source == "built-in" else f"user model, {spec.source}"
        console.print(f"[bold]{name}[/bold]  ({escape(source)})")
        console.print(
            f"  family {spec.family}, input {spec.input_size[0]}×{spec.input_size[1]} {spec.layout} {spec.channel_order}, "
            f"tiles {spec.fit}; {len(names)} classes: {escape(', '.join(names[:6]))}{', …' if len(names) > 6 else ''}"
        )
        for f in status.files:
            where = escape(str(f.path)) if f.path else f"[yellow]missing[/yellow]: {escape(f.how)}"
            console.print(f"  {f.kind:<20} {where}")
        console.print(f"  runs now on: {', '.join(status.backends) or '[yellow]nothing yet[/yellow]'}")
        measured = ", ".join(f"{v:.3f} {k}" for k, v in sorted(status.accuracy.items()))
        console.print(f"  measured tile mAP (inspection eval): {measured or 'none yet'}")


@model_app.command("convert")
def model_convert(name: str = typer.Argument("ssd_mobilenet_v2_coco"), out: Optional[Path] = typer.Option(None)) -> None:
    """Frozen TF graph -> raw ONNX in the model cache (no TensorFlow needed; ONNX backends also do this on first use)."""
    from .detect import load_spec
    from .detect.convert import convert_to_onnx

    try:
        path = convert_to_onnx(load_spec(name), out, progress=lambda text: console.print(escape(text)))
    except (*_model_errors(), ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote {path}")


@model_app.command("add")
def model_add(
    name: str = typer.Argument(..., help="the name model.name will use (lower case, digits, _ - .)"),
    onnx: Path = typer.Option(..., "--onnx", help="the exported ONNX file (copied into the model directory)"),
    family: str = typer.Option(
        ..., help="output layout: ssd (TF OD API box encodings + scores), yolox, yolov8 (Ultralytics YOLOv8/YOLO11)"
    ),
    classes: Path = typer.Option(..., help="class names, one per line, in the model's score-column order"),
    input_size: Optional[int] = typer.Option(
        None, help="network input side for a file with a dynamic input (default: the file's, else 320)"
    ),
    fit: Optional[str] = typer.Option(None, help="how a tile becomes the input: pad (YOLO default) or resize (SSD default)"),
    force: bool = typer.Option(False, help="replace a user model of the same name"),
) -> None:
    """Register a plant's own detector: checked against its family, then every backend, eval, bench, plan and the edge take it by name."""
    from .detect.registry import register_model

    if fit not in (None, "pad", "resize"):
        raise _fail(f"--fit {fit!r}: allowed pad, resize", 2)
    try:
        spec = register_model(name, onnx, family, classes, input_size, fit, force)
    except (*_model_errors(), ValueError, FileNotFoundError, FileExistsError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"registered {spec.name} ({spec.family}, input {spec.input_size[0]}×{spec.input_size[1]}, {len(spec.class_names)} classes, "
        f"tiles {spec.fit}): {spec.source}"
    )
    console.print(f"use it with model.name={spec.name}, e.g. INSPECTION__MODEL__NAME={spec.name} inspection demo")


@model_app.command("remove")
def model_remove(name: str = typer.Argument(...)) -> None:
    """Delete a user model (its metadata and the copied files) from the model directory."""
    from .detect.registry import remove_model

    try:
        folder = remove_model(name)
    except (*_model_errors(), ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"removed {folder}")


@model_app.command("quantize")
def model_quantize(
    name: str = typer.Argument("ssd_mobilenet_v2_coco"),
    images: Optional[Path] = typer.Option(
        None, help="calibration images: real line frames (cut by the grid) or any photos (default: the demo's photo frames)"
    ),
    annotations: Optional[Path] = typer.Option(
        None, help="with --images: a COCO instances JSON, to calibrate on the composer's mosaics"
    ),
    tiles: int = typer.Option(256, min=1, help="calibration tiles"),
    method: str = typer.Option("minmax", help="activation range calibration: minmax, percentile or entropy"),
    for_: str = typer.Option(
        "onnxruntime,tensorrt", "--for", help="which QDQ graphs to write: onnxruntime (CPU), tensorrt, or both"
    ),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """INT8 by explicit quantization: the raw ONNX graph -> QDQ graphs (per-channel INT8 weights, activations calibrated on real tiles)."""
    from .detect import load_spec
    from .detect.quantize import FLAVOURS, QuantizeSettings, quantize_model
    from .tiling import TileGrid

    flavours = [f.strip() for f in for_.split(",") if f.strip()]
    unknown = [f for f in flavours if f not in FLAVOURS]
    if unknown or not flavours:
        raise _fail(f"--for {for_!r}: allowed {', '.join(FLAVOURS)} (comma-separated)", 2)
    settings = _settings(config)
    try:
        spec = load_spec(name)
        written = quantize_model(
            spec,
            TileGrid.from_config(settings.grid),
            images,
            annotations,
            QuantizeSettings(method=method, tiles=tiles),
            flavours=flavours,
            progress=lambda text: console.print(escape(text)),
        )
    except (*_model_errors(), ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    for flavour, path in written.items():
        console.print(f"{flavour}: {path}")
    console.print(
        f"run it with model.precision=int8 (onnxruntime), or: inspection model build-engine {name} --precision int8 (TensorRT)"
    )


@model_app.command("build-engine")
def model_build_engine(
    name: str = typer.Argument("ssd_mobilenet_v2_coco"),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8 (int8: from the QDQ graph of `inspection model quantize`)"),
    calibration_images: Optional[Path] = typer.Option(
        None, help="int8 without a QDQ graph yet: quantize first, calibrating on these real line frames"
    ),
    onnx: Optional[Path] = typer.Option(None, help="the ONNX graph (default: the model cache; for int8 its TensorRT QDQ graph)"),
    cache_dir: Optional[Path] = typer.Option(None, help="engine and timing caches (default: <model cache>/engines)"),
    contexts: int = typer.Option(2, min=1, max=8, help="optimisation profiles = execution contexts in flight"),
    force: bool = typer.Option(False, help="rebuild even if a cached engine matches"),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """TensorRT 10: ONNX -> engine (batch 1..64 profile, FP16, or INT8 by explicit quantization), cached by model hash, GPU and TensorRT version."""
    import importlib.util

    from .detect import load_spec, resolve_model_file
    from .detect.quantize import QuantizeSettings, int8_path, quantize_model
    from .tiling import TileGrid

    if precision not in ("fp32", "fp16", "int8"):
        raise _fail(f"--precision {precision!r}: allowed fp32, fp16, int8", 2)
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        raise _fail(
            f"building an engine needs {' and '.join(missing)}: on a Jetson JetPack 6 ships TensorRT 10 (python3-libnvinfer) "
            "and pycuda installs with pip install 'inspection[gpu]'; on an x86 GPU node: the NGC TensorRT image or NVIDIA's "
            "pip install 'tensorrt>=10,<11', then pip install 'inspection[gpu]' (see deploy/jetson/README.md)"
        )
    from .detect.engine import build_engine, cuda_primary_context, default_engine_dir

    settings = _settings(config)
    try:
        spec = load_spec(name)
        if precision == "int8" and onnx is None:
            onnx_path = int8_path(spec, flavour="tensorrt")
            if not onnx_path.is_file():
                if calibration_images is None:
                    raise _fail(
                        f"no INT8 QDQ graph for TensorRT at {onnx_path}: run `inspection model quantize {name}` "
                        "(any machine; copy the model directory here), or pass --calibration-images DIR to quantize now",
                        2,
                    )
                quantize_model(
                    spec,
                    TileGrid.from_config(settings.grid),
                    calibration_images,
                    None,
                    QuantizeSettings(),
                    flavours=["tensorrt"],
                    progress=lambda text: console.print(escape(text)),
                )
        else:
            onnx_path = resolve_model_file(spec, "onnx", onnx)
    except (*_model_errors(), ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    cache = cache_dir or (settings.model.engine_cache_dir and Path(settings.model.engine_cache_dir)) or default_engine_dir()
    with cuda_primary_context():
        path = build_engine(onnx_path, precision, cache, profiles=contexts, force=force)
    console.print(f"engine ready: {path}")


@db_app.command("upgrade")
def db_upgrade(
    db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"), config: Optional[Path] = ConfigOpt
) -> None:
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
    older_than: Optional[str] = typer.Option(
        None, help="delete results and images older than this (30d, 12h, 2w); default: config retention"
    ),
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
        raise _fail(
            "nothing to prune: pass --older-than 30d (or --images-older-than 7d), or set retention.rows_days / retention.images_days",
            2,
        )
    with ResultStore.open(settings.store, migrate=False) as store:
        report = prune(
            store,
            rows_older_than=rows_age,
            images_older_than=images_age,
            default_image_dir=settings.store.image_dir,
            dry_run=not yes,
        )
    when = ", ".join(
        f"{what} before {at:%Y-%m-%d %H:%M} UTC"
        for what, at in (("rows", report.rows_before), ("images", report.images_before))
        if at
    )
    table = _table(
        f"{'would delete (dry run)' if report.dry_run else 'deleted'}: {when}", ["what", "count", "bytes"], key_width=14
    )
    for what, count in (
        ("cars", report.cars),
        ("frames", report.frames),
        ("detections", report.detections),
        ("rejected", report.rejected),
        ("image uri cleared", report.images_cleared),
    ):
        table.add_row(what, str(count), "")
    table.add_row("image files", str(report.image_files), f"{report.image_bytes:,}")
    console.print(table)
    if report.images_missing:
        console.print(f"{report.images_missing} referenced image file(s) were already gone or outside a known image directory")
    if report.dry_run:
        console.print("dry run: nothing deleted; add --yes to delete")


if __name__ == "__main__":  # pragma: no cover
    app()
