"""The edge's one composition root: every way of running the edge builds its pipeline here.

`build_edge` is called by the `inspection edge` command (one in-process consumer), each worker
process of the supervisor (`edge --workers`, both layouts), `inspection demo` and the end-to-end
benchmark. It picks the detector and the frame preparer from the settings and the worker's
`GpuLink` (layout gpu_owner: the detector is the GPU owner behind shared memory, tiles are decoded
on the CPU straight into the shared slab), and wires the stages (`EdgePipeline`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..config import Settings
from ..detect import Detector
from ..store import ResultStore, StoredFrame
from ..tiling import TileGrid
from .gpu_owner import GpuLink, LinkedDetector
from .pipeline import EdgePipeline, create_detectors
from .prepare import CpuFramePreparer
from .steps import Final
from .timing import FrameTimings


def build_edge(
    settings: Settings,
    bootstrap: str,
    store: ResultStore,
    *,
    detectors: Sequence[Detector] | None = None,
    link: GpuLink | None = None,
    link_index: int = 0,
    on_stored: Callable[[StoredFrame, Final], None] | None = None,
    timings: FrameTimings | None = None,
    consumer_overrides: dict[str, Any] | None = None,
) -> EdgePipeline:
    """One edge consumer. `detectors`: already built ones (default: `pipeline.infer_workers` of the
    configured model); `link`: this worker's share of a GPU owner (layout gpu_owner) instead."""
    if link is None:
        return EdgePipeline(
            settings,
            list(detectors) if detectors is not None else create_detectors(settings),
            store,
            bootstrap,
            on_stored=on_stored,
            timings=timings,
            consumer_overrides=consumer_overrides,
        )
    detector = LinkedDetector(settings, link, link_index)
    settings = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"decode": "cpu", "infer_workers": 1})}
    )
    preparer = CpuFramePreparer(TileGrid.from_config(settings.grid), 0, buffers=detector.pool)
    return EdgePipeline(
        settings,
        detector,
        store,
        bootstrap,
        preparer=preparer,
        on_stored=on_stored,
        timings=timings,
        consumer_overrides=consumer_overrides,
    )
