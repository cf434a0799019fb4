"""Alembic environment of the results database.

Run through `inspection.store.migrations.upgrade_database`, which passes a connection in
`config.attributes["connection"]`; the `alembic` command line works too when
`sqlalchemy.url` is set. Concurrent upgrades (several consumers starting at once) are
serialised: an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, so the second one
finds the schema at head and does nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from inspection.store.db import SQLITE_IMMEDIATE, create_engine_for
from inspection.store.models import Base

# Any constant; identifies "the migration lock" among advisory locks of the database.
PG_MIGRATION_LOCK_KEY = 0x1A5BEC7

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later migrations rewrite tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection (upgrade_database) or set sqlalchemy.url")
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            _configure(conn.execution_options(**{SQLITE_IMMEDIATE: True}))
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
