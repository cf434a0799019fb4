"""`inspection edge --workers N [--gpus 0,1]`: several edge worker processes under one command.

One Python process cannot keep an H100 busy (decode, stitch and the store share one GIL with the
infer thread); three processes on one GPU could, but users should not start them by hand. The
supervisor starts N worker processes per GPU (multiprocessing spawn: no CUDA or Kafka state is
inherited), each a member of the same consumer group running the existing `EdgePipeline`, pinned
to its GPU with CUDA_VISIBLE_DEVICES. Delivery guarantees are the pipeline's own: a worker commits
only what it stored, drains and commits on revocation and on SIGTERM; a worker that dies is
replaced, and the group redelivers what it had not committed (frames upsert: no duplicates).

- SIGTERM / SIGINT to the supervisor: forwarded to every worker as SIGTERM; each drains, commits
  and exits; then the supervisor exits 0.
- A worker that exits while the supervisor is not stopping is restarted after a backoff that
  doubles (`RestartPolicy`); more than `max_restarts` deaths of one slot within `window_s` stop
  every worker and the supervisor exits non-zero with one `error:` line.
- Promotion (`edge --workers N --reload-model`): the supervisor watches the config file; when the
  model named there changes it rolls the workers over one at a time (`_promote`): worker k is drained
  (SIGTERM: it stores what it holds, commits its offsets and leaves the group, whose other members take
  its partitions), worker k of the new model starts and the supervisor waits until it holds partitions,
  then the next. In layout gpu_owner the new model's GPU owners start first and the old ones stop after
  the last old worker. Then it records the swap (`on_swap`, one `model_swaps` row). No record is handled
  by both models and none is skipped: the workers' commits are the hand-over point, as for SIGTERM. The
  group never empties: when every member left at once, the embedded broker answered the new members
  with the departed leader's id and handed them no partitions for minutes.
- Metrics: the supervisor serves one /metrics, /healthz and /readyz on `metrics_port` for all workers
  (`worker_metrics.py`: every worker's samples with a `worker` label, `inspection_edge_worker_up`,
  restarts); worker k serves its own on 127.0.0.1:`metrics_port + 1 + k`, which that endpoint reads.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from ..config import ModelConfig, PipelineConfig, Settings
from ..health import HealthServer
from .gpu_owner import GpuLink, SharedSlab, create_link, serve_gpu
from .worker_metrics import WorkersCollector, WorkersReadiness, workers_registry

log = logging.getLogger(__name__)

GPU_BACKENDS = ("torch", "tensorrt")
AUTO_WORKERS_PER_GPU = 3  # layout processes, measured on an H100: 3 processes 1.17 s per car, 1 process 1.89 s (issue 13)
AUTO_FEEDERS_PER_GPU = 4  # layout gpu_owner: CPU worker processes feeding one GPU owner (benchmarks/h100, issue 17)


def uses_gpu(model: ModelConfig) -> bool:
    return model.device == "cuda" or (model.device == "auto" and model.backend in GPU_BACKENDS)


def gpu_owner_layout(pipeline: PipelineConfig, model: ModelConfig) -> bool:
    """Whether one process owns each GPU and CPU workers feed it (`pipeline.layout`)."""
    if pipeline.layout == "auto":
        return uses_gpu(model) and model.backend == "torch"
    return pipeline.layout == "gpu_owner"


def resolve_workers(pipeline: PipelineConfig, model: ModelConfig) -> int:
    """Worker processes per GPU (or in all, on the CPU): `pipeline.workers`, or for `auto` 4 CPU workers
    per GPU owner, 3 whole pipelines per GPU (layout processes) and 1 on the CPU."""
    if pipeline.workers == "auto":
        if gpu_owner_layout(pipeline, model):
            return AUTO_FEEDERS_PER_GPU
        return AUTO_WORKERS_PER_GPU if uses_gpu(model) else 1
    return int(pipeline.workers)


def worker_gpus(pipeline: PipelineConfig, model: ModelConfig) -> list[int | None]:
    """The GPU of each worker slot (None: not pinned), GPU-major: [0, 0, 0, 1, 1, 1] for 3 per GPU on 2."""
    per_gpu = resolve_workers(pipeline, model)
    if pipeline.gpus is None:
        return [None] * per_gpu
    return [gpu for gpu in pipeline.gpus for _ in range(per_gpu)]


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a spawned worker needs (pickled to the child)."""

    index: int
    gpu: int | None
    settings: Settings
    bootstrap: str
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    verbose: bool = False
    link: GpuLink | None = None  # layout gpu_owner: this worker's share of its GPU owner
    link_index: int = 0
    reports: Any = None  # multiprocessing queue: WorkerJoined once assigned, WorkerReport at a clean stop


def run_worker(spec: WorkerSpec) -> None:
    """Worker process body: one EdgePipeline until SIGTERM/SIGINT; exit status 1 on a pipeline failure."""
    if spec.link is not None:  # the GPU owner holds the GPU; this process never touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif spec.gpu is not None:  # before anything initialises CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(spec.gpu)
    from ..logs import configure_logging
    from ..rules.verdict import verdict_writer
    from ..store import ResultStore
    from .compose import build_edge
    from .pipeline import EdgePipeline, PipelineError

    configure_logging(spec.settings.logging.format, verbose=spec.verbose)
    name = f"worker {spec.index}" + (f" (gpu {spec.gpu})" if spec.gpu is not None else "")
    stop = threading.Event()
    pipeline: EdgePipeline | None = None

    def on_signal(*_: object) -> None:
        stop.set()
        if pipeline is not None:
            pipeline.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    store = ResultStore.open(spec.settings.store)
    store.verdicts = verdict_writer(spec.settings)
    server: HealthServer | None = None
    try:
        pipeline = build_edge(spec.settings, spec.bootstrap, store, link=spec.link, link_index=spec.link_index)
        if stop.is_set():
            return
        if spec.metrics_port:  # loopback only: the supervisor's endpoint is the one a scraper reads
            server = HealthServer(pipeline.metrics.registry, pipeline.readiness)
            server.start(worker_metrics_port(spec.metrics_port, spec.index))
        if spec.reports is not None:
            _report_join(pipeline.readiness, spec)
        stats = pipeline.run()
        log.info("%s stopped cleanly: %d frames stored, %d parked", name, stats.frames_stored, stats.frames_parked)
        if spec.reports is not None:
            spec.reports.put(WorkerReport(spec.index, pipeline.run_id, stats.frames_handled))
    except PipelineError as exc:
        log.error("%s failed: %s", name, exc)
        sys.exit(1)
    finally:
        if server is not None:
            server.close()
        store.close()


def _report_join(readiness: Any, spec: WorkerSpec) -> None:
    """Put `WorkerJoined` on the supervisor's queue once this worker's consumer first holds partitions."""

    def wait() -> None:
        if readiness.joined(timeout_s=None):
            spec.reports.put(WorkerJoined(spec.index, os.getpid()))

    threading.Thread(target=wait, name="report-join", daemon=True).start()


def worker_metrics_port(metrics_port: int, index: int) -> int:
    """Worker `index`'s own loopback port: the ones after the supervisor's `metrics_port`."""
    return metrics_port + 1 + index


@dataclass(frozen=True)
class WorkerReport:
    """What a worker that stopped cleanly tells the supervisor: its run row and the frames it handled."""

    index: int
    run_id: int
    frames_handled: int


@dataclass(frozen=True)
class WorkerJoined:
    """What a worker tells the supervisor once it first holds partitions (a rolling swap waits for it)."""

    index: int
    pid: int


SwapRecorder = Callable[[Settings, Settings, list[WorkerReport]], None]


@dataclass
class WorkerSlot:
    spec: WorkerSpec
    process: BaseProcess | None = None
    restart_at: float | None = None
    deaths: list[float] = field(default_factory=list)
    last_exit: int | None = None

    @property
    def name(self) -> str:
        return f"worker {self.spec.index}" + (f" (gpu {self.spec.gpu})" if self.spec.gpu is not None else "")


@dataclass
class OwnerGroup:
    """The GPU owners of one model: their processes, the workers' shared slabs and the sockets' directory."""

    owners: list[OwnerSlot] = field(default_factory=list)
    slabs: list[SharedSlab] = field(default_factory=list)
    socket_dir: str | None = None


@dataclass
class OwnerSlot:
    """A GPU owner process (layout gpu_owner) and what its workers share with it."""

    gpu: int | None
    link: GpuLink
    process: BaseProcess | None = None
    deaths: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "GPU owner" + (f" (gpu {self.gpu})" if self.gpu is not None else "")


@dataclass(frozen=True)
class SupervisorResult:
    exit_code: int
    restarts: int
    error: str | None = None


class EdgeSupervisor:
    """Start, watch, restart and stop the worker processes of one `inspection edge` command."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        *,
        metrics_port: int = 0,
        metrics_addr: str = "127.0.0.1",
        verbose: bool = False,
        restart: RestartPolicy = RestartPolicy(),
        drain_timeout_s: float = 120.0,
        poll_s: float = 0.2,
        reload: Callable[[], Settings] | None = None,
        on_swap: SwapRecorder | None = None,
        reload_interval_s: float = 1.0,
        join_timeout_s: float = 120.0,
    ) -> None:
        """`reload`: read the config again (promotion: a changed model rolls every worker over to it, one at a
        time); `on_swap(old, new, reports of the drained workers)` records the swap; `join_timeout_s`: how long
        the roll waits for a new worker to hold partitions before it goes on."""
        self.restart = restart
        self.drain_timeout_s = drain_timeout_s
        self.poll_s = poll_s
        self.reload = reload
        self.on_swap = on_swap
        self.reload_interval_s = reload_interval_s
        self.join_timeout_s = join_timeout_s
        self._pending: list[Any] = []  # reports taken off the queue, not yet asked for
        self.bootstrap = bootstrap
        self.metrics_port, self.metrics_addr, self.verbose = metrics_port, metrics_addr, verbose
        self._ctx = mp.get_context("spawn")
        self._reports = self._ctx.Queue() if reload is not None else None
        self.owner_group = OwnerGroup()
        self._metric_urls: dict[str, str] = {}
        self._use(settings)
        self._stop = threading.Event()
        self.restarts = 0
        self.swaps = 0

    def _use(self, settings: Settings) -> None:
        """Worker slots (and the layout) for `settings`; nothing is started."""
        self.settings = settings
        self.gpu_owner = gpu_owner_layout(settings.pipeline, settings.model)
        self.slots = [
            WorkerSlot(
                WorkerSpec(
                    k, gpu, settings, self.bootstrap, self.metrics_port, self.metrics_addr, self.verbose, reports=self._reports
                )
            )
            for k, gpu in enumerate(worker_gpus(settings.pipeline, settings.model))
        ]
        self._metric_urls.clear()  # in place: the running /metrics endpoint reads this dict
        if self.metrics_port:
            for slot in self.slots:
                self._metric_urls[str(slot.spec.index)] = (
                    f"http://127.0.0.1:{worker_metrics_port(self.metrics_port, slot.spec.index)}"
                )

    def stop(self) -> None:
        """Ask every worker to drain and commit, then return from `run` (signal-handler safe)."""
        self._stop.set()

    def _start(self, slot: WorkerSlot) -> None:
        slot.process = self._ctx.Process(target=run_worker, args=(slot.spec,), name=f"edge-worker-{slot.spec.index}")
        slot.process.start()
        slot.restart_at = None
        log.info("started %s, pid %s", slot.name, slot.process.pid)

    def run(self) -> SupervisorResult:
        if self.gpu_owner:
            self.owner_group = self._start_owners()
        for slot in self.slots:
            self._start(slot)
        server = self._serve_metrics()
        watch = self._model_watch()
        error: str | None = None
        try:
            while not self._stop.is_set() and error is None:
                now = time.monotonic()
                for slot in self.slots:
                    error = error or self._watch(slot, now)
                for owner in self.owner_group.owners:
                    error = error or self._watch_owner(owner, now)
                if error is None and watch is not None and watch():
                    assert watch.changed is not None
                    self._promote(watch.changed)
                    watch = self._model_watch()
                self._stop.wait(self.poll_s)
            failed = [s for s in self._drain() if s.last_exit != 0]
        finally:
            self._stop_owners(self.owner_group)
            if server is not None:
                server.close()
        if error is None and failed:
            error = "; ".join(f"{s.name} exited with status {s.last_exit} while draining" for s in failed)
        return SupervisorResult(1 if error else 0, self.restarts, error)

    # ------------------------------------------------------------------ promotion

    def _model_watch(self) -> Any:
        if self.reload is None:
            return None
        from ..review.promotion import ModelChangeWatch

        return ModelChangeWatch(self.reload, self.settings, self.reload_interval_s)

    def _promote(self, new: Settings) -> None:
        """Roll every worker over to `new`, one at a time: drain worker k of the old model (it stores what it
        holds, commits and leaves the group; the others take its partitions), start worker k with the new one
        and wait until it holds partitions, then the next. The group is never empty, so no broker is left with
        a group whose members all left (the embedded one then handed the new workers no partitions for
        minutes); each frame is handled once, by whichever model's worker held its partition. In layout
        gpu_owner the new model's owners start first and the old ones stop after the last old worker.
        The swap is recorded once, with the old workers' reports."""
        old = self.settings
        old_slots, old_owners = self.slots, self.owner_group
        log.info("model %s -> %s: rolling %d worker(s) over", old.model.name, new.model.name, len(old_slots))
        self._use(new)
        self.owner_group = self._start_owners() if self.gpu_owner else OwnerGroup()
        reports: list[WorkerReport] = []
        for k in range(max(len(old_slots), len(self.slots))):
            if k < len(old_slots):
                reports += self._retire(old_slots[k])
            if k < len(self.slots) and not self._stop.is_set():
                self._start(self.slots[k])
                self._await_join(self.slots[k])
        self._stop_owners(old_owners)
        reports += self._reports_of(WorkerReport)
        if self.on_swap is not None:
            self.on_swap(old, new, sorted(reports, key=lambda r: r.index))
        self.swaps += 1
        handled = sum(r.frames_handled for r in reports)
        log.info("model %s -> %s: rolled over (%d frames before), reloaded, resuming", old.model.name, new.model.name, handled)

    def _retire(self, slot: WorkerSlot) -> list[WorkerReport]:
        """Drain one worker of the old model; its report when it stopped cleanly."""
        for drained in self._drain([slot]):
            if drained.last_exit != 0:  # its uncommitted frames go back to the group: redelivered, not lost
                log.warning("%s exited with status %s while draining for the swap", drained.name, drained.last_exit)
        return self._reports_of(WorkerReport)

    def _await_join(self, slot: WorkerSlot) -> None:
        """Until the started worker holds partitions, dies, the supervisor is stopped, or the join timeout
        passes (a worker beyond the partition count never gets any)."""
        assert slot.process is not None
        deadline = time.monotonic() + self.join_timeout_s
        while time.monotonic() < deadline and slot.process.is_alive() and not self._stop.is_set():
            if any(j.pid == slot.process.pid for j in self._reports_of(WorkerJoined, wait_s=self.poll_s)):
                return
        if slot.process.is_alive() and not self._stop.is_set():
            log.warning("%s holds no partitions after %g s; rolling on", slot.name, self.join_timeout_s)

    def _reports_of(self, kind: type[Any], wait_s: float = 0.5) -> list[Any]:
        """What the workers put on the report queue, of `kind` (others are kept for their reader)."""
        while self._reports is not None:
            try:
                self._pending.append(self._reports.get(timeout=wait_s))
            except queue.Empty:
                break
            wait_s = 0.0
        found = [r for r in self._pending if isinstance(r, kind)]
        self._pending = [r for r in self._pending if not isinstance(r, kind)]
        return found

    # ------------------------------------------------------------------ layout gpu_owner

    def _start_owners(self) -> OwnerGroup:
        """One GPU owner per GPU of the current settings, its workers' shared slabs and socket (workers get their
        share in their spec)."""
        from ..tiling import TileGrid

        p = self.settings.pipeline
        grid = TileGrid.from_config(self.settings.grid)
        # every batch one worker can have in flight (queued, decoding, detecting, one spare) + one for copies
        slots = p.queue_size + p.decode_workers + 2 + 1
        groups: dict[int | None, list[WorkerSlot]] = {}
        for slot in self.slots:
            groups.setdefault(slot.spec.gpu, []).append(slot)
        socket_dir = tempfile.mkdtemp(prefix="inspection-gpu-")  # the owners' sockets, removed at stop
        group = OwnerGroup(socket_dir=socket_dir)
        for gpu, members in groups.items():
            address = os.path.join(socket_dir, f"owner-{'cpu' if gpu is None else gpu}.sock")
            link, slabs = create_link(grid, len(members), slots, p.stage_timeout_s, address)
            group.slabs += slabs
            for k, slot in enumerate(members):
                slot.spec = dataclasses.replace(slot.spec, link=link, link_index=k)
            owner = OwnerSlot(gpu, link)
            group.owners.append(owner)
            self._start_owner(owner)
        return group

    def _start_owner(self, owner: OwnerSlot) -> None:
        owner.process = self._ctx.Process(
            target=serve_gpu, args=(self.settings, owner.link, owner.gpu), name=f"gpu-owner-{owner.gpu}"
        )
        owner.process.start()
        log.info("started %s, pid %s", owner.name, owner.process.pid)

    def _watch_owner(self, owner: OwnerSlot, now: float) -> str | None:
        """Restart a GPU owner that died (its workers' waiting frames fail and are redelivered)."""
        if owner.process is None or owner.process.is_alive():
            return None
        owner.deaths = [t for t in owner.deaths if now - t <= self.restart.window_s] + [now]
        if len(owner.deaths) > self.restart.max_restarts:
            return (
                f"{owner.name} died {len(owner.deaths)} times within {self.restart.window_s:g} s (exit {owner.process.exitcode})"
            )
        log.warning("%s exited with status %s; restarting it", owner.name, owner.process.exitcode)
        self.restarts += 1
        self._start_owner(owner)
        return None

    def _stop_owners(self, group: OwnerGroup) -> None:
        """After their workers drained: each owner answers what is queued, then ends; the slabs are freed."""
        asked = [o for o in group.owners if o.process is not None and o.process.is_alive() and o.link.stop_owner()]
        for owner in group.owners:
            if owner.process is None:
                continue
            owner.process.join(30 if owner in asked else 0)  # one not listening yet (still warming) is killed
            if owner.process.is_alive():
                owner.process.kill()
                owner.process.join()
        for slab in group.slabs:
            slab.close()
            slab.memory.unlink()
        group.slabs.clear()
        if group.socket_dir is not None:
            shutil.rmtree(group.socket_dir, ignore_errors=True)
            group.socket_dir = None

    def _serve_metrics(self) -> HealthServer | None:
        """One endpoint for every worker on `metrics_port` (none when the port is 0)."""
        spec = self.slots[0].spec
        if not spec.metrics_port:
            return None
        urls = self._metric_urls

        def alive() -> dict[str, bool]:
            return {str(s.spec.index): s.process is not None and s.process.is_alive() for s in self.slots}

        server = HealthServer(workers_registry(WorkersCollector(urls, lambda: self.restarts)), WorkersReadiness(urls, alive))
        port = server.start(spec.metrics_port, spec.metrics_addr)
        log.info("metrics of all %d workers: http://%s:%d/metrics (/healthz, /readyz)", len(self.slots), spec.metrics_addr, port)
        return server

    def _watch(self, slot: WorkerSlot, now: float) -> str | None:
        """Restart a dead worker when its backoff ends; an error text when it keeps dying."""
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                self.restarts += 1
                self._start(slot)
            return None
        if slot.process is None or slot.process.is_alive():
            return None
        slot.last_exit = slot.process.exitcode
        slot.deaths = [t for t in slot.deaths if now - t <= self.restart.window_s] + [now]
        if len(slot.deaths) > self.restart.max_restarts:
            return (
                f"{slot.name} died {len(slot.deaths)} times within {self.restart.window_s:g} s "
                f"(last exit status {slot.last_exit}); see its log lines above"
            )
        wait = min(self.restart.backoff_s * 2 ** (len(slot.deaths) - 1), self.restart.max_backoff_s)
        log.warning("%s exited with status %s; restarting in %.1f s", slot.name, slot.last_exit, wait)
        slot.restart_at = now + wait
        return None

    def _drain(self, slots: list[WorkerSlot] | None = None) -> list[WorkerSlot]:
        """SIGTERM to every live worker of `slots` (default all; each drains and commits), then wait; kill after
        the timeout. Returns the slots that were drained."""
        live = [s for s in (self.slots if slots is None else slots) if s.process is not None and s.process.is_alive()]
        for slot in live:
            os.kill(slot.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.drain_timeout_s
        for slot in live:
            assert slot.process is not None
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error(
                    "%s did not drain within %g s: killed (its uncommitted frames are redelivered)",
                    slot.name,
                    self.drain_timeout_s,
                )
                slot.process.kill()
                slot.process.join()
            slot.last_exit = slot.process.exitcode
        return live
