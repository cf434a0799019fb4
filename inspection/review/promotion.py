"""Promotion of a model: one config change (`model.name`, and `model.path` if it has its own file).

`edge --reload-model` watches its config file. When the model named there changes, the running
pipeline is stopped the way SIGTERM stops it: polling stops, every frame in flight is stored and
its offset committed (drain); the config is read again (reload); a row of `model_swaps` records the
swap; a new pipeline with the new model resumes in the same consumer group from the committed
offsets (resume). Nothing is lost (offsets move only past stored frames) and nothing is stored
twice (a frame is upserted by its key, and no committed record is read again).
A config that does not load (being edited, unknown model) is logged and the old model keeps running.

With `--workers N` the supervisor (inspection/edge/supervisor.py) does the same for all its
processes: it drains every worker (and the GPU owners of layout gpu_owner), records one swap with
the frames the drained workers handled, and starts them again with the new model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, insert

from ..config import ConfigError, Settings
from ..store.review_models import ModelSwapRow

log = logging.getLogger(__name__)


class ModelChangeWatch:
    """`stop_when` callback: True once the config's model differs from `running` (checked every interval_s)."""

    def __init__(self, load: Callable[[], Settings], running: Settings, interval_s: float = 1.0) -> None:
        self.load = load
        self.running = (running.model.name, running.model.path)
        self.interval_s = interval_s
        self._next = 0.0
        self.changed: Settings | None = None

    def __call__(self, _stats: Any = None) -> bool:
        if self.changed is not None:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        try:
            fresh = self.load()
        except (ConfigError, ValidationError, ValueError, OSError) as exc:
            log.warning("config reload failed, keeping model %s: %s", self.running[0], exc)
            return False
        if (fresh.model.name, fresh.model.path) != self.running:
            self.changed = fresh
            return True
        return False


def record_swap(
    engine: Engine, old: Settings, new: Settings, *, from_run_id: int | None, frames_before: int, config: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(ModelSwapRow).values(
                swapped_at=datetime.now(timezone.utc),
                from_model=old.model.name,
                to_model=new.model.name,
                from_run_id=from_run_id,
                frames_before=frames_before,
                config=str(config)[:1024],
            )
        )


def run_with_reload(
    load: Callable[[], Settings],
    start: Callable[[Settings], Any],
    engine: Engine,
    config: Path,
    *,
    keep_going: Callable[[list[Any]], bool],
    on_pipeline: Callable[[Any], None] = lambda _p: None,
    interval_s: float = 1.0,
) -> list[Any]:
    """Run pipelines one after the other, swapping the model on a config change; returns each run's stats.

    `start(settings)` builds an EdgePipeline; `keep_going(stats so far)` is False to stop for good
    (a stop request, a frame budget); `on_pipeline` receives each new pipeline (for signal handlers).
    """
    settings = load()
    done: list[Any] = []
    while True:
        pipeline = start(settings)
        on_pipeline(pipeline)
        watch = ModelChangeWatch(load, settings, interval_s)
        stats = pipeline.run(stop_when=lambda s, w=watch: w(s) or not keep_going([*done, s]))
        done.append(stats)
        if watch.changed is None or not keep_going(done):
            return done
        record_swap(
            engine, settings, watch.changed, from_run_id=pipeline.run_id, frames_before=stats.frames_handled, config=config
        )
        log.info("model %s -> %s: drained, reloaded, resuming", settings.model.name, watch.changed.model.name)
        settings = watch.changed
