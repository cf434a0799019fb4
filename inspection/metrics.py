"""Prometheus metrics of one edge pipeline, on a registry of its own (no process-global state).

Counters and histograms of frames and cars, plus what watching the line needs:
- `inspection_consumer_lag{topic,partition}`: records behind the partition's high watermark, per
  assigned partition (librdkafka statistics, refreshed every `health.lag_interval_s`);
- `inspection_queue_depth{stage}`: frames waiting for `detect`, waiting for `store`, and polled but
  not yet committable (`uncommitted`), read at scrape time;
- `inspection_cars{state}`: cars not complete yet, `in_flight` or `overdue` (the same database
  numbers on every consumer: aggregate with max, not sum); `inspection_cars_marked_overdue_total`
  counts the cars this consumer found overdue (each car is counted by one consumer only);
- `inspection_last_progress_timestamp_seconds`: when this consumer last handled a frame;
- `inspection_image_disk_bytes{kind}`: used / free / total bytes of the file system holding the
  image directory (when the consumer keeps images).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames_received = Counter("inspection_frames_received", "Kafka records polled", registry=r)
        self.frames_stored = Counter("inspection_frames_stored", "frames whose detections are stored", registry=r)
        self.frames_parked = Counter("inspection_frames_parked", "records sent to the dead-letter topic", ["kind"], registry=r)
        self.detections = Counter("inspection_detections", "detections stored", registry=r)
        self.cars_completed = Counter("inspection_cars_completed", "cars whose last frame was stored", ["deadline"], registry=r)
        self.frame_latency = Histogram(
            "inspection_frame_latency_seconds", "capture -> stored", buckets=LATENCY_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "inspection_stage_seconds", "time per frame in each stage", ["stage"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.consumer_lag = Gauge(
            "inspection_consumer_lag",
            "records behind the high watermark, per assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.queue_depth = Gauge("inspection_queue_depth", "frames waiting per stage", ["stage"], registry=r)
        self.cars = Gauge("inspection_cars", "cars not complete yet, by state (in_flight, overdue)", ["state"], registry=r)
        self.cars_marked_overdue = Counter(
            "inspection_cars_marked_overdue", "cars this consumer found past their deadline with frames missing", registry=r
        )
        self.last_progress = Gauge(
            "inspection_last_progress_timestamp_seconds",
            "when this consumer last handled (stored or parked) a frame",
            registry=r,
        )
        self.image_disk_bytes = Gauge(
            "inspection_image_disk_bytes", "file system of the image directory: used, free, total bytes", ["kind"], registry=r
        )

    def watch_queues(self, depths: dict[str, Callable[[], float]]) -> None:
        """Read each stage's queue depth at scrape time (stage -> callable)."""
        for stage, read in depths.items():
            self.queue_depth.labels(stage).set_function(read)

    def watch_disk(self, directory: Path) -> None:
        """Report the file system holding `directory` at scrape time (statvfs: cheap, no tree walk)."""

        def part(kind: str) -> Callable[[], float]:
            def read() -> float:
                try:
                    usage = shutil.disk_usage(directory)
                except OSError:
                    return float("nan")
                return float(getattr(usage, kind))

            return read

        for kind in ("used", "free", "total"):
            self.image_disk_bytes.labels(kind).set_function(part(kind))

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Replace the lag gauges with those of the currently assigned partitions."""
        self.consumer_lag.clear()
        for (topic, partition), value in lag.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)
