"""One process owns each GPU: the detector's one CUDA context, graph and batch queue, fed by CPU workers.

The layout `inspection edge` runs on a GPU host (`pipeline.layout` gpu_owner):

    worker 0..N-1 (processes, no CUDA): Kafka fetch, validation, JPEG decode + tiling into shared
        memory, stitch, database writes (group commit), offset commits — the unchanged `EdgePipeline`
        with a `LinkedDetector`
      ─▶ GPU owner (one process per GPU): takes (worker, slot) requests over one socket, runs the
         64-tile batch already in shared memory through its detector, answers the tile detections

Frames are handed over without copies: each worker's prepare pool *is* its slab of shared memory
(`SharedSlab`), so tiles are written once by the decoder and read once by the owner's host-to-device
copy. Only a small request tuple and the (few) detections cross the process boundary. Delivery
guarantees stay the workers' own (they store and commit); the owner holds no record.

Requests and answers travel over one Unix-socket connection per worker *process* (`GpuLink`), opened
when the worker starts and gone with it: a SIGKILLed worker leaves nothing behind that its successor
could trip on. (A multiprocessing queue shared across restarts did: a worker killed while it waited in
`get` kept the queue's lock held forever, and its successor timed out on its first frame.) The owner
listens only once its detector is warm, so connecting is the readiness check; an owner that dies closes
every connection, so its workers fail at once (their frames are redelivered) and the supervisor restarts it.

The owner ignores SIGTERM/SIGINT: the supervisor stops it (a stop message) after every worker drained,
so in-flight frames still get their detections. A worker waiting longer than `timeout_s` for an answer
fails (its frames are redelivered).
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
from multiprocessing import AuthenticationError, shared_memory
from multiprocessing.connection import Client, Connection, Listener
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
    worker, and the owner's socket. On a worker's connection: first `("worker", index)`, then requests
    `(request id, byte offset, tiles, score threshold, sent ns)`, each answered `(request id, arrays | error
    text)`; the supervisor's `("stop",)` ends the owner once what is queued is answered."""

    slabs: tuple[str, ...]  # shared-memory names, one per worker of this GPU
    slots: int
    batch_shape: tuple[int, int, int, int]
    address: str  # the owner's Unix socket; it listens once its detector is warm
    authkey: bytes
    timeout_s: float = 120.0
    ready_timeout_s: float = 900.0  # building the owner's detector (CUDA graphs, torch.compile)

    def connect(self) -> Connection:
        """A connection to the owner; ConnectionError / FileNotFoundError while it is not listening."""
        return Client(self.address, family="AF_UNIX", authkey=self.authkey)

    def stop_owner(self) -> bool:
        """Ask the owner to answer what is queued and end; False when it is not listening."""
        try:
            with self.connect() as conn:
                conn.send(("stop",))
        except (OSError, EOFError):
            return False
        return True


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


def create_link(grid: TileGrid, workers: int, slots: int, timeout_s: float, address: str) -> tuple[GpuLink, list[SharedSlab]]:
    """The shared memory of one GPU with `workers` workers and its owner's socket address (the supervisor
    owns and unlinks the slabs and the socket's directory)."""
    shape = (grid.num_slots, grid.tile_size, grid.tile_size, 3)
    slabs = [SharedSlab.create(slots, shape) for _ in range(workers)]
    link = GpuLink(
        slabs=tuple(s.memory.name for s in slabs),
        slots=slots,
        batch_shape=shape,
        address=address,
        authkey=os.urandom(32),
        timeout_s=timeout_s,
    )
    return link, slabs


def serve_gpu(settings: Settings, link: GpuLink, gpu: int | None) -> None:
    """GPU owner process body: `pipeline.infer_workers` detector threads (one CUDA graph and stream each, so one
    frame's post-processing overlaps the next one's network) answer the workers' requests until a stop message."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # stopped by the supervisor once the workers drained
    from ..logs import configure_logging

    configure_logging(settings.logging.format)
    slabs = [SharedSlab.attach(name, link.slots, link.batch_shape) for name in link.slabs]
    timings = OwnerTimings() if settings.pipeline.timing_dir else None
    work: queue.Queue[Any] = queue.Queue()
    servers = [
        _OwnerThread(create_detector(settings.model, settings.detect), link, slabs, work, k, timings)
        for k in range(settings.pipeline.infer_workers)
    ]
    for server in servers:
        server.warmup()
    pinned = servers[0].pin(slabs)
    intake = _Intake(link, work)
    intake.listen()  # workers connect from now on: the detector is warm
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
        intake.close()
        for server in servers:
            server.detector.close()
        for slab in slabs:
            slab.close()
        if timings is not None and settings.pipeline.timing_dir:
            log.info("GPU owner: %d requests timed in %s", len(timings.rows), timings.dump(Path(settings.pipeline.timing_dir)))


class _Channel:
    """One worker process's connection, as the owner sees it: answers are sent under its lock, and
    nothing is sent once it is closed (the worker ended; its frames go to its successor)."""

    def __init__(self, conn: Connection, worker: int) -> None:
        self.conn = conn
        self.worker = worker
        self.lock = threading.Lock()

    def answer(self, message: tuple[int, Any]) -> None:
        with self.lock:
            if self.conn.closed:
                return
            try:
                self.conn.send(message)
            except OSError:  # the worker died after asking
                pass

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Intake:
    """The owner's socket: accepts worker connections and queues their requests for the detector threads
    (one reader thread per connection; a `None` on the work queue is the stop)."""

    def __init__(self, link: GpuLink, work: queue.Queue[Any]) -> None:
        self.link = link
        self.work = work
        self._listener: Listener | None = None

    def listen(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.link.address)  # the socket of an owner that died
        self._listener = Listener(self.link.address, family="AF_UNIX", authkey=self.link.authkey)
        threading.Thread(target=self._accept, args=(self._listener,), name="owner-accept", daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()

    def _accept(self, listener: Listener) -> None:
        while True:
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError, ConnectionError):  # a stranger, or a client gone mid-handshake
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._read, args=(conn,), name="owner-read", daemon=True).start()

    def _read(self, conn: Connection) -> None:
        channel: _Channel | None = None
        try:
            hello = conn.recv()
            if hello == ("stop",):
                self.work.put(None)
                return
            _, worker = hello
            channel = _Channel(conn, int(worker))
            while True:
                self.work.put((channel, conn.recv()))
        except (EOFError, OSError, TypeError, ValueError):  # the worker ended (or spoke nonsense)
            pass
        finally:
            if channel is not None:
                channel.close()
            else:
                conn.close()


class _OwnerThread:
    """One detector of the owner: tiles from a slab to the device (straight from the page-locked slab when
    the backend takes device batches), detect, answer."""

    def __init__(
        self,
        detector: Detector,
        link: GpuLink,
        slabs: list[SharedSlab],
        work: queue.Queue[Any],
        index: int = 0,
        timings: OwnerTimings | None = None,
    ) -> None:
        self.detector = detector
        self.link = link
        self.slabs = slabs
        self.work = work
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
            item = self.work.get()
            if item is None:
                self.work.put(None)  # the owner's other threads stop too
                return
            taken_ns = time.perf_counter_ns()
            channel, (request_id, offset, count, threshold, sent_ns) = item
            tiles = np.ndarray(
                (count, *self.link.batch_shape[1:]), np.uint8, buffer=self.slabs[channel.worker].memory.buf, offset=offset
            )
            try:
                found = self._detect(tiles, threshold)
                answer: Any = (found.xyxy, found.score, found.class_id, found.tile_index)
            except Exception as exc:  # the worker raises it: its pipeline stops (a detector failure)
                answer = f"GPU owner: {type(exc).__name__}: {exc}"
            if self.timings is not None:
                self.timings.add(sent_ns, taken_ns, time.perf_counter_ns(), self.index)
            channel.answer((request_id, answer))

    def _detect(self, tiles: np.ndarray, threshold: float | None) -> Detections:
        if self._device_batch is None:
            return self.detector.detect(tiles, threshold)
        import torch

        device = self._device_batch[: len(tiles)]
        with torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext():
            device.copy_(torch.from_numpy(tiles), non_blocking=True)  # ordered before the detector's work on this stream
            return self.detector.detect_tensor(device, threshold)


class LinkedDetector(Detector):
    """A worker's detector: tiles in its shared slab go to the GPU owner, detections come back over this
    process's own connection (opened by `warmup`).

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
        self._conn: Connection | None = None

    @property
    def pool(self) -> list[np.ndarray]:
        """The slots the worker's preparer hands out (all but the last, kept for copies)."""
        return self.slab.batches[:-1]

    def warmup(self, tile_hw: tuple[int, int]) -> None:
        """Connect once the owner listens (its detector is warm), so this worker joins the group ready to detect."""
        deadline = time.monotonic() + self.link.ready_timeout_s
        while self._conn is None:
            try:
                conn = self.link.connect()
            except (FileNotFoundError, ConnectionError):  # not listening yet (building, warming, restarting)
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the GPU owner was not ready within {self.link.ready_timeout_s:g} s") from None
                time.sleep(0.1)
                continue
            conn.send(("worker", self.worker))
            self._conn = conn

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        if self._conn is None:
            raise RuntimeError("not connected to the GPU owner (warmup connects)")
        offset = self.slab.offset_of(tiles)
        if offset is None:
            spare = self.slab.batches[-1][: len(tiles)]
            spare[...] = tiles
            offset = self.slab.offset_of(spare)
        request_id = next(self._ids)
        try:
            self._conn.send((request_id, offset, len(tiles), score_threshold, time.perf_counter_ns()))
            if not self._conn.poll(self.link.timeout_s):
                raise RuntimeError(f"the GPU owner did not answer within {self.link.timeout_s:g} s")
            answered, answer = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"the GPU owner closed the link ({type(exc).__name__}): it stopped or died") from None
        if answered != request_id:
            raise RuntimeError(f"the GPU owner answered request {answered} to request {request_id}")
        if isinstance(answer, str):
            raise RuntimeError(answer)
        return Detections(*answer)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.slab.close()
