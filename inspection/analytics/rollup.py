"""Boxes per (capture minute, class), kept in memory by a long-lived reader and brought up to date
on each use: the line page's class chart and the detections page's per-class counts need these
sums over tens of thousands of boxes, and counting them again on every request costs hundreds of
milliseconds at 1,000 cars, while almost all of them are of minutes that no longer change.

How it stays exact:
- the first use (or one reaching further back than what is loaded) counts the minutes from there
  on (MINUTE_CLASS_COUNTS) and remembers the newest `processed_at` it had seen before counting;
- every later use asks which capture minutes have frames processed since that mark, less
  `margin_s` (a frame's processed_at is set just before its transaction commits, so one can land a
  little after a newer one: the margin covers that), counts those minutes again (DIRTY_MINUTES:
  a stored, replaced or redelivered frame, also one captured long ago and stored late, is seen
  there), and moves the mark;
- rows deleted by a retention job leave no trace in processed_at: everything is counted afresh
  every `max_age_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection

from . import queries as q

MINUTE = 60


def minute_of(t: datetime) -> int:
    return int(t.timestamp() // MINUTE)


def minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * MINUTE, tz=timezone.utc)


def is_minute_aligned(t: datetime) -> bool:
    return t.second == 0 and t.microsecond == 0


class MinuteClassRollup:
    """Thread-safe; one per reader (the dashboard keeps one reader for the life of the process)."""

    def __init__(
        self, *, margin_s: float = 60.0, max_age_s: float = 600.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.margin_s = margin_s
        self.max_age_s = max_age_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._counts: dict[int, dict[tuple[int, str], int]] = {}
        self._from_minute: int | None = None  # minutes >= this one are loaded
        self._mark: datetime | None = None
        self._loaded_at = 0.0

    def _count(self, conn: Connection, since: datetime, until: datetime) -> dict[int, dict[tuple[int, str], int]]:
        counts: dict[int, dict[tuple[int, str], int]] = {}
        for row in q.run(conn, q.MINUTE_CLASS_COUNTS, since=since, until=until, start_s=0, width_s=MINUTE):
            counts.setdefault(int(row.bin), {})[int(row.class_id), row.class_name] = int(row.boxes)
        return counts

    def minutes(self, conn: Connection, first_minute: int) -> dict[int, dict[tuple[int, str], int]]:
        """(class id, class name) -> boxes of every capture minute >= first_minute that has boxes (a copy)."""
        with self._lock:
            last_processed = q.run(conn, q.LAST_PROCESSED)[0].last_processed_at
            expired = self._monotonic() - self._loaded_at > self.max_age_s
            if self._from_minute is None or expired or first_minute < self._from_minute:
                start = first_minute if self._from_minute is None or expired else min(first_minute, self._from_minute)
                self._counts = self._count(conn, minute_start(start), datetime(9999, 1, 1, tzinfo=timezone.utc))
                self._from_minute, self._mark, self._loaded_at = start, last_processed, self._monotonic()
            elif last_processed is not None and (self._mark is None or last_processed > self._mark):
                since = (self._mark or last_processed) - timedelta(seconds=self.margin_s)
                dirty = sorted(int(r.minute) for r in q.run(conn, q.DIRTY_MINUTES, since=since, start_s=0, width_s=MINUTE))
                dirty = [m for m in dirty if m >= self._from_minute]
                if dirty:
                    fresh = self._count(conn, minute_start(dirty[0]), minute_start(dirty[-1] + 1))
                    for minute in dirty:
                        self._counts.pop(minute, None)
                        if minute in fresh:
                            self._counts[minute] = fresh[minute]
                self._mark = last_processed
            return {m: dict(c) for m, c in self._counts.items() if m >= first_minute}
