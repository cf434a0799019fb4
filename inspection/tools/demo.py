"""`inspection demo`: the whole system on one machine with the embedded defaults.

Embedded Kafka-protocol broker -> topics -> one car on the simulated line (real photographs, no
dataset needed) -> one edge consumer on the configured backend -> SQLite (or --db) -> a per-car
table and an optional JSON report that is read back from the database.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..analytics import AnalyticsReader
from ..analytics.models import CarRow
from ..config import Settings
from ..edge import PipelineStats, create_detectors
from ..edge.compose import build_edge
from ..extras import require
from ..kafka import EmbeddedBroker, FrameProducer, check_reachable, ensure_topics
from ..rules.verdict import stored_verdicts, verdict_writer
from ..store import ResultStore
from ..tiling import TileGrid

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    cars: list[CarRow]
    stats: PipelineStats
    produced_at_ns: dict[str, int]  # car -> first frame handed to the producer
    stored_at_ns: dict[str, int]  # car -> last frame stored
    db: str
    backend: str
    bootstrap: str
    embedded_broker: bool
    wall_s: float
    verdicts: dict[str, str] = field(default_factory=dict)  # car -> inspection verdict

    def car_latency_s(self, car_id: str) -> float | None:
        """First frame produced -> last frame stored (wall clock)."""
        if car_id not in self.produced_at_ns or car_id not in self.stored_at_ns:
            return None
        return (self.stored_at_ns[car_id] - self.produced_at_ns[car_id]) / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "cars": [
                {
                    "car_id": c.car_id,
                    "frames": c.frames_stored,
                    "frames_expected": c.frames_expected,
                    "errors": c.errors,
                    "detections": c.detections,
                    "mean_frame_latency_s": c.mean_frame_latency_s,
                    "max_frame_latency_s": c.max_frame_latency_s,
                    "car_latency_s": self.car_latency_s(c.car_id),
                    "deadline_s": c.deadline_s,
                    "deadline_met": c.deadline_met,
                    "lateness_s": c.lateness_s,
                    "state": c.verdict,  # met | missed | overdue | in_flight
                    "verdict": self.verdicts.get(c.car_id),  # ok | ng | incomplete | error (None: no rules)
                }
                for c in self.cars
            ],
            "db": self.db,
            "backend": self.backend,
            "bootstrap": self.bootstrap,
            "embedded_broker": self.embedded_broker,
            "frames_stored": self.stats.frames_stored,
            "frames_parked": self.stats.frames_parked,
            "frames_per_s": self.stats.frames_handled / self.wall_s if self.wall_s else None,
            "stage_totals_s": self.stats.stage_totals_s,
            "wall_s": self.wall_s,
        }


def dashboard_hint(settings: Settings) -> str:
    """The command that opens the dashboard on what the demo wrote."""
    import shlex

    images = settings.store.image_dir
    return shlex.join(["inspection", "dashboard", "--db", settings.store.url, *(["--images", str(images)] if images else [])])


def start_demo_dashboard(settings: Settings, port: int = 8050) -> Any:  # port 0: any free one
    """The dashboard on 127.0.0.1 over the demo's database (schema created first), on a background thread."""
    require("fastapi", "dashboard", "the demo's dashboard (--serve)")
    from ..dashboard import DashboardConfig, DashboardServer
    from ..store import upgrade_database

    upgrade_database(settings.store.url)
    if settings.store.image_dir is not None:
        settings.store.image_dir.mkdir(parents=True, exist_ok=True)
    return DashboardServer(DashboardConfig.from_settings(settings, host="127.0.0.1", port=port)).start()


@contextlib.contextmanager
def kafka_cluster(settings: Settings) -> Iterator[tuple[str, bool]]:
    """The configured cluster (checked reachable), or the embedded broker, stopped on exit."""
    if settings.kafka.bootstrap_servers:
        check_reachable(settings.kafka.bootstrap_servers, timeout=settings.kafka.connect_timeout_s)
        yield settings.kafka.bootstrap_servers, False
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers, True


def run_demo(
    settings: Settings,
    cars: int = 1,
    realtime: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    from synthetic.line import LineSimulator
    from synthetic.photos import PhotoFrameSource

    grid = TileGrid.from_config(settings.grid)
    expected = cars * settings.line.frames_per_car
    detectors = create_detectors(settings)
    store = ResultStore.open(settings.store)
    store.verdicts = verdict_writer(settings)
    reader = AnalyticsReader(store.engine)
    start_car = reader.counts().cars + 1  # a re-run into the same database gets new car ids
    produced_at: dict[str, int] = {}
    stored_at: dict[str, int] = {}
    started = time.monotonic()
    try:
        with kafka_cluster(settings) as (bootstrap, embedded):
            ensure_topics(bootstrap, settings.kafka)

            def on_stored(stored: Any, job: Any) -> None:
                stored_at[stored.frame.car_id] = time.time_ns()
                if on_progress:
                    on_progress(pipeline.stats.frames_handled, expected)

            pipeline = build_edge(settings, bootstrap, store, detectors=detectors, on_stored=on_stored)
            failure: list[BaseException] = []

            def produce() -> None:
                try:
                    with FrameProducer(bootstrap, settings.kafka, shots_per_camera=settings.line.shots_per_camera) as producer:
                        sim = LineSimulator(settings.line, PhotoFrameSource(grid), producer)
                        sim.run(
                            cars,
                            start_car=start_car,
                            realtime=realtime,
                            on_frame=lambda f: produced_at.setdefault(f.car_id, f.produced_at_ns),
                        )
                except BaseException as exc:  # surfaced after the pipeline stops
                    failure.append(exc)
                    pipeline.stop()

            producer_thread = threading.Thread(target=produce, name="line", daemon=True)
            producer_thread.start()
            stats = pipeline.run(stop_when=lambda s: s.frames_handled >= expected)
            producer_thread.join()
            if failure:
                raise failure[0]
        car_ids = sorted(produced_at)
        summaries = [reader.car_row(c) for c in car_ids]
        verdicts = stored_verdicts(store.engine, car_ids)
    finally:
        store.close()
        for detector in detectors:
            detector.close()
    return DemoResult(
        cars=summaries,
        stats=stats,
        produced_at_ns=produced_at,
        stored_at_ns=stored_at,
        db=settings.store.url,
        backend=f"{settings.model.backend}/{settings.model.precision}",
        bootstrap=bootstrap,
        embedded_broker=embedded,
        wall_s=time.monotonic() - started,
        verdicts=verdicts,
    )
