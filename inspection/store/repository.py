"""`ResultStore`: the results database as one object, composed of one part per concern.

- `writer.FrameTransactions`: the frame and car transaction (see writer.py for the exactly-once rules),
  the run row, rejected messages;
- `pruning.Pruner`: retention in the database;
- `overdue.OverdueMarker`: overdue marking.

It only writes (and reads what its own transactions decide on): everything else reads through the one
read layer, `inspection.analytics`. The names the edge, the CLI and the tests use stay on `ResultStore`
(bound to its parts); the values it takes and answers are in records.py (re-exported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL

from ..config import StoreConfig
from .db import create_engine_for, mask_url, wait_for_database
from .errors import store_errors
from .images import ImageStore
from .migrations import upgrade_database
from .overdue import OverdueMarker
from .pruning import Pruner
from .records import (  # noqa: F401  (the store's values, importable from here as before)
    DETECTION_COLUMNS,
    INT32_MAX,
    INT64_MAX,
    MAX_ERROR_TEXT,
    FrameRecord,
    OverdueCar,
    PruneCounts,
    StoredFrame,
    datetime_from_ns,
    describe_missing,
    error_text,
    image_suffix,
    message_key_text,
)
from .writer import FrameTransactions, StoreDatabase

if TYPE_CHECKING:
    from ..rules.verdict import VerdictWriter


class ResultStore:
    """The results database, written: the frame transactions, retention and overdue marking."""

    def __init__(
        self, target: Engine | str | URL, image_store: ImageStore | None = None, verdicts: VerdictWriter | None = None
    ) -> None:
        self._owns_engine = not isinstance(target, Engine)
        self.engine: Engine = create_engine_for(target) if self._owns_engine else target  # type: ignore[arg-type]
        self.image_store = image_store
        db = StoreDatabase(self.engine, image_store)
        self._writes, self._overdue = FrameTransactions(db, verdicts), OverdueMarker(db, verdicts)
        self.start_run = self._writes.start_run
        self.store_frame = self._writes.store_frame
        self.store_frames = self._writes.store_frames
        self.store_error = self._writes.store_error
        self.store_rejected = self._writes.store_rejected
        self.prune = Pruner(db).prune
        self.mark_overdue = self._overdue.mark_overdue

    @property
    def verdicts(self) -> VerdictWriter | None:
        """The inspection verdict writer (issue 19): the car-completing transaction and overdue marking
        decide each car's verdict with it; None: no verdicts (no defect class configured)."""
        return self._writes.verdicts

    @verdicts.setter
    def verdicts(self, writer: VerdictWriter | None) -> None:
        self._writes.verdicts = self._overdue.verdicts = writer

    @classmethod
    def open(cls, config: StoreConfig, *, migrate: bool = True) -> ResultStore:
        """Engine for `config.url`, wait until it answers, bring the schema to head, attach the image store."""
        engine = create_engine_for(
            config.url, connect_timeout_s=config.connect_timeout_s, busy_timeout_s=config.sqlite_busy_timeout_s
        )
        try:
            wait_for_database(engine, config.connect_retries, config.connect_backoff_s)
            if migrate:
                upgrade_database(engine)
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, ImageStore(config.image_dir) if config.image_dir is not None else None)
        store._owns_engine = True
        return store

    @property
    def where(self) -> str:
        """The database URL with any password masked, for messages."""
        return mask_url(self.engine.url)

    def ping(self) -> None:
        """`SELECT 1`; raises StoreUnavailable when the database does not answer."""
        with store_errors(f"pinging {self.where}"), self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
