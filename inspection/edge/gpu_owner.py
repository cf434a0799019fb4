"""One process owns each GPU: the detector's one CUDA context, graph and batch queue, fed by CPU workers.

The layout `inspection edge` runs on a GPU host (`pipeline.layout` gpu_owner):

    worker 0..N-1 (processes, no CUDA): Kafka fetch, validation, JPEG decode + tiling into shared
        memory, stitch, database writes (group commit), offset commits — the unchanged `EdgePipeline`
        with a `LinkedDetector`
      ─▶ GPU owner (one process per GPU): takes (worker, slot) requests from one queue, runs the
         64-tile batch already in shared memory through its detector, answers the tile detections

Frames are handed over without copies: each worker's prepare pool *is* its slab of shared memory
(`SharedSlab`), so tiles are written once by the decoder and read once by the owner's host-to-device
copy. Only a small request tuple and the (few) detections cross the process boundary. Delivery
guarantees stay the workers' own (they store and commit); the owner holds no record.

The owner ignores SIGTERM/SIGINT: the supervisor stops it (a `None` request) after every worker drained,
so in-flight frames still get their detections. A worker waiting longer than `timeout_s` for an answer
fails (its frames are redelivered), and the supervisor restarts an owner that died.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..detect import Detector, create_detector, load_spec
from ..detections import Detections
from ..tiling import TileGrid
from .timing import OwnerTimings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuLink:
    """What a worker and its GPU's owner share (pickled to both): one slab of `slots` tile batches per
    worker, one request queue, one answer queue per worker."""

    slabs: tuple[str, ...]  # shared-memory names, one per worker of this GPU
    slots: int
    batch_shape: tuple[int, int, int, int]
    requests: Any  # multiprocessing queue of (worker, request id, byte offset, tiles, score threshold, sent ns) or None
    answers: tuple[Any, ...]  # one multiprocessing queue per worker: (request id, arrays | error text)
    ready: Any  # multiprocessing event: the owner's detector is built and warm
    timeout_s: float = 120.0
    ready_timeout_s: float = 900.0  # building the owner's detector (CUDA graphs, torch.compile)


def slab_bytes(link_slots: int, batch_shape: tuple[int, ...]) -> int:
    return link_slots * int(np.prod(batch_shape))


class SharedSlab:
    """A worker's tile batches in one shared-memory block: `batches[i]` is slot i (numpy views)."""

    def __init__(self, memory: shared_memory.SharedMemory, slots: int, batch_shape: tuple[int, int, int, int]) -> None:
        self.memory = memory
        self.batch_shape = batch_shape
        self.array = np.ndarray((slots, *batch_shape), dtype=np.uint8, buffer=memory.buf)
        self.batches = [self.array[i] for i in range(slots)]
        self.base = self.array.__array_interface__["data"][0]

    @classmethod
    def create(cls, slots: int, batch_shape: tuple[int, int, int, int]) -> SharedSlab:
        memory = shared_memory.SharedMemory(create=True, size=slab_bytes(slots, batch_shape))
        slab = cls(memory, slots, batch_shape)
        slab.array[...] = 0  # blank tiles stay zero when reused; touches every page now, not mid-car
        return slab

    @classmethod
    def attach(cls, name: str, slots: int, batch_shape: tuple[int, int, int, int]) -> SharedSlab:
        """Another process's slab; it stays the creator's to unlink (spawned children share its resource
        tracker, so registering the name again changes nothing)."""
        try:
            memory = shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]  # Python >= 3.13
        except TypeError:
            memory = shared_memory.SharedMemory(name=name)
        return cls(memory, slots, batch_shape)

    def offset_of(self, tiles: np.ndarray) -> int | None:
        """Byte offset of `tiles` in this slab when it is a C-contiguous view of it, else None."""
        start = tiles.__array_interface__["data"][0] - self.base
        if tiles.flags.c_contiguous and 0 <= start and start + tiles.nbytes <= self.array.nbytes:
            return start
        return None

    def close(self) -> None:
        self.batches.clear()
        del self.array
        try:
            self.memory.close()
        except BufferError:  # a view is still referenced somewhere; the mapping goes with the process
            pass


def create_link(ctx: Any, grid: TileGrid, workers: int, slots: int, timeout_s: float) -> tuple[GpuLink, list[SharedSlab]]:
    """The shared memory and queues of one GPU with `workers` workers (the supervisor owns and unlinks the slabs)."""
    shape = (grid.num_slots, grid.tile_size, grid.tile_size, 3)
    slabs = [SharedSlab.create(slots, shape) for _ in range(workers)]
    link = GpuLink(
        slabs=tuple(s.memory.name for s in slabs),
        slots=slots,
        batch_shape=shape,
        requests=ctx.Queue(),
        answers=tuple(ctx.Queue() for _ in range(workers)),
        ready=ctx.Event(),
        timeout_s=timeout_s,
    )
    return link, slabs


def serve_gpu(settings: Settings, link: GpuLink, gpu: int | None) -> None:
    """GPU owner process body: `pipeline.infer_workers` detector threads (one CUDA graph and stream each, so one
    frame's post-processing overlaps the next one's network) answer requests until a `None` request."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # stopped by the supervisor once the workers drained
    from ..logs import configure_logging

    configure_logging(settings.logging.format)
    slabs = [SharedSlab.attach(name, link.slots, link.batch_shape) for name in link.slabs]
    timings = OwnerTimings() if settings.pipeline.timing_dir else None
    servers = [
        _OwnerThread(create_detector(settings.model, settings.detect), link, slabs, k, timings)
        for k in range(settings.pipeline.infer_workers)
    ]
    for server in servers:
        server.warmup()
    pinned = servers[0].pin(slabs)
    link.ready.set()
    log.info(
        "GPU owner%s ready: %d detector thread(s), %s/%s, %d workers, shared slabs %s",
        f" (gpu {gpu})" if gpu is not None else "",
        len(servers),
        settings.model.backend,
        settings.model.precision,
        len(slabs),
        "page-locked" if pinned else "pageable",
    )
    threads = [threading.Thread(target=server.serve, name=f"owner-{k}") for k, server in enumerate(servers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for server in servers:
            server.detector.close()
        for slab in slabs:
            slab.close()
        if timings is not None and settings.pipeline.timing_dir:
            log.info("GPU owner: %d requests timed in %s", len(timings.rows), timings.dump(Path(settings.pipeline.timing_dir)))


class _OwnerThread:
    """One detector of the owner: tiles from a slab to the device (straight from the page-locked slab when
    the backend takes device batches), detect, answer."""

    def __init__(
        self, detector: Detector, link: GpuLink, slabs: list[SharedSlab], index: int = 0, timings: OwnerTimings | None = None
    ) -> None:
        self.detector = detector
        self.link = link
        self.slabs = slabs
        self.index = index
        self.timings = timings
        self._device_batch: Any = None
        self._stream: Any = None

    def warmup(self) -> None:
        self.detector.warmup((self.link.batch_shape[1], self.link.batch_shape[2]))
        if self.detector.takes_device_batches:
            import torch

            self._device_batch = torch.empty(self.link.batch_shape, dtype=torch.uint8, device=self.detector.device)
            if self._device_batch.device.type == "cuda":  # each thread its own stream: their work overlaps
                self._stream = torch.cuda.Stream(self._device_batch.device)

    def pin(self, slabs: list[SharedSlab]) -> bool:
        """Page-lock the slabs for direct DMA (cudaHostRegister); False where that is refused or not CUDA."""
        if self._device_batch is None or self._device_batch.device.type != "cuda":
            return False
        import torch

        cudart = torch.cuda.cudart()
        try:
            return all(int(cudart.cudaHostRegister(slab.base, slab.array.nbytes, 0)) == 0 for slab in slabs)
        except (AttributeError, RuntimeError, TypeError):  # a torch without the binding: pageable copies
            return False

    def serve(self) -> None:
        while True:
            request = self.link.requests.get()
            if request is None:
                self.link.requests.put(None)  # the owner's other threads stop too
                return
            taken_ns = time.perf_counter_ns()
            worker, request_id, offset, count, threshold, sent_ns = request
            tiles = np.ndarray((count, *self.link.batch_shape[1:]), np.uint8, buffer=self.slabs[worker].memory.buf, offset=offset)
            try:
                found = self._detect(tiles, threshold)
                answer: Any = (found.xyxy, found.score, found.class_id, found.tile_index)
            except Exception as exc:  # the worker raises it: its pipeline stops (a detector failure)
                answer = f"GPU owner: {type(exc).__name__}: {exc}"
            if self.timings is not None:
                self.timings.add(sent_ns, taken_ns, time.perf_counter_ns(), self.index)
            self.link.answers[worker].put((request_id, answer))

    def _detect(self, tiles: np.ndarray, threshold: float | None) -> Detections:
        if self._device_batch is None:
            return self.detector.detect(tiles, threshold)
        import torch

        device = self._device_batch[: len(tiles)]
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            device.copy_(torch.from_numpy(tiles), non_blocking=True)  # ordered before the detector's work on this stream
            return self.detector.detect_tensor(device, threshold)


class LinkedDetector(Detector):
    """A worker's detector: tiles in its shared slab go to the GPU owner, detections come back.

    Tiles that are not a view of the slab (a warm-up batch) are copied into its last slot first.
    """

    backend = "gpu-owner"  # replaced per instance by the owner's backend

    def __init__(self, settings: Settings, link: GpuLink, worker: int) -> None:
        self.spec = load_spec(settings.model.name)
        self.backend = settings.model.backend  # type: ignore[misc]  # the owner's backend, for the run row
        self.precision = settings.model.precision
        self.link = link
        self.worker = worker
        self.slab = SharedSlab.attach(link.slabs[worker], link.slots, link.batch_shape)
        self._ids = itertools.count()

    @property
    def pool(self) -> list[np.ndarray]:
        """The slots the worker's preparer hands out (all but the last, kept for copies)."""
        return self.slab.batches[:-1]

    def warmup(self, tile_hw: tuple[int, int]) -> None:
        """Wait until the owner's detector is warm, so this worker joins the group ready to detect."""
        if not self.link.ready.wait(self.link.ready_timeout_s):
            raise RuntimeError(f"the GPU owner was not ready within {self.link.ready_timeout_s:g} s")

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        offset = self.slab.offset_of(tiles)
        if offset is None:
            spare = self.slab.batches[-1][: len(tiles)]
            spare[...] = tiles
            offset = self.slab.offset_of(spare)
        request_id = next(self._ids)
        self.link.requests.put((self.worker, request_id, offset, len(tiles), score_threshold, time.perf_counter_ns()))
        while True:
            try:
                answered, answer = self.link.answers[self.worker].get(timeout=self.link.timeout_s)
            except queue.Empty:
                raise RuntimeError(f"the GPU owner did not answer within {self.link.timeout_s:g} s") from None
            if answered == request_id:  # an older id: the answer to a predecessor of this worker
                break
        if isinstance(answer, str):
            raise RuntimeError(answer)
        return Detections(*answer)

    def close(self) -> None:
        self.slab.close()
