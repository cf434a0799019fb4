"""Engines for the results database and a connectivity check with retries.

SQLite (embedded default): WAL so readers never block the writer, a busy timeout so
concurrent writers wait instead of failing, foreign keys on (SQLite leaves them off), and
transactions that start with `BEGIN IMMEDIATE` when asked (`SQLITE_IMMEDIATE` option): a
store transaction takes the write lock up front, so two writers serialise instead of
failing to upgrade a read lock. PostgreSQL (production): `pool_pre_ping` so connections
dropped by a server restart are replaced, and a connect timeout so an unreachable host
fails instead of hanging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from .errors import DatabaseUnreachableError, first_line
from .retry import RetryPolicy

log = logging.getLogger(__name__)

# Execution option: the transaction begun on this connection takes SQLite's write lock at once.
SQLITE_IMMEDIATE = "inspection_sqlite_begin_immediate"


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine_for(
    url: str | URL,
    *,
    connect_timeout_s: float = 10.0,
    busy_timeout_s: float = 30.0,
    echo: bool = False,
) -> Engine:
    """An engine configured for the backend named by `url` (sqlite:/// or postgresql+psycopg://).

    A SQLite file's parent directory is created if missing. `postgresql://` without a driver
    is taken as psycopg 3 (the only PostgreSQL driver this package depends on).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout_s, echo)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            if "+" in parsed.drivername:
                raise ValueError(
                    f"store.url {mask_url(parsed)} uses driver {parsed.get_driver_name()!r}; "
                    "this package talks to PostgreSQL through psycopg 3: use postgresql+psycopg://"
                )
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, int(round(connect_timeout_s)))},
            echo=echo,
        )
    raise ValueError(
        f"store.url {mask_url(parsed)}: unsupported database {backend!r}; "
        "use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/dbname"
    )


def _sqlite_engine(url: URL, busy_timeout_s: float, echo: bool) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s}, echo=echo)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode up to the last checkpointed commit
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def wait_for_database(
    engine: Engine,
    retries: int = 5,
    backoff_s: float = 0.5,
    *,
    max_backoff_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once `SELECT 1` succeeds; try 1 + `retries` times, waiting min(max_backoff_s, backoff_s·2^i) in between.

    Raises DatabaseUnreachableError naming the URL (password masked) and the last error.
    """
    policy = RetryPolicy(retries, backoff_s, max_backoff_s)

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        policy.call(ping, what=f"database {mask_url(engine.url)} not reachable", retry_on=(SQLAlchemyError, OSError), sleep=sleep)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnreachableError(
            f"cannot reach database {mask_url(engine.url)} after {policy.attempts} attempt(s): "
            f"{first_line(exc)}; check store.url and that the server is running"
        ) from exc
