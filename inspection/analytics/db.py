"""Read-only engines on the results database, for analysts and the dashboard.

SQLite: the file is opened through a `file:…?mode=ro` URI (SQLite refuses every write) and
`PRAGMA query_only` is set as well. PostgreSQL: every session starts with
`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY` (the server refuses writes), a
statement timeout, so one heavy query cannot hold the server, and no JIT (its compile time
dwarfs these short queries); deploy/README.md shows a role
that can only read, for a second line of defence.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import QueuePool

from ..store.db import create_engine_for, mask_url


class DatabaseMissingError(FileNotFoundError):
    """The SQLite file to read does not exist (the message says how to make one)."""


def open_readonly_engine(url: str | URL, *, statement_timeout_s: float = 30.0) -> Engine:
    """An engine on `url` that cannot write (SQLite file or PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_readonly(parsed)
    engine = create_engine_for(parsed)
    timeout_ms = max(1, int(statement_timeout_s * 1000))

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.execute(f"SET statement_timeout = {timeout_ms}")  # an int we made, not input
            # short interactive queries: JIT compilation (hundreds of ms) costs more than it saves
            cursor.execute("SET jit = off")
        dbapi_connection.commit()

    return engine


def _sqlite_readonly(url: URL) -> Engine:
    database = url.database
    if not database or database == ":memory:":
        raise ValueError(f"{mask_url(url)}: a read-only view needs a SQLite file, not an in-memory database")
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise DatabaseMissingError(f"no SQLite database at {path}: run `inspection demo` (or point --db at the edge's store.url)")
    uri = f"{path.as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30.0)
        conn.execute("PRAGMA query_only=ON")
        return conn

    # The URL names the file for messages only; `creator` opens it read-only.
    return create_engine(URL.create("sqlite", database=str(path)), creator=connect, poolclass=QueuePool)
