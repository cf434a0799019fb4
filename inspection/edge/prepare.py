"""Prepare stage: JPEG bytes -> the detector's 64-tile batch, on the CPU or on the GPU.

Both preparers hand out batch buffers from a fixed pool (allocated once, returned with
`release` by the infer stage), so memory stays bounded and nothing is allocated per frame.
`PrepareStage` runs a preparer on each `Received` frame and answers it `Prepared` (its batch), or
`Parked` when the payload cannot be decoded (the record's fault); a GPU fault is the device's (the
consumer stops).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

import numpy as np
import simplejpeg

from ..messages.contract import FrameMessage
from ..messages.errors import ImageError, MessageError
from ..messages.images import check_frame_size, decode_image, image_size
from ..tiling import TileGrid
from .steps import Parked, Prepared, Received
from .timing import FrameClock


class FramePreparer(Protocol):
    """JPEG bytes -> the detector's tile batch; `on_device` says whether batches are GPU tensors."""

    on_device: bool

    def prepare(self, message: FrameMessage, clock: FrameClock | None = None) -> Any: ...

    def release(self, batch: Any) -> None: ...


class CpuFramePreparer:
    """libjpeg-turbo decode (strict) + one vectorised tiling copy into a pooled numpy batch."""

    on_device = False

    def __init__(self, grid: TileGrid, pool_size: int, buffers: list[np.ndarray] | None = None) -> None:
        """`buffers`: the batches to hand out (e.g. a shared-memory slab, see gpu_owner.py); default
        `pool_size` new zeroed ones."""
        self.grid = grid
        self._pool: queue.Queue[np.ndarray] = queue.Queue()
        for batch in buffers if buffers is not None else (grid.new_batch() for _ in range(pool_size)):
            self._pool.put(batch)

    def prepare(self, message: FrameMessage, clock: FrameClock | None = None) -> np.ndarray:
        frame = decode_image(message.payload, (self.grid.frame_width, self.grid.frame_height), what=f"frame {message.label}")
        if clock is not None:
            clock.mark("decoded")
        batch = self._pool.get()
        try:
            return self.grid.tiles(frame, out=batch)
        except BaseException:
            self._pool.put(batch)
            raise

    def release(self, batch: np.ndarray) -> None:
        self._pool.put(batch)


# 1/8-scale decoding still parses every entropy-coded block, so a damaged scan is caught.
_VALIDATE_SCALE = 8


class CudaFramePreparer:
    """nvJPEG decode on the GPU (torchvision) + tiling on the GPU into pooled device batches.

    Only the JPEG bytes cross PCIe (about 1.5 MB instead of a 17 MB tile batch). nvJPEG may
    decode a damaged scan without complaint, so with `validate` each frame is also decoded
    strictly at 1/8 scale on the CPU (in the prepare thread pool, in parallel) before it is used.
    """

    on_device = True

    def __init__(self, grid: TileGrid, pool_size: int, device: str = "cuda", validate: bool = True) -> None:
        import torch

        from .gpu_frames import decode_jpegs_cuda, tile_on_gpu

        self._torch = torch
        self._decode = decode_jpegs_cuda
        self._tile = tile_on_gpu
        self.grid = grid
        self.device = torch.device(device)
        self.validate = validate
        self._streams = threading.local()
        # One nvJPEG decode at a time: torchvision's CUDA decoder shares one handle between threads.
        # The CPU-side validation above it still runs in parallel across the prepare workers.
        self._gpu_lock = threading.Lock()
        self._pool: queue.Queue[Any] = queue.Queue()
        shape = (grid.num_slots, grid.tile_size, grid.tile_size, 3)
        for _ in range(pool_size):
            self._pool.put(torch.zeros(shape, dtype=torch.uint8, device=self.device))

    def _stream(self) -> Any:
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = self._torch.cuda.Stream(self.device)
        return stream

    def prepare(self, message: FrameMessage, clock: FrameClock | None = None) -> Any:
        what = f"frame {message.label}"
        expected = (self.grid.frame_width, self.grid.frame_height)
        size = image_size(message.payload)
        if size is None or message.payload[:2] != b"\xff\xd8":
            # Not a JPEG nvJPEG can take: the CPU decoder gives the precise error (or decodes a PNG).
            frame = decode_image(message.payload, expected, what=what)
            return self._tiles_from_host(frame)
        check_frame_size(message.payload, expected, what)
        if self.validate:
            try:
                simplejpeg.decode_jpeg(
                    message.payload,
                    colorspace="RGB",
                    strict=True,
                    min_width=expected[0] // _VALIDATE_SCALE,
                    min_height=expected[1] // _VALIDATE_SCALE,
                )
            except ValueError as exc:
                raise ImageError(f"{what}: corrupt JPEG of {len(message.payload)} bytes ({exc})", field="payload") from None
            if clock is not None:
                clock.mark("checked")
        batch = self._pool.get()
        try:
            with self._gpu_lock, self._torch.cuda.stream(self._stream()):
                if clock is not None:
                    clock.mark("locked")
                try:
                    (frame,) = self._decode([message.payload], device=self.device)
                except RuntimeError as exc:
                    raise ImageError(f"{what}: nvJPEG cannot decode it ({exc})", field="payload") from None
                if clock is not None:
                    self._stream().synchronize()  # decode apart from tiling in the split (one extra sync per frame)
                    clock.mark("decoded")
                self._tile(frame, self.grid, out=batch)
                self._stream().synchronize()  # the batch is complete before another stream reads it
            return batch
        except BaseException:
            self._pool.put(batch)
            raise

    def _tiles_from_host(self, frame: np.ndarray) -> Any:
        batch = self._pool.get()
        host = self._torch.from_numpy(self.grid.tiles(frame))
        batch.copy_(host)
        return batch

    def release(self, batch: Any) -> None:
        self._pool.put(batch)


def make_preparer(decode: str, grid: TileGrid, pool_size: int, device: str = "cuda") -> FramePreparer:
    if decode == "gpu":
        return CudaFramePreparer(grid, pool_size, device)
    return CpuFramePreparer(grid, pool_size)


class PrepareStage:
    """Decode and tile a received frame into a pooled batch: `Prepared`, or `Parked` when its image is bad."""

    def __init__(self, preparer: FramePreparer) -> None:
        self.preparer = preparer

    def __call__(self, received: Received) -> Prepared | Parked:
        received.clock.mark("prepare_start")
        try:
            return received.prepared(self.preparer.prepare(received.frame, received.clock))
        except MessageError as exc:  # the frame's image is bad: park it
            return received.parked(exc)
        except Exception as exc:
            if self.preparer.on_device:  # a GPU fault is the device's, not the frame's: stop
                raise
            # The CPU decoder failing in a way it does not name is still this payload's doing.
            reason = f"frame {received.frame.label}: cannot be decoded ({type(exc).__name__}: {exc})"
            return received.parked(ImageError(reason, field="payload"))
        finally:
            received.clock.mark("prepared")
