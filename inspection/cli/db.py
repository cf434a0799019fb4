"""`inspection db ...`: schema upgrade and retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer

from .base import ConfigOpt, _settings, _table, console, db_app
from .errors import CliError, UsageError


@db_app.command("upgrade")
def db_upgrade(
    db: Optional[str] = typer.Option(None, help="database URL (default: config store.url)"), config: Optional[Path] = ConfigOpt
) -> None:
    """Bring the results database schema to the newest Alembic revision."""
    from ..store import upgrade_database

    settings = _settings(config, **{"store.url": db})
    try:
        upgrade_database(settings.store.url)
    except Exception as exc:
        raise CliError(f"cannot upgrade {settings.store.url}: {exc}") from None
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
    from ..retention import parse_duration, prune
    from ..store import ResultStore

    settings = _settings(config, **{"store.url": db})
    retention = settings.retention
    try:
        rows_age = parse_duration(older_than) if older_than else None
        images_age = parse_duration(images_older_than) if images_older_than else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if older_than is None and images_older_than is None:
        rows_age = timedelta(days=retention.rows_days) if retention.rows_days else None
        images_age = timedelta(days=retention.images_days) if retention.images_days else None
    if rows_age is None and images_age is None:
        raise UsageError(
            "nothing to prune: pass --older-than 30d (or --images-older-than 7d), or set retention.rows_days / retention.images_days"
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
