"""`EdgePipeline`: one edge consumer of the consumer group, its stages wired from config.

    stage       threads                   takes → answers                does
    source      this one                  record → Received | Parked     poll, read, offsets, commits, revoke/drain
    ─▶ prepare  pipeline.decode_workers   Received → Prepared | Parked   JPEG decode + tiling into a pooled batch
    ─▶ infer    one per detector          Prepared → Detected            one 64-tile call, stitch, second look
    ─▶ persist  one                       Detected | Parked → Outcome    group commit, or dead letter + error row;
                                                                         offset durable; a frame key's records in
                                                                         offset order (ordering.py)
    overdue watcher (thread: cars past their deadline with frames missing, see overdue.py)

Each arrow carries one typed step of the record (steps.py); a `Parked` record, refused at the source
or by decoding, is routed straight to persist (`steps.route`), skipping the stages between. Each stage
is a module of this package, built here with its collaborators and run by the generic `StageRunner`
(bounded queues, routing, stop propagation, failure handling). The constructor only records what it is
given; `run()` opens the store's run row, the Kafka clients and warms the detectors.

A frame is either stored or parked, never dropped: what is parked is decided in `validation.read_frame`
(at the source) and `persist.FrameWriter` (the store's answer). Only infrastructure stops the
consumer: the database unavailable after retries, the dead-letter topic unwritable, the detector
failing, a frame stuck in decoding longer than `pipeline.stage_timeout_s`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import Settings
from ..detect import Detector, create_detector
from ..health import Readiness
from ..kafka.dlq import DeadLetterProducer
from ..kafka.offsets import OffsetTracker
from ..metrics import PipelineMetrics
from ..overdue import OverdueWatcher
from ..store import ResultStore, RetryPolicy, StoredFrame
from ..tiling import TileGrid
from .infer import InferStage
from .ordering import KeyOrder
from .persist import FrameWriter, PersistStage
from .prepare import FramePreparer, PrepareStage, make_preparer
from .runner import Stage, StageRunner
from .source import KafkaSource
from .stats import PipelineStats
from .steps import Final, Step, route
from .timing import FrameTimings

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    """The pipeline stopped on a failure that is not the input's fault (database, detector, broker)."""


def create_detectors(settings: Settings) -> list[Detector]:
    """`pipeline.infer_workers` instances of the configured detector, one per infer thread."""
    return [create_detector(settings.model, settings.detect) for _ in range(settings.pipeline.infer_workers)]


class EdgePipeline:
    """Consume until `stop()`, a failure, or `run(stop_when=...)` says so; `stats` counts as it goes."""

    def __init__(
        self,
        settings: Settings,
        detector: Detector | Sequence[Detector],
        store: ResultStore,
        bootstrap: str,
        *,
        preparer: FramePreparer | None = None,
        metrics: PipelineMetrics | None = None,
        consumer_overrides: dict[str, Any] | None = None,
        on_stored: Callable[[StoredFrame, Final], None] | None = None,
        timings: FrameTimings | None = None,
    ) -> None:
        self.settings = settings
        self.detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
        self.store = store
        self.bootstrap = bootstrap
        self.grid = TileGrid.from_config(settings.grid)
        self._preparer = preparer
        self.metrics = metrics or PipelineMetrics()
        self.readiness = Readiness(settings.health, store.ping)
        self.on_stored = on_stored
        self.stats = PipelineStats()
        # Every frame's stage marks, for benchmarks only (a long-running edge keeps none).
        self.timings = timings if timings is not None or settings.pipeline.timing_dir is None else FrameTimings()
        self.offsets = OffsetTracker()
        self.order = KeyOrder()  # records of one frame key reach the database in offset order
        self.source = KafkaSource(
            settings,
            bootstrap,
            self.offsets,
            self.stats,
            self.metrics,
            self.readiness,
            consumer_overrides=consumer_overrides,
            order=self.order,
        )
        self.run_id: int | None = None
        self._stop = threading.Event()
        self._runner: StageRunner | None = None

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the pipeline to finish: stop polling, drain what is in flight, commit, return."""
        self._stop.set()

    @property
    def failure(self) -> BaseException | None:
        return self._runner.failure if self._runner is not None else None

    def _preparer_for_run(self) -> FramePreparer:
        if self._preparer is not None:
            return self._preparer
        p = self.settings.pipeline
        # Every batch that can be in flight at once: queued, being decoded, being detected, one spare.
        pool = p.queue_size + p.decode_workers + len(self.detectors) + 1
        return make_preparer(p.decode, self.grid, pool)

    def _build(self, preparer: FramePreparer, writer: FrameWriter) -> StageRunner:
        p = self.settings.pipeline
        prepare = PrepareStage(preparer)
        infers = tuple(
            InferStage(d, preparer, self.grid, self.settings.stitch, self.settings.grid.second_look) for d in self.detectors
        )
        persist = PersistStage(
            writer,
            self.offsets,
            self.grid,
            self.stats,
            self.metrics,
            self.readiness,
            self.on_stored,
            self.timings,
            order=self.order,
            batch_frames=p.store_batch_frames,
            backlog=lambda: self._runner.depth("persist") if self._runner is not None else 0,
        )

        def describe(step: Step) -> str:
            return f"{step.describe()} (pipeline.stage_timeout_s; stopping without committing it)"

        return StageRunner(
            [
                Stage.threads(
                    "prepare", prepare, p.decode_workers, queue_size=p.queue_size, timeout_s=p.stage_timeout_s, describe=describe
                ),
                Stage("infer", infers, queue_size=p.queue_size),  # one thread per detector
                Stage("persist", (persist,), queue_size=p.queue_size, finish=persist.flush),
            ],
            on_failure=self._failed,
            route=route,
        )

    def _dump_timings(self) -> None:
        folder = self.settings.pipeline.timing_dir
        if self.timings is None or folder is None:
            return
        self.timings.commit_s, self.timings.commits = self.stats.commit_s, self.stats.commits
        log.info("stage timings of %d frames written to %s", len(self.timings.marks), self.timings.dump(Path(folder)))

    def _failed(self, exc: BaseException) -> None:
        log.error("pipeline stage %s failed: %s", threading.current_thread().name, exc, exc_info=exc)
        self.readiness.failed(str(exc))
        self._stop.set()

    # ------------------------------------------------------------------ run

    def run(self, stop_when: Callable[[PipelineStats], bool] | None = None, commit_interval_s: float = 0.1) -> PipelineStats:
        """Consume until `stop()` (or SIGTERM through the CLI), a failure, or `stop_when(stats)`."""
        settings = self.settings
        preparer = self._preparer_for_run()
        if preparer.on_device and not self.detectors[0].takes_device_batches:
            raise ValueError(f"pipeline.decode=gpu needs a GPU backend (torch); {self.detectors[0].backend} takes host batches")
        for each in self.detectors:  # CUDA graphs captured now, not while the first car's frames wait
            each.warmup((self.grid.tile_size, self.grid.tile_size))
        first = self.detectors[0]
        self.run_id = self.store.start_run(first.spec.name, first.backend, first.precision, settings.digest())
        dlq = DeadLetterProducer(self.bootstrap, settings.kafka)
        writer = FrameWriter(
            self.store, dlq, RetryPolicy.from_config(settings.store), run_id=self.run_id, class_names=first.spec.class_names
        )
        runner = self._runner = self._build(preparer, writer)
        self.metrics.watch_queues(
            {
                "detect": lambda: runner.depth("prepare") + runner.depth("infer"),
                "store": lambda: runner.depth("persist"),
                "uncommitted": self.offsets.pending,
            }
        )
        if self.store.image_store is not None:
            self.metrics.watch_disk(self.store.image_store.root)
        overdue = OverdueWatcher(self.store, settings.line, settings.overdue, self.metrics)
        overdue_thread = threading.Thread(target=overdue.run, args=(self._stop,), name="overdue", daemon=True)
        # The infer thread gives up the GIL at every device sync; with CPython's default 5 ms switch
        # interval it then waits behind the decode/persist threads for milliseconds per frame.
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(settings.pipeline.switch_interval_s)
        try:
            self.source.open()
            runner.start()
            overdue_thread.start()
            while not self._stop.is_set():
                step = self.source.poll()
                if step is not None:  # Received to prepare; Parked straight to persist (route)
                    runner.put(step)
                runner.check()
                self.source.commit_due(commit_interval_s)
                if stop_when is not None and stop_when(self.stats):
                    break
        finally:
            self._stop.set()
            runner.close()
            runner.join()
            if overdue_thread.is_alive():
                overdue_thread.join()
            if runner.failure is None and self.source.is_open:
                self.source.commit()
            self.source.close()
            dlq.close()
            sys.setswitchinterval(previous_interval)
            self._dump_timings()
        if runner.failure is not None:
            raise PipelineError(f"edge pipeline stopped: {runner.failure}") from runner.failure
        return self.stats
