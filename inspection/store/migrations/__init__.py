"""Alembic migrations of the results database, configured in code (no alembic.ini).

The scripts are located next to this module, so upgrades work from an installed wheel as
well as from a checkout. `upgrade_database(url)` is what consumers and the CLI call at start.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine

from ..db import SQLITE_IMMEDIATE, create_engine_for

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic Config for this package's migrations (what alembic.ini would hold)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade_database(target: str | URL | Engine, revision: str = "head") -> None:
    """`alembic upgrade head` on the database at `target` (a URL or an Engine); idempotent."""
    engine = target if isinstance(target, Engine) else create_engine_for(target)
    try:
        config = alembic_config()
        with engine.connect() as conn:
            config.attributes["connection"] = conn.execution_options(**{SQLITE_IMMEDIATE: True})
            command.upgrade(config, revision)
            conn.commit()
    finally:
        if engine is not target:
            engine.dispose()
