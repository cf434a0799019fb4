"""End-to-end benchmark: whole cars through the broker into the database.

Five camera producers (one thread and one idempotent producer each, as on the line) push a car's
pre-encoded JPEG frames at once; one edge consumer (EdgePipeline) decodes, tiles, detects,
stitches and stores them. A warm-up car first lets the consumer join its group and the backend
capture its CUDA graphs, so the measured cars see steady state.

Car latency = first frame handed to a producer -> last frame's transaction committed. Frame
latency (p50, p99) = received from Kafka -> its row written in the database (the frame row's
received_at and processed_at, whichever process stored it). The bare model (forward only on a
device-resident 64-tile batch) is timed in the same run, after the cars, so the pipeline's
throughput can be set against it.

With `consumers` > 1 or `gpus`, the cars are consumed by one `inspection edge --workers N
[--gpus ...]` command (the supervisor: N worker processes per GPU in one consumer group), and this
process only produces, watches the database and samples each GPU's memory (NVML, whole device).
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import yaml

from ..analytics import AnalyticsReader, NotFoundError
from ..config import Settings
from ..detect import Detector
from ..edge import create_detectors
from ..edge.compose import build_edge
from ..edge.supervisor import uses_gpu
from ..edge.timing import FrameTimings, OwnerSplit, StageSplit, load_timings
from ..kafka import FrameProducer, ensure_topics
from ..messages.contract import FrameMessage
from ..messages.frame_id import FrameId
from ..messages.images import encode_image
from ..store import ResultStore
from ..store.models import Frame
from ..tiling import TileGrid
from .bench import Combo, MemorySampler, device_sync, time_calls


@dataclass
class CarTiming:
    car_id: str
    frames: int
    car_latency_s: float  # first frame produced -> last frame stored
    produce_s: float  # first frame produced -> every frame acknowledged by the broker
    first_stored_s: float  # first frame produced -> first frame stored
    pipeline_fps: float  # frames / (last stored - first received)
    stage_ms_per_frame: dict[str, float]
    detections: int
    deadline_met: bool | None


@dataclass
class E2EResult:
    model: str
    backend: str
    precision: str
    device: str
    decode: str
    db: str
    frames_per_car: int
    jpeg_bytes_mean: int
    cars: list[CarTiming]
    bare_model_ms: float | None  # forward only, 64 tiles, no I/O
    bare_model_fps: float | None
    pipeline_to_bare_ratio: float | None
    peak_gpu_mem_mib: float | None
    frame_latency_p50_ms: float | None = None  # received from Kafka -> stored, measured cars
    frame_latency_p99_ms: float | None = None
    peak_gpu_mem_mib_per_gpu: dict[str, float] = field(default_factory=dict)
    stage_split: dict[str, Any] = field(default_factory=dict)  # every measured frame of every worker (StageSplit)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def median_car_latency_s(self) -> float:
        return statistics.median(c.car_latency_s for c in self.cars)


def encode_car(settings: Settings, source: Callable[[int, int, int], np.ndarray]) -> dict[tuple[int, int], bytes]:
    """Every (camera, shot) frame of a car, JPEG-encoded once (cameras deliver JPEG)."""
    line = settings.line
    return {
        (cam, shot): encode_image(source(0, cam, shot), line.jpeg_quality)
        for cam in range(line.cameras)
        for shot in range(line.shots_per_camera)
    }


def send_car(
    settings: Settings, producers: list[FrameProducer], car_id: str, jpegs: dict[tuple[int, int], bytes], deadline_s: float
) -> tuple[int, int]:
    """All cameras fire at once, each from its own thread and producer. Returns (t0, t_acked) ns."""
    line = settings.line
    t0 = time.time_ns()
    deadline_ns = t0 + int(deadline_s * 1e9)
    errors: list[BaseException] = []

    def camera(cam: int) -> None:
        try:
            producer = producers[cam]
            for shot in range(line.shots_per_camera):
                producer.send(
                    FrameMessage(
                        frame_id=FrameId(car_id, cam, shot, line.frames_per_car),
                        captured_at_ns=time.time_ns(),
                        deadline_at_ns=deadline_ns,
                        payload=jpegs[(cam, shot)],
                    )
                )
            producer.flush(60)
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(cam,), name=f"camera-{cam}") for cam in range(line.cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return t0, time.time_ns()


def bare_model_ms(detector: Detector, grid: TileGrid, batch: np.ndarray, device: str, repeats: int = 50) -> float | None:
    sync = device_sync(device)
    if detector.takes_device_batches and device == "cuda":
        import torch

        on_device = torch.from_numpy(batch).to(detector.device)

        def call() -> None:
            detector.forward_only(on_device)
            sync()
    elif detector.has_forward:

        def call() -> None:
            detector.forward(batch)
    else:
        return None
    first = time_calls(call, 1, warmup=2)[0]
    repeats = max(3, min(repeats, int(10.0 / max(first, 1e-6))))  # about 10 s at most (a slow CPU)
    return statistics.median(time_calls(call, repeats, warmup=0)) * 1e3


def e2e_settings(settings: Settings, combo: Combo, device: str, deadline_s: float, db: str | None, out: Path) -> Settings:
    """The settings of an end-to-end run of `combo`: its model on `device` (CPU-only backends on the
    CPU), the database `db` (default: a fresh SQLite file in `out`, no images kept) and the line's
    takt, hence each car's deadline, set to `deadline_s`."""
    model = combo.model_config(settings.model, device)
    store = settings.store.model_copy(update={"url": db or f"sqlite:///{(out / 'e2e.db').resolve()}", "image_dir": None})
    return settings.model_copy(
        update={"model": model, "store": store, "line": settings.line.model_copy(update={"takt_s": deadline_s})}
    )


def spawn_supervisor(settings: Settings, bootstrap: str, workers: int, gpus: list[int] | None, workdir: Path) -> subprocess.Popen:
    """One `inspection edge --workers N [--gpus ...]` command (its log in workdir/edge.log)."""
    config = workdir / "e2e-consumer.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    command = [
        sys.executable,
        "-m",
        "inspection.cli",
        "edge",
        "--bootstrap",
        bootstrap,
        "--config",
        str(config),
        "--workers",
        str(workers),
        *(["--gpus", ",".join(map(str, gpus))] if gpus else []),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(workdir / "edge.log", "wb"))


def stop_consumers(processes: list[subprocess.Popen], timeout_s: float = 120.0) -> None:
    """SIGTERM: each drains, commits and exits; killed only if it does not within the timeout."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def car_times_from_db(store: ResultStore, car_id: str) -> tuple[int, int, int] | None:
    """(frames, first received ns, last processed ns) of a car's frame rows, whichever consumer stored them."""
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(Frame.received_at), sa.func.max(Frame.processed_at)).where(
                Frame.car_id == car_id
            )
        ).one()
    if not row[0]:
        return None
    return int(row[0]), _ns(row[1]), _ns(row[2])


def runs_storing_car(store: ResultStore, car_id: str) -> int:
    """How many edge workers (one run row each) stored frames of `car_id`."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count(sa.distinct(Frame.run_id))).where(Frame.car_id == car_id)).scalar_one())


def frame_latencies_ms(store: ResultStore, car_ids: list[str]) -> np.ndarray:
    """processed_at - received_at of every frame row of `car_ids`, in ms (any consumer's rows)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(Frame.received_at, Frame.processed_at).where(Frame.car_id.in_(car_ids))).all()
    return np.asarray([(_ns(done) - _ns(received)) / 1e6 for received, done in rows], dtype=np.float64)


def _ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1e9)


def run_e2e(
    settings: Settings,
    bootstrap: str,
    cars: int = 3,
    deadline_s: float = 0.5,
    source: Callable[[int, int, int], np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    wait_timeout_s: float = 120.0,
    consumers: int = 1,
    workdir: Path | None = None,
    join_wait_s: float = 0.0,
    gpus: list[int] | None = None,
    max_warmup_cars: int = 5,
) -> E2EResult:
    """Warm-up car + `cars` measured cars on `bootstrap` into `settings.store.url`.

    With `consumers` > 1 or `gpus`, the cars go to one `inspection edge --workers consumers
    [--gpus ...]` (consumers worker processes per GPU, one consumer group) and car timings come
    from the frame rows in the database, which every worker writes; otherwise one in-process
    EdgePipeline consumes them.
    """
    from synthetic.photos import PhotoFrameSource

    say = progress or (lambda text: None)
    grid = TileGrid.from_config(settings.grid)
    suffix = uuid.uuid4().hex[:8]
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={
                    "topic": f"bench-{suffix}",
                    "dlq_topic": f"bench-{suffix}.dlq",
                    "group_id": f"bench-{suffix}",
                    "partitions": max(settings.kafka.partitions, settings.line.cameras),
                }
            )
        }
    )
    supervised = consumers > 1 or bool(gpus)
    timing_dir = (workdir or Path(tempfile.mkdtemp())) / f"timings-{suffix}"
    if supervised:  # every worker writes its frames' stage marks there when it stops
        settings = settings.model_copy(
            update={"pipeline": settings.pipeline.model_copy(update={"timing_dir": str(timing_dir.resolve())})}
        )
    ensure_topics(bootstrap, settings.kafka)
    frames_per_car = settings.line.frames_per_car
    say("encoding a car of JPEG frames")
    jpegs = encode_car(settings, source or PhotoFrameSource(grid))
    device = "cuda" if uses_gpu(settings.model) else "cpu"
    samplers = {g: MemorySampler(g) for g in (gpus or [0])} if device == "cuda" else {}
    store = ResultStore.open(settings.store)
    reader = AnalyticsReader(store.engine)
    detectors = [] if supervised else create_detectors(settings)
    stored_at: dict[str, list[int]] = {}
    received_at: dict[str, list[int]] = {}
    lock = threading.Lock()

    def on_stored(stored: Any, job: Any) -> None:
        with lock:
            stored_at.setdefault(stored.frame.car_id, []).append(time.time_ns())
            received_at.setdefault(stored.frame.car_id, []).append(job.received_at_ns)

    timings = FrameTimings()
    pipeline = (
        None if supervised else build_edge(settings, bootstrap, store, detectors=detectors, on_stored=on_stored, timings=timings)
    )
    children: list[subprocess.Popen] = []
    stop = threading.Event()
    runner = threading.Thread(target=lambda: pipeline.run(stop_when=lambda s: stop.is_set()), name="edge") if pipeline else None
    producers = [
        FrameProducer(bootstrap, settings.kafka, client_id=f"camera-{cam}", shots_per_camera=settings.line.shots_per_camera)
        for cam in range(settings.line.cameras)
    ]
    cars_measured: list[CarTiming] = []

    def wait_for(handled: int) -> None:
        assert pipeline is not None
        limit = time.monotonic() + wait_timeout_s
        while pipeline.stats.frames_handled < handled:
            if pipeline.failure is not None:
                raise RuntimeError(f"pipeline failed: {pipeline.failure}") from pipeline.failure
            if time.monotonic() > limit:
                raise TimeoutError(f"only {pipeline.stats.frames_handled}/{handled} frames handled after {wait_timeout_s:g} s")
            time.sleep(0.0005)

    def wait_for_car(car: str) -> None:
        """Several consumers: until the car's row says complete (set by whoever stored its last frame)."""
        limit = time.monotonic() + wait_timeout_s
        while True:
            try:
                if reader.car_row(car).complete:
                    return
            except NotFoundError:
                pass
            for child in children:
                if child.poll() is not None:
                    raise RuntimeError(f"edge consumer process {child.pid} exited with {child.returncode}")
            if time.monotonic() > limit:
                raise TimeoutError(f"car {car} not complete after {wait_timeout_s:g} s")
            time.sleep(0.01)

    try:
        for sampler in samplers.values():
            sampler.__enter__()
        if supervised:
            say(f"starting `inspection edge --workers {consumers}" + (f" --gpus {gpus}`" if gpus else "`"))
            children = [spawn_supervisor(settings, bootstrap, consumers, gpus, workdir or Path(tempfile.mkdtemp()))]
        else:
            assert runner is not None
            runner.start()
        if children and join_wait_s > 0:
            say(f"waiting {join_wait_s:g} s for the workers to join the group")
            time.sleep(join_wait_s)
        say("warm-up car (group join, CUDA graph capture)")
        if children:
            # A worker that joins late rebalances the group in the middle of a measured car (seen on two
            # GPUs: one car took 10.7 s). Warm up until one car's frames came from every worker: then
            # all are assigned and each has run its first batch (CUDA graph capture, compilation).
            workers = consumers * max(len(gpus or []), 1)
            for k in range(max_warmup_cars):
                warmup = f"warmup-{suffix}-{k}"
                send_car(settings, producers, warmup, jpegs, 3600.0)
                wait_for_car(warmup)
                seen = runs_storing_car(store, warmup)
                if seen >= workers:
                    break
                say(f"warm-up car {k + 1}: {seen} of {workers} workers stored frames of it; another")
            else:  # a small car may leave a worker without a partition that gets frames: measure anyway
                say(
                    f"after {max_warmup_cars} warm-up cars not every one of the {workers} workers stored frames of one; measuring anyway"
                )
        else:
            send_car(settings, producers, f"warmup-{suffix}", jpegs, 3600.0)
            wait_for(frames_per_car)
        for k in range(cars):
            car = f"bench-{suffix}-{k:02d}"
            say(f"measured car {k + 1}/{cars}")
            stats = pipeline.stats if pipeline else None
            handled_before = stats.frames_handled if stats else 0
            detections_before = stats.detections if stats else 0
            parked_before = stats.frames_parked if stats else 0
            t0, t_acked = send_car(settings, producers, car, jpegs, deadline_s)
            if children:
                wait_for_car(car)
                times = car_times_from_db(store, car)
                assert times is not None and times[0] == frames_per_car
                _, first_received, last = times
                first = first_received
            else:
                wait_for(handled_before + frames_per_car)
                # frames_handled counts a frame just before its on_stored callback runs: wait for the
                # callbacks too, or the car's last stored time can be missed (car latency too short)
                limit = time.monotonic() + 10
                while len(stored_at.get(car, [])) < frames_per_car - (pipeline.stats.frames_parked - parked_before):
                    if time.monotonic() > limit:
                        raise TimeoutError(f"car {car}: stored callbacks missing after its frames were handled")
                    time.sleep(0.0005)
                with lock:
                    last, first = max(stored_at[car]), min(stored_at[car])
                    first_received = min(received_at[car])
            summary = reader.car_row(car)
            if stats is not None:
                detections = stats.detections - detections_before
            else:
                detections = summary.detections
            cars_measured.append(
                CarTiming(
                    car_id=car,
                    frames=frames_per_car,
                    car_latency_s=(last - t0) / 1e9,
                    produce_s=(t_acked - t0) / 1e9,
                    first_stored_s=(first - t0) / 1e9,
                    pipeline_fps=frames_per_car / max((last - first_received) / 1e9, 1e-9),
                    stage_ms_per_frame={},  # filled below from every worker's marks
                    detections=detections,
                    deadline_met=summary.deadline_met,
                )
            )
    finally:
        stop.set()
        if runner is not None and runner.is_alive():
            runner.join()
        stop_consumers(children)
        for producer in producers:
            producer.close()
        for sampler in samplers.values():
            sampler.__exit__(None, None, None)
    if pipeline is not None:
        timings.commit_s, timings.commits = pipeline.stats.commit_s, pipeline.stats.commits
    parts: list[Any] = load_timings(timing_dir) if supervised else [timings]
    for car_timing in cars_measured:
        split = StageSplit.of(parts, [car_timing.car_id])
        car_timing.stage_ms_per_frame = {**split.ms_per_frame, "wall": split.wall_ms_per_frame}
    overall = StageSplit.of(parts, [t.car_id for t in cars_measured])
    owner = OwnerSplit.of(timing_dir) if supervised else None  # layout gpu_owner: the owner's side of the requests
    if owner is not None:
        say(
            f"GPU owner: {owner.requests} requests on {owner.threads} thread(s), queued {owner.queue_ms:.1f} ms "
            f"(p99 {owner.queue_p99_ms:.1f}), detect {owner.detect_ms:.1f} ms (p99 {owner.detect_p99_ms:.1f}), busy {owner.busy:.0%}"
        )
    if overall.frames:
        slowest = max(overall.p99_ms, key=overall.p99_ms.__getitem__)
        say(
            f"stage split of {overall.frames} frames: wall {overall.wall_ms_per_frame:.1f} ms/frame, slowest p99 span "
            f"{slowest} {overall.p99_ms[slowest]:.1f} ms, offset commits {overall.commit_ms_per_frame:.2f} ms/frame"
        )
    latencies = frame_latencies_ms(store, [t.car_id for t in cars_measured])
    say("bare model")
    if supervised:  # the workers are gone: the bare model gets the (default) GPU to itself
        detectors = create_detectors(
            settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"infer_workers": 1})})
        )
    bare = bare_model_ms(detectors[0], grid, grid.tiles(PhotoFrameSource(grid)(0, 0, 0)), device)
    for each in detectors:
        each.close()
    store.close()
    median_fps = statistics.median(t.pipeline_fps for t in cars_measured)
    bare_fps = 1e3 / bare if bare else None
    return E2EResult(
        model=settings.model.name,
        backend=settings.model.backend,
        precision=settings.model.precision,
        device=device,
        decode=settings.pipeline.decode,
        db=store.engine.url.render_as_string(hide_password=True),
        frames_per_car=frames_per_car,
        jpeg_bytes_mean=int(np.mean([len(j) for j in jpegs.values()])),
        cars=cars_measured,
        bare_model_ms=bare,
        bare_model_fps=bare_fps,
        pipeline_to_bare_ratio=(median_fps / bare_fps) if bare_fps else None,
        peak_gpu_mem_mib=round(max(m.peak_mib for m in samplers.values()), 1) if samplers else None,
        frame_latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
        frame_latency_p99_ms=float(np.percentile(latencies, 99)) if latencies.size else None,
        peak_gpu_mem_mib_per_gpu={str(g): round(m.peak_mib, 1) for g, m in samplers.items()},
        stage_split=asdict(overall),
        extra={
            "infer_workers": settings.pipeline.infer_workers,
            "decode_workers": settings.pipeline.decode_workers,
            "queue_size": settings.pipeline.queue_size,
            "jpeg_quality": settings.line.jpeg_quality,
            "consumers": consumers,
            "gpus": gpus,
            "workers_total": consumers * len(gpus or [0]) if supervised else 1,
            "gpu_owner": asdict(owner) if owner is not None else None,
            "timing_source": "database frame rows (inspection edge --workers)" if supervised else "in-process callbacks",
        },
    )
