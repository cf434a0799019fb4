"""`EdgePipeline`: one edge consumer of the consumer group, stages wired by bounded queues.

    poll (this thread) ─▶ prepare (thread pool: JPEG decode + tiling into a pooled batch buffer,
         CPU or GPU) ─▶ infer (one thread per detector: one 64-tile call, stitch) ─▶ persist
         (thread: one transaction per frame, or dead letter + error row) ─▶ offsets marked
         durable ─▶ commit (poll thread)
    overdue watcher (thread: cars past their deadline with frames missing, see overdue.py)

Bounded queues make decoding and persistence overlap inference while memory stays bounded: the
poll loop blocks when `pipeline.queue_size` frames wait for the detector. Offsets are committed
only up to the highest contiguous offset whose results are durable (`OffsetTracker`), on
partition revocation after the revoked partitions drained, and at shutdown after everything
drained. A frame is either stored or parked (dead-letter topic + error row), never dropped.

What is stored and what is parked is decided in two places only: `validation.read_frame` (decode
and validation, at poll) and `persist.FrameWriter` (the store's answer). The only failures that stop
the consumer are infrastructure: the database unavailable after retries (`StoreUnavailable`), the
dead-letter topic unwritable, the detector failing, a frame stuck in decoding.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from .config import Settings
from .detect import Detector, create_detector
from .detections import Detections
from .health import Readiness
from .kafka.admin import consumer_config
from .kafka.dlq import DeadLetterProducer
from .kafka.offsets import OffsetTracker
from .messages import FrameMessage, ImageError, MessageError, SourceRecord, payload_limit
from .metrics import PipelineMetrics
from .overdue import OverdueWatcher
from .persist import FrameWriter, Outcome
from .prepare import FramePreparer, make_preparer
from .stitch import stitch
from .store import FrameRecord, RecordRefused, ResultStore, RetryPolicy, StoredFrame
from .tiling import TileGrid, detect_in_chunks
from .validation import FrameValidator, read_frame

log = logging.getLogger(__name__)

STAGES = ("wait", "prepare", "detect", "stitch", "store")


class PipelineError(RuntimeError):
    """The pipeline stopped on a failure that is not the input's fault (database, detector, broker)."""


@dataclass
class Job:
    """One polled record on its way through the stages."""

    msg: Message
    received_at_ns: int
    source: SourceRecord
    frame: FrameMessage | None = None
    prepared: Future | None = None
    error: BaseException | None = None
    detections: Detections | None = None
    stage_s: dict[str, float] = field(default_factory=dict)

    @property
    def tp(self) -> tuple[str, int]:
        return (self.msg.topic(), self.msg.partition())


@dataclass
class PipelineStats:
    frames_stored: int = 0
    frames_parked: int = 0
    detections: int = 0
    cars_completed: list[Any] = field(default_factory=list)
    stage_totals_s: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    frame_latencies_s: list[float] = field(default_factory=list)
    commits: int = 0

    @property
    def frames_handled(self) -> int:
        return self.frames_stored + self.frames_parked


_STOP = object()


def create_detectors(settings: Settings) -> list[Detector]:
    """`pipeline.infer_workers` instances of the configured detector, one per infer thread."""
    return [create_detector(settings.model, settings.detect) for _ in range(settings.pipeline.infer_workers)]


class EdgePipeline:
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
        on_stored: Callable[[StoredFrame, Job], None] | None = None,
    ) -> None:
        self.settings = settings
        # One infer thread per detector: with several (each its own CUDA graph and stream, like
        # TensorRT execution contexts) one frame's post-processing overlaps the next one's forward.
        self.detectors = list(detector) if isinstance(detector, (list, tuple)) else [detector]
        detector = self.detectors[0]
        self.detector = detector
        self.store = store
        self.bootstrap = bootstrap
        self.grid = TileGrid.from_config(settings.grid)
        queue_size = settings.pipeline.queue_size
        # Every batch that can be in flight at once: queued, being decoded, being detected, one spare.
        pool = queue_size + settings.pipeline.decode_workers + len(self.detectors) + 1
        self.preparer = preparer or make_preparer(settings.pipeline.decode, self.grid, pool)
        if self.preparer.on_device and getattr(detector, "detect_tensor", None) is None:
            raise ValueError(f"pipeline.decode=gpu needs a GPU backend (torch); {detector.backend} takes host batches")
        for each in self.detectors:
            warmup = getattr(each, "warmup", None)
            if warmup is not None:  # CUDA graphs captured now, not while the first car's frames wait
                warmup((self.grid.tile_size, self.grid.tile_size))
        self.metrics = metrics or PipelineMetrics()
        self.on_stored = on_stored
        self.stats = PipelineStats()
        self.offsets = OffsetTracker()
        self.max_payload = payload_limit(settings.kafka.message_max_bytes)
        self.validator = FrameValidator.from_settings(settings)
        self.run_id = store.start_run(detector.spec.name, detector.backend, detector.precision, settings.digest())
        self.readiness = Readiness(settings.health, store.ping)
        self.overdue = OverdueWatcher(store, settings.line, settings.overdue, self.metrics)
        self._assigned: set[tuple[str, int]] = set()
        self._infer_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._persist_q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(settings.pipeline.decode_workers, thread_name_prefix="prepare")
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._stats_lock = threading.Lock()
        conf = consumer_config(bootstrap, settings.kafka)
        # librdkafka statistics carry each partition's lag (high watermark - committed offset).
        conf["statistics.interval.ms"] = max(100, int(settings.health.lag_interval_s * 1000))
        conf["stats_cb"] = self._on_stats
        conf.update(consumer_overrides or {})
        self.consumer = Consumer(conf)
        self.dlq = DeadLetterProducer(bootstrap, settings.kafka)
        self.writer = FrameWriter(
            store, self.dlq, RetryPolicy.from_config(settings.store), run_id=self.run_id,
            class_names=detector.spec.class_names,
        )
        self.metrics.watch_queues({
            "detect": self._infer_q.qsize, "store": self._persist_q.qsize, "uncommitted": self.offsets.pending,
        })
        if store.image_store is not None:
            self.metrics.watch_disk(store.image_store.root)
        self._infer_threads = [
            threading.Thread(target=self._guard(functools.partial(self._infer_loop, d)), name=f"infer-{i}", daemon=True)
            for i, d in enumerate(self.detectors)
        ]
        self._persist_thread = threading.Thread(target=self._guard(self._persist_loop), name="persist", daemon=True)
        self._overdue_thread = threading.Thread(target=self.overdue.run, args=(self._stop,), name="overdue", daemon=True)
        self._threads = [*self._infer_threads, self._persist_thread, self._overdue_thread]
        self._infer_running = len(self._infer_threads)
        self._last_commit = 0.0

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the pipeline to finish: stop polling, drain what is in flight, commit, return."""
        self._stop.set()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a stage died: stop everything, commit nothing past it
                log.exception("pipeline stage %s failed", threading.current_thread().name)
                self._failure = exc
                self.readiness.failed(str(exc))
                self._stop.set()

        return run

    def run(self, stop_when: Callable[[PipelineStats], bool] | None = None, commit_interval_s: float = 0.1) -> PipelineStats:
        """Consume until `stop()` (or SIGTERM through the CLI), a failure, or `stop_when(stats)`."""
        topic = self.settings.kafka.topic
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        for thread in self._threads:
            thread.start()
        # The infer thread gives up the GIL at every device sync; with CPython's default 5 ms switch
        # interval it then waits behind the decode/persist threads for milliseconds per frame.
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(self.settings.pipeline.switch_interval_s)
        try:
            while not self._stop.is_set():
                msg = self.consumer.poll(self.settings.kafka.poll_timeout_s)
                if msg is not None:
                    self._accept(msg)
                if time.monotonic() - self._last_commit >= commit_interval_s:
                    self._commit()
                if stop_when is not None and stop_when(self.stats):
                    break
        finally:
            self._shutdown()
            sys.setswitchinterval(previous_interval)
        if self._failure is not None:
            raise PipelineError(f"edge pipeline stopped: {self._failure}") from self._failure
        return self.stats

    def _shutdown(self) -> None:
        self._stop.set()
        for _ in self._infer_threads:  # one stop marker per infer thread; the last one out tells persist
            self._put(self._infer_q, _STOP, force=True)
        for thread in self._threads:
            thread.join()
        self._executor.shutdown(wait=True)
        if self._failure is None:
            self._commit()
        self.consumer.close()
        self.dlq.close()

    # ------------------------------------------------------------------ poll thread

    def _accept(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        job = Job(msg, time.time_ns(), SourceRecord.from_kafka(msg))
        self.offsets.polled(job.tp, msg.offset())
        self.metrics.frames_received.inc()
        job.frame, job.error = read_frame(job.source, self.validator, job.received_at_ns, max_payload_bytes=self.max_payload)
        if job.error is None:
            job.prepared = self._executor.submit(self._timed_prepare, job)
        self._put(self._infer_q, job)

    def _timed_prepare(self, job: Job) -> Any:
        start = time.perf_counter()
        try:
            return self.preparer.prepare(job.frame)
        finally:
            job.stage_s["prepare"] = time.perf_counter() - start

    def _put(self, q: queue.Queue[Any], item: Any, force: bool = False) -> None:
        """Blocking put that gives up when the pipeline stops; a forced put (the stop marker) gives
        up only when the thread that drains `q` has died, so a failed stage never hangs shutdown."""
        drainers = self._infer_threads if q is self._infer_q else [self._persist_thread]
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and not force:
                    return
                if force and not any(t.is_alive() for t in drainers):
                    return

    def _commit(self, partitions: list[tuple[str, int]] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = self.offsets.to_commit(partitions)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            log.warning("offset commit failed (will retry): %s", exc)
            return
        self.offsets.committed(offsets)
        self.stats.commits += 1

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._assigned.update(tps)
        self.readiness.assigned(tps)
        log.info("assigned %s", tps)

    def _on_stats(self, raw: str) -> None:
        """librdkafka statistics (served by poll): each assigned partition's lag to the gauges and /readyz."""
        try:
            topics = json.loads(raw).get("topics", {})
        except ValueError:
            return
        lag: dict[tuple[str, int], int] = {}
        for topic, info in topics.items():
            for key, part in info.get("partitions", {}).items():
                tp = (topic, int(key))
                value = part.get("consumer_lag", -1)
                if tp in self._assigned and isinstance(value, int) and value >= 0:  # -1: not known yet
                    lag[tp] = value
        self.metrics.set_lag(lag)
        self.readiness.lag(lag)

    def _on_revoke(self, consumer: Consumer, partitions: list[Any]) -> None:
        """Drain in-flight work of the revoked partitions and commit before giving them up."""
        tps = [(p.topic, p.partition) for p in partitions]
        if not self.offsets.wait_durable(tps, timeout_s=self.settings.kafka.session_timeout_ms / 1000):
            log.warning("revoked %s before all in-flight frames were durable; they will be redelivered", tps)
        self._commit(tps)
        self.offsets.forget(tps)
        self._assigned.difference_update(tps)
        self.readiness.revoked(tps)
        log.info("revoked %s", tps)

    def _on_lost(self, consumer: Consumer, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        log.warning("lost %s: nothing committed for them; another member redelivers", tps)
        self.offsets.forget(tps)
        self._assigned.difference_update(tps)
        self.readiness.revoked(tps)

    # ------------------------------------------------------------------ infer thread

    def _infer_loop(self, detector: Detector) -> None:
        detect = detector.detect_tensor if self.preparer.on_device else detector.detect  # type: ignore[attr-defined]
        while True:
            job = self._infer_q.get()
            if job is _STOP:
                with self._stats_lock:
                    self._infer_running -= 1
                    last = self._infer_running == 0
                if last:
                    self._put(self._persist_q, _STOP, force=True)
                return
            if job.prepared is not None:
                waited = time.perf_counter()
                try:
                    batch = job.prepared.result(timeout=self.settings.pipeline.stage_timeout_s)
                except MessageError as exc:  # the frame's image is bad: park it
                    job.error = exc
                except FutureTimeout:
                    raise PipelineError(
                        f"frame {job.frame.label if job.frame else '?'} still not decoded after "
                        f"{self.settings.pipeline.stage_timeout_s:g} s (pipeline.stage_timeout_s); stopping without committing it"
                    ) from None
                except Exception as exc:
                    if self.preparer.on_device:  # a GPU fault is the device's, not the frame's: stop
                        raise
                    # The CPU decoder failing in a way it does not name is still this payload's doing.
                    label = job.frame.label if job.frame else "?"
                    job.error = ImageError(f"frame {label}: cannot be decoded ({type(exc).__name__}: {exc})", field="payload")
                else:
                    job.stage_s["wait"] = time.perf_counter() - waited
                    try:
                        job.detections = self._detect(job, batch, detect)
                    finally:
                        self.preparer.release(batch)
            self._put(self._persist_q, job)

    def _detect(self, job: Job, batch: Any, detect: Callable[[Any], Detections]) -> Detections:
        start = time.perf_counter()
        tile_detections = detect_in_chunks(detect, batch, self.grid)  # one call for the 64-slot grid
        mid = time.perf_counter()
        frame_detections = stitch(tile_detections, self.grid, self.settings.stitch)
        job.stage_s["detect"] = mid - start
        job.stage_s["stitch"] = time.perf_counter() - mid
        return frame_detections

    # ------------------------------------------------------------------ persist thread

    def _persist_loop(self) -> None:
        while True:
            job = self._persist_q.get()
            if job is _STOP:
                return
            start = time.perf_counter()
            self._finish(job, self._persist(job))
            job.stage_s["store"] = time.perf_counter() - start
            self.offsets.durable(job.tp, job.msg.offset())
            self.readiness.progress()
            self.metrics.last_progress.set_to_current_time()
            with self._stats_lock:
                for stage, seconds in job.stage_s.items():
                    self.stats.stage_totals_s[stage] += seconds
                    self.metrics.stage_seconds.labels(stage).observe(seconds)

    def _persist(self, job: Job) -> Outcome:
        """Store the frame or park the record (FrameWriter decides); StoreUnavailable stops the consumer."""
        record: FrameRecord | None = None
        error = job.error
        if job.frame is not None:
            try:
                record = self._record(job, with_image=error is None)
            except RecordRefused as exc:  # validation keeps records in bounds; this is the last guard
                record, error = None, exc
        if error is not None:
            if record is not None and record.image is not None:
                record = self._record(job, with_image=False)
            return self.writer.park(job.source, error, record, job.received_at_ns)
        assert record is not None and job.detections is not None
        return self.writer.store_frame(job.source, record, job.detections, job.received_at_ns)

    def _record(self, job: Job, with_image: bool = True) -> FrameRecord:
        frame = job.frame
        assert frame is not None
        msg = job.msg
        ok = job.error is None
        return FrameRecord(
            car_id=frame.car_id,
            camera=frame.camera,
            shot=frame.shot,
            shots_per_car=frame.shots_per_car,
            captured_at_ns=frame.captured_at_ns,
            deadline_at_ns=frame.deadline_at_ns,
            received_at_ns=job.received_at_ns,
            processed_at_ns=time.time_ns(),
            run_id=self.run_id,
            width=self.grid.frame_width if ok else None,
            height=self.grid.frame_height if ok else None,
            image=frame.payload if with_image else None,
            kafka_topic=msg.topic(),
            kafka_partition=msg.partition(),
            kafka_offset=msg.offset(),
        )

    def _finish(self, job: Job, outcome: Outcome) -> None:
        stored: StoredFrame | None = outcome.stored
        parked = outcome.parked is not None
        latency = (time.time_ns() - job.frame.captured_at_ns) / 1e9 if job.frame else 0.0
        with self._stats_lock:
            if parked:
                self.stats.frames_parked += 1
            else:
                assert stored is not None
                self.stats.frames_stored += 1
                self.stats.detections += stored.detections
                self.stats.frame_latencies_s.append(latency)
            if stored is not None and stored.completed is not None:
                self.stats.cars_completed.append(stored.completed)
        if parked:
            self.metrics.frames_parked.labels(outcome.parked).inc()
        else:
            assert stored is not None
            self.metrics.frames_stored.inc()
            self.metrics.detections.inc(stored.detections)
            self.metrics.frame_latency.observe(latency)
        if stored is not None and stored.completed is not None:
            done = stored.completed
            self.metrics.cars_completed.labels("met" if done.met else "missed").inc()
            line = f"{done.describe()}: {stored.car_frames_done}/{stored.car_frames_expected} frames"
            if done.car_latency_s is not None:
                line += f", car latency {done.car_latency_s:.2f} s"
            log.log(logging.INFO if done.met else logging.WARNING, line)
        if stored is not None and self.on_stored is not None:
            self.on_stored(stored, job)
