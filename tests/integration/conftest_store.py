"""Database fixtures of the results store, imported by tests/integration/conftest.py.

- `postgres_url`: a fresh PostgreSQL database per test (CREATE DATABASE inspection_test_<random>,
  dropped afterwards), on the server of $INSPECTION_TEST_POSTGRES_URL (default
  postgresql+psycopg://postgres@127.0.0.1:5432/test, trust auth). Skipped with the reason when
  the server is unreachable, unless INSPECTION_REQUIRE_POSTGRES=1 (CI), where it fails.
- `sqlite_url`: a fresh SQLite file per test.
- `store_db_url`: both, as a parameter ("sqlite", "postgresql" marked `postgres`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

__all__ = ["postgres_server_url", "postgres_url", "sqlite_url", "store_db_url"]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a database on the test server we may connect to (to create and drop test databases)."""
    url = os.environ.get("INSPECTION_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {make_url(url).render_as_string(hide_password=True)} unreachable: {exc}".strip()
        if os.environ.get("INSPECTION_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " (INSPECTION_REQUIRE_POSTGRES=1)")
        pytest.skip(reason + " (set INSPECTION_TEST_POSTGRES_URL)")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test only; dropped (connections and all) afterwards."""
    name = f"inspection_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(postgres_server_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield (
            make_url(postgres_server_url)
            .set(drivername="postgresql+psycopg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with psycopg.connect(_libpq(postgres_server_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_db_url(request: pytest.FixtureRequest) -> str:
    """The same test on an SQLite file and on a fresh PostgreSQL database."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
