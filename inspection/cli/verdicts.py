"""`inspection rules check` and `inspection signal`: the inspection verdict and its signal to the line
(the logic is in inspection/rules and inspection/signal)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .base import ConfigOpt, _settings, _table, app, console, rules_app


@rules_app.command("check")
def rules_check(
    file: Path = typer.Argument(..., help="YAML with the rules (the inspection.rules section, or a site config)"),
    config: Optional[Path] = ConfigOpt,
    limit: int = typer.Option(50, min=1, help="newest cars to show"),
) -> None:
    """What FILE's rules would have decided on the stored cars, beside their stored verdict (writes nothing)."""
    from ..rules.check import check_rules
    from ..rules.load import load_rules
    from ..store.db import create_engine_for

    settings = _settings(config)
    rules = load_rules(file, settings)  # a ConfigError naming the problem: one `error:` line, exit 2
    engine = create_engine_for(settings.store.url)
    try:
        rows = check_rules(engine, rules, limit)
    finally:
        engine.dispose()
    table = _table(f"rules {rules.digest[:12]} on {len(rows)} stored cars", ["car", "stored", "new", "reason"], fold=("reason",))
    for row in rows:
        table.add_row(
            row.car_id, row.stored or "-", f"[bold]{row.new.verdict}[/bold]" if row.changed else row.new.verdict, row.new.reason
        )
    console.print(table)
    console.print(f"{sum(r.changed for r in rows)} of {len(rows)} cars would change verdict (nothing written)")


@app.command("signal")
def signal_command(
    config: Optional[Path] = ConfigOpt,
    metrics_port: int = typer.Option(0, help="serve the outbox gauges on /metrics at this port (0: none)"),
    metrics_addr: str = typer.Option("127.0.0.1", help="address of /metrics (0.0.0.0 in a container)"),
) -> None:
    """Publish decided cars to the line (MQTT, OPC UA) from the outbox until Ctrl-C."""
    from prometheus_client import start_http_server

    from ..signal.outbox import OutboxMetrics
    from ..signal.service import running_relay
    from ..store import upgrade_database
    from ..store.db import create_engine_for

    settings = _settings(config)
    upgrade_database(settings.store.url)
    engine = create_engine_for(settings.store.url)
    try:
        metrics = OutboxMetrics()
        if metrics_port:
            start_http_server(metrics_port, metrics_addr, registry=metrics.registry)
        with running_relay(engine, settings.signal, metrics):
            console.print(f"publishing decided cars of line {settings.signal.line}; Ctrl-C stops")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
