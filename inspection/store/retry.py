"""How long the store waits out an unavailable database: one policy for every caller.

`RetryPolicy` retries `StoreUnavailable` (and only that: a refused record is never retried) with
exponential backoff, backoff_s·2^i capped at max_backoff_s, for `retries` extra attempts, then
re-raises the last error. The consumer's writes, the overdue check and `wait_for_database` use
it, with the numbers of `store.connect_retries`, `store.connect_backoff_s`, `store.max_backoff_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ..config import StoreConfig
from .errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries} (configs: store.connect_retries)")
        if self.backoff_s <= 0 or self.max_backoff_s <= 0:
            raise ValueError("backoff_s and max_backoff_s must be > 0 (configs: store.connect_backoff_s, store.max_backoff_s)")

    @classmethod
    def from_config(cls, config: StoreConfig) -> RetryPolicy:
        return cls(config.connect_retries, config.connect_backoff_s, config.max_backoff_s)

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str = "database write",
        retry_on: tuple[type[BaseException], ...] = (StoreUnavailable,),
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """`fn()`, retried on `retry_on` errors; the last one is re-raised when attempts run out."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.2f s: %s",
                what,
                state.attempt_number,
                self.attempts,
                state.upcoming_sleep,
                exc,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, exp_base=2, max=self.max_backoff_s),
            retry=retry_if_exception_type(retry_on),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        return retrying(fn)
