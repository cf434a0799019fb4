"""`inspection dashboard`: the read-only dashboard over the results database."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..extras import require
from .base import ConfigOpt, _settings, app, console
from .errors import UsageError


@app.command()
def dashboard(
    db: Optional[str] = typer.Option(None, help="results database URL (default: config store.url); opened read-only"),
    images: Optional[Path] = typer.Option(None, help="the edge's image store (default: config store.image_dir)"),
    host: Optional[str] = typer.Option(
        None, help="address to bind (default: config dashboard.host, 127.0.0.1); anything but loopback needs --token"
    ),
    port: Optional[int] = typer.Option(None, min=0, max=65535, help="default: config dashboard.port (8050)"),
    token: Optional[str] = typer.Option(
        None, envvar="INSPECTION_DASHBOARD_TOKEN", help="required on every request (header, or ?token= once in the browser)"
    ),
    thumbs: Optional[Path] = typer.Option(None, help="thumbnail cache folder (default: the user cache directory)"),
    reviewers: Optional[str] = typer.Option(
        None, envvar="INSPECTION_REVIEWERS", help="name=sha256 lines/commas (`inspection review-token NAME`); enables reviews"
    ),
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Web dashboard and JSON API on the results database: line, cars, frame viewer, detections, problems."""
    require("fastapi", "dashboard", "inspection dashboard")
    from ..dashboard import BindRefusedError, DashboardConfig, check_bind, serve

    flags = {"host": host, "port": port, "token": token, "reviewers": reviewers, "thumbs_dir": str(thumbs) if thumbs else None}
    settings = _settings(
        config,
        **{"store.url": db, "store.image_dir": str(images) if images else None},
        **{f"dashboard.{key}": value for key, value in flags.items()},
    )
    dashboard_config = DashboardConfig.from_settings(settings)
    try:
        check_bind(dashboard_config.host, dashboard_config.token)
    except BindRefusedError as exc:
        raise UsageError(str(exc)) from None
    from ..analytics import DatabaseMissingError, open_readonly_engine

    try:  # fail here, with one line, rather than inside the server's start-up
        open_readonly_engine(dashboard_config.db_url).dispose()
    except (DatabaseMissingError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    shown = "127.0.0.1" if dashboard_config.host in ("0.0.0.0", "::") else dashboard_config.host
    console.print(
        f"dashboard on http://{shown}:{dashboard_config.port}/ (db {escape(settings.store.url)}, read-only)"
        + (" — open it once as /?token=<token>" if dashboard_config.token else "")
    )
    serve(dashboard_config)
