"""`inspection dashboard`: the read-only dashboard over the results database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..extras import require
from .base import ConfigOpt, _settings, app, console
from .errors import UsageError


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
    from ..dashboard import BindRefusedError, DashboardConfig, check_bind, serve

    settings = _settings(config, **{"store.url": db, "store.image_dir": str(images) if images else None})
    try:
        check_bind(host, token)
    except BindRefusedError as exc:
        raise UsageError(str(exc)) from None
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
    from ..analytics import DatabaseMissingError, open_readonly_engine

    try:  # fail here, with one line, rather than inside the server's start-up
        open_readonly_engine(dashboard_config.db_url).dispose()
    except (DatabaseMissingError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(
        f"dashboard on http://{shown}:{port}/ (db {escape(settings.store.url)}, read-only)"
        + (" — open it once as /?token=<token>" if token else "")
    )
    serve(dashboard_config)
