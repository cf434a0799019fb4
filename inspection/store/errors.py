"""The store's own errors: the two answers a caller acts on, whatever the database said.

- `RecordRefused`: the database (or the store's own checks) refused the *content* of a write: a
  value out of a column's range, text it cannot hold, a constraint, a car whose frames disagree.
  Trying again cannot help; the record is parked (dead letter + error or rejected row).
- `StoreUnavailable`: the database cannot take writes right now (unreachable, connection lost,
  locked, schema missing, disk full). Worth retrying with backoff (`RetryPolicy`); when retries
  run out the consumer stops, committing nothing past the record.

`store_errors(what)` turns SQLAlchemy, DB-API and Python errors raised inside a write into one of
the two, so callers never import `sqlalchemy.exc`. An error the mapping does not know is treated as
unavailability: stopping (and redelivering later) loses nothing, parking a good frame would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc


class StoreError(Exception):
    """Base of the store's errors; `what` names the write ("storing frame car=… cam=… shot=…")."""

    kind = "store_error"


class RecordRefused(StoreError, ValueError):
    """The database refused the content of a write; retrying cannot help. Park the record."""

    kind = "store_refused"


class StoreUnavailable(StoreError, ConnectionError):
    """The database cannot take writes now (unreachable, connection lost, locked, schema missing)."""

    kind = "store_unavailable"


class DatabaseUnreachableError(StoreUnavailable):
    """The database did not answer after all retries; the message names the (masked) URL."""


def first_line(exc: BaseException) -> str:
    """The DB-API's own message (first line), without SQLAlchemy's SQL and parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def classify(exc: BaseException, what: str) -> StoreError:
    """The StoreError a failed write of `what` amounts to (`exc` becomes its __cause__ at raise)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sa_exc.DBAPIError):
        if isinstance(exc, (sa_exc.DataError, sa_exc.IntegrityError)) and not exc.connection_invalidated:
            return RecordRefused(f"{what}: the database refused it: {first_line(exc)}")
        return StoreUnavailable(f"{what}: {first_line(exc)}")
    if isinstance(exc, sa_exc.StatementError):  # a bind parameter could not be converted (not the DB's answer)
        return RecordRefused(f"{what}: {first_line(exc)}")
    if isinstance(exc, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return StoreUnavailable(f"{what}: {first_line(exc)}")
    if isinstance(exc, (ValueError, OverflowError, TypeError, UnicodeError)):
        # SQLite's "Python int too large to convert to SQLite INTEGER", a datetime out of range, NUL in text
        return RecordRefused(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # the image directory: disk full, permissions
        return StoreUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return StoreUnavailable(f"{what}: unexpected {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def store_errors(what: str) -> Iterator[None]:
    """Raise the StoreError of anything that fails inside the block (chained to the original)."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise classify(exc, what) from exc
