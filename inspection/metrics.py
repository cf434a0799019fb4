"""Prometheus metrics of one edge pipeline, on a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

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

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose /metrics over HTTP for Prometheus to scrape."""
        start_http_server(port, addr=addr, registry=self.registry)
