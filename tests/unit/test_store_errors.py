"""The store's two errors and the one retry policy: what is retried, what is parked, how long it waits."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import exc as sa_exc

from inspection.config import StoreConfig
from inspection.store import DatabaseUnreachableError, RecordRefused, RetryPolicy, StoreUnavailable
from inspection.store.errors import classify, store_errors


class _Orig(Exception):
    pass


def dbapi(cls: type[sa_exc.DBAPIError], text: str, invalidated: bool = False) -> sa_exc.DBAPIError:
    return cls("INSERT INTO frames ...", {}, _Orig(text), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (dbapi(sa_exc.DataError, "integer out of range"), RecordRefused),
        (dbapi(sa_exc.DataError, "PostgreSQL text fields cannot contain NUL (0x00) bytes"), RecordRefused),
        (dbapi(sa_exc.IntegrityError, "FOREIGN KEY constraint failed"), RecordRefused),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), RecordRefused),
        (ValueError("year 10000 is out of range"), RecordRefused),
        (dbapi(sa_exc.OperationalError, "connection refused"), StoreUnavailable),
        (dbapi(sa_exc.OperationalError, "database is locked"), StoreUnavailable),
        (dbapi(sa_exc.DataError, "server closed the connection", invalidated=True), StoreUnavailable),
        (dbapi(sa_exc.ProgrammingError, 'relation "frames" does not exist'), StoreUnavailable),
        (sa_exc.TimeoutError("QueuePool limit reached"), StoreUnavailable),
        (OSError(28, "No space left on device"), StoreUnavailable),
        (RuntimeError("something unforeseen"), StoreUnavailable),  # unknown: stop and redeliver, never park a good frame
    ],
)
def test_errors_map_to_refused_or_unavailable(error: Exception, expected: type) -> None:
    mapped = classify(error, "storing frame car=1 cam=0 shot=0")
    assert type(mapped) is expected
    assert str(mapped).startswith("storing frame car=1 cam=0 shot=0: ")
    assert "INSERT INTO" not in str(mapped)  # the DB-API's message, not SQLAlchemy's SQL dump


def test_store_errors_chains_the_original() -> None:
    with pytest.raises(RecordRefused) as info:
        with store_errors("storing x"):
            raise dbapi(sa_exc.DataError, "integer out of range")
    assert isinstance(info.value.__cause__, sa_exc.DataError)
    assert isinstance(info.value, ValueError) and isinstance(StoreUnavailable("x"), ConnectionError)
    assert issubclass(DatabaseUnreachableError, StoreUnavailable)


def waits_until_given_up(policy: RetryPolicy) -> list[float]:
    """The waits `policy.call` makes between attempts of a write that never succeeds."""
    waits: list[float] = []

    def down() -> None:
        raise StoreUnavailable("down")

    with pytest.raises(StoreUnavailable):
        policy.call(down, sleep=waits.append)
    return waits


def test_retry_policy_retries_only_unavailability_with_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(retries=6, backoff_s=1.0, max_backoff_s=5.0)
    assert waits_until_given_up(policy) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    waits: list[float] = []
    calls = iter([StoreUnavailable("down"), StoreUnavailable("down"), "stored"])

    def write() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    with caplog.at_level(logging.WARNING):
        assert policy.call(write, what="write of car=1", sleep=waits.append) == "stored"
    assert waits == [1.0, 2.0]
    assert "write of car=1 failed (attempt 1/7), retrying in 1.00 s: down" in caplog.text

    refused = []

    def refuse() -> None:
        refused.append(1)
        raise RecordRefused("no")

    with pytest.raises(RecordRefused):
        policy.call(refuse, sleep=waits.append)
    assert refused == [1]  # a refused record is never retried

    down = []

    def unavailable() -> None:
        down.append(1)
        raise StoreUnavailable("still down")

    waits.clear()
    with pytest.raises(StoreUnavailable, match="still down"):
        RetryPolicy(retries=2, backoff_s=0.5).call(unavailable, sleep=waits.append)
    assert len(down) == 3 and waits == [0.5, 1.0]


def test_policy_from_config_and_bad_values() -> None:
    policy = RetryPolicy.from_config(StoreConfig(connect_retries=3, connect_backoff_s=0.25, max_backoff_s=1.0))
    assert policy.attempts == 4 and waits_until_given_up(policy) == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="store.connect_retries"):
        RetryPolicy(retries=-1)
