"""`inspection demo`: the whole line on this machine, and its table of cars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..logs import configure_logging
from .base import DEMO_SHOTS, ConfigOpt, LogFormatOpt, _settings, _table, app, console, wait_until_stopped
from .errors import CliError


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
    from ..tools.demo import dashboard_hint, run_demo, start_demo_dashboard

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
            raise CliError(f"cannot start the dashboard: {exc}") from None
        console.print(f"dashboard: [bold]{dashboard.url}[/bold] (watch the car arrive; Ctrl-C ends the demo)")
    from ..signal.demo import demo_signal

    with (
        demo_signal(settings) as line_signal,
        Progress(TextColumn("frames stored"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar,
    ):
        settings = line_signal.settings
        console.print(
            f"line signal: MQTT  {line_signal.subscribe}\n             OPC UA {line_signal.opcua_endpoint}", soft_wrap=True
        )
        task = bar.add_task("frames", total=cars * line.frames_per_car)
        try:
            result = run_demo(settings, cars, realtime, on_progress=lambda done, total: bar.update(task, completed=done))
        except Exception as exc:  # every failure ends in one clear line; --verbose (or --debug) shows the trace
            if dashboard is not None:
                dashboard.stop()
            if verbose:
                raise
            raise CliError(f"{type(exc).__name__}: {exc}") from None
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
    try:
        wait_until_stopped()
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
            (
                ("[yellow]overdue[/yellow]" if car.get("state") == "overdue" else "-")
                if met is None
                else ("[green]met[/green]" if met else f"[red]late {car['lateness_s']:.1f} s[/red]")
            )
            + (f"\n{car['verdict'].upper()}" if car.get("verdict") else ""),  # the inspection verdict under it
        )
    return table
