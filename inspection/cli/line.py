"""The streaming parts: `inspection broker`, `produce` (the line simulator) and `edge` (the consumer, or its supervisor)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, Optional

import typer

from ..config import Settings
from ..logs import configure_logging
from .base import ConfigOpt, LogFormatOpt, _settings, app, console, wait_until_stopped
from .errors import CliError, UsageError


@app.command()
def broker(port: int = typer.Option(0, help="port on 127.0.0.1 (0: a free one)")) -> None:
    """Run the embedded Kafka-protocol broker (tansu, in memory) until Ctrl-C."""
    from ..kafka import EmbeddedBroker

    with EmbeddedBroker(port=port or None) as running:
        console.print(f"broker ready: bootstrap.servers={running.bootstrap_servers} (in-memory: a restart loses its records)")
        wait_until_stopped()


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

    from ..kafka import FrameProducer, check_reachable, ensure_topics
    from ..tiling import TileGrid

    settings = _settings(config, **{"kafka.bootstrap_servers": bootstrap, "logging.format": log_format})
    configure_logging(settings.logging.format)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise UsageError("no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers")
    try:
        frames = frame_source(source, TileGrid.from_config(settings.grid), images, annotations)
    except SourceChoiceError as exc:
        raise UsageError(str(exc)) from None
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
    reload_model: bool = typer.Option(
        False,
        "--reload-model",
        help="promote on a config change: drain, reload, resume when --config names another model (one worker for now)",
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
    from ..edge.compose import build_edge
    from ..health import HealthServer
    from ..rules.verdict import verdict_writer
    from ..store import ResultStore

    gpu_list = None
    if gpus is not None:
        try:
            gpu_list = [int(g) for g in gpus.split(",") if g.strip()]
        except ValueError:
            raise UsageError(f"--gpus {gpus!r}: expected GPU indices like 0,1") from None
    given = {
        "kafka.bootstrap_servers": bootstrap,
        "store.url": db,
        "logging.format": log_format,
        "pipeline.workers": int(workers) if workers and workers.isdigit() else workers,
        "pipeline.gpus": gpu_list,
    }
    settings = _settings(config, **given, **{"model.backend": backend})
    configure_logging(settings.logging.format, verbose=verbose)
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:
        raise UsageError(
            "no Kafka cluster: pass --bootstrap HOST:PORT or set kafka.bootstrap_servers (INSPECTION__KAFKA__BOOTSTRAP_SERVERS)"
        )
    from ..kafka import check_reachable

    check_reachable(bootstrap, timeout=settings.kafka.connect_timeout_s)
    if reload_model and config is None:
        raise UsageError("--reload-model watches the config file: pass --config FILE")
    if settings.pipeline.workers != 1 or settings.pipeline.gpus is not None:
        if max_frames:
            raise UsageError("--max-frames needs one in-process consumer (pipeline.workers 1, no --gpus)")
        # what the command line set stays set when the config is read again; the model comes from the file
        kept = {**given, "kafka.bootstrap_servers": bootstrap}
        _supervise(settings, bootstrap, metrics_port, metrics_addr, verbose, config if reload_model else None, kept)
        return
    store = ResultStore.open(settings.store)
    store.verdicts = verdict_writer(settings)
    if reload_model and config is not None:
        _edge_with_reload(config, settings, store, bootstrap, max_frames)
        return
    pipeline = build_edge(settings, bootstrap, store)
    server = HealthServer(pipeline.metrics.registry, pipeline.readiness)
    if metrics_port:
        server.start(metrics_port, metrics_addr)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pipeline.stop())
    try:
        stats = pipeline.run(stop_when=(lambda s: s.frames_handled >= max_frames) if max_frames else None)
    finally:
        server.close()
        store.close()
    console.print(f"stopped cleanly: {stats.frames_stored} frames stored, {stats.frames_parked} parked, {stats.commits} commits")


def _edge_with_reload(config: Path, settings: Settings, store: Any, bootstrap: str, max_frames: int) -> None:
    """`edge --reload-model`: one pipeline per model; a changed model in the config drains, records the swap, resumes."""
    from ..config import load_settings
    from ..edge.compose import build_edge
    from ..review.promotion import run_with_reload
    from ..rules.verdict import verdict_writer

    overrides = {"kafka.bootstrap_servers": bootstrap, "store.url": settings.store.url}
    stopping = threading.Event()
    current: list[Any] = []

    def start(fresh: Settings) -> Any:
        store.verdicts = verdict_writer(fresh)
        return build_edge(fresh, bootstrap, store)

    def stop(*_: Any) -> None:
        stopping.set()
        if current:
            current[-1].stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        runs = run_with_reload(
            lambda: load_settings(config, overrides),
            start,
            store.engine,
            config,
            keep_going=lambda done: (
                not stopping.is_set() and not (max_frames and sum(s.frames_handled for s in done) >= max_frames)
            ),
            on_pipeline=current.append,
        )
    finally:
        store.close()
    console.print(f"stopped cleanly after {len(runs)} model(s): {sum(s.frames_stored for s in runs)} frames stored")


def _supervise(
    settings: Settings,
    bootstrap: str,
    metrics_port: int,
    metrics_addr: str,
    verbose: bool,
    reload_config: Path | None = None,
    kept: dict[str, Any] | None = None,
) -> None:
    """The worker processes under one supervisor; with `reload_config` (--reload-model) a model change in
    that file drains every worker, records the swap and starts them again with the new model."""
    from ..config import load_settings
    from ..edge.supervisor import EdgeSupervisor, WorkerReport
    from ..review.promotion import record_swap
    from ..store import ResultStore, create_engine_for

    ResultStore.open(settings.store).close()  # schema migrated once, before the workers race to it

    def on_swap(old: Settings, new: Settings, reports: list[WorkerReport]) -> None:
        assert reload_config is not None
        engine = create_engine_for(settings.store.url)
        try:
            record_swap(
                engine,
                old,
                new,
                from_run_id=reports[0].run_id if reports else None,  # the first worker's run: each worker has one
                frames_before=sum(r.frames_handled for r in reports),
                config=reload_config,
            )
        finally:
            engine.dispose()

    supervisor = EdgeSupervisor(
        settings,
        bootstrap,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        verbose=verbose,
        reload=(lambda: load_settings(reload_config, kept)) if reload_config is not None else None,
        on_swap=on_swap if reload_config is not None else None,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    console.print(f"edge: {len(supervisor.slots)} worker process(es) in group {settings.kafka.group_id}")
    result = supervisor.run()
    if result.error:
        raise CliError(result.error)
    swaps = f", {supervisor.swaps} model swap(s)" if reload_config is not None else ""
    console.print(f"stopped cleanly: {len(supervisor.slots)} workers drained, {result.restarts} restart(s){swaps}")
