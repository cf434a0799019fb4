"""INT8 calibration for TensorRT, fed with real tiles.

Three layers, so the logic can be tested without TensorRT or a GPU:
- `CalibrationBatches`: any iterable of (n, T, T, 3) uint8 tile batches -> float32 network-input
  batches of exactly `batch_size` (re-chunked across source batches, preprocessed as the model's
  metadata says), at most `max_batches`;
- `CalibrationCache` (file) and `CalibratorCore` (the calibrator protocol over an `upload`
  function that puts a batch on the device and returns its address);
- `make_entropy_calibrator`: a `tensorrt.IInt8EntropyCalibrator2` around a core, uploading with pycuda.
Tile sources: `tile_batches_from_images` (line frames are tiled by the grid, other images are
resized to one tile, as the COCO evaluation does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..tiling import TileGrid
from .base import ModelSpec
from .engine import write_atomic
from .preprocess import to_network_input


class CalibrationBatches:
    """Re-chunks tile batches into fixed-size, preprocessed calibration batches.

    Each iteration starts over from `source` (so it must be re-iterable, e.g. a list, for more
    than one pass). A final remainder smaller than `batch_size` is dropped: TensorRT calibrates
    with one fixed batch shape.
    """

    def __init__(self, source: Iterable[np.ndarray], spec: ModelSpec, batch_size: int = 16, max_batches: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"calibration batch_size must be >= 1, got {batch_size}")
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        self.source = source
        self.spec = spec
        self.batch_size = batch_size
        self.max_batches = max_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        count = 0
        emitted = 0
        for index, tiles in enumerate(self.source):
            tiles = np.asarray(tiles)
            if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
                raise ValueError(f"calibration batch {index} must be (n, T, T, 3) uint8 tiles, got {tiles.shape} {tiles.dtype}")
            if pending and tiles.shape[1:] != pending[0].shape[1:]:
                raise ValueError(f"calibration batch {index} has tiles of {tiles.shape[1:3]}, earlier batches {pending[0].shape[1:3]}")
            pending.append(tiles)
            count += len(tiles)
            while count >= self.batch_size:
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield np.ascontiguousarray(to_network_input(joined[: self.batch_size], self.spec))
                emitted += 1
                if self.max_batches is not None and emitted >= self.max_batches:
                    return
                rest = joined[self.batch_size:]
                pending = [rest] if len(rest) else []
                count = len(rest)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of each yielded batch (the network input of `batch_size` tiles)."""
        ih, iw = self.spec.input_size
        return (self.batch_size, 3, ih, iw) if self.spec.layout == "NCHW" else (self.batch_size, ih, iw, 3)


class CalibrationCache:
    """TensorRT's calibration table as a file: read (None when absent or empty), written atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> bytes | None:
        if self.path.is_file():
            data = self.path.read_bytes()
            return data or None
        return None

    def write(self, data: bytes | memoryview) -> None:
        write_atomic(self.path, bytes(data))


class CalibratorCore:
    """The INT8 calibrator protocol (get_batch_size / get_batch / read / write cache) over plain
    Python: `upload(batch)` copies a float32 batch to the device and returns its address.

    With no batches (None) the core only serves an existing cache; TensorRT then asks for none.
    """

    def __init__(self, batches: Iterable[np.ndarray] | None, batch_size: int, cache: CalibrationCache, upload: Callable[[np.ndarray], int]) -> None:
        self.batch_size = batch_size
        self.cache = cache
        self.upload = upload
        self._iterator: Iterator[np.ndarray] | None = iter(batches) if batches is not None else None
        self.batches_served = 0

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: Sequence[str]) -> list[int] | None:
        """Device addresses of the next batch (one per input name), or None when calibration data ends."""
        if self._iterator is None:
            return None
        batch = next(self._iterator, None)
        if batch is None:
            self._iterator = None
            return None
        if len(names) != 1:
            raise ValueError(f"calibration feeds one input tensor, the network asks for {list(names)}")
        if batch.shape[0] != self.batch_size or batch.dtype != np.float32:
            raise ValueError(f"calibration batch is {batch.shape} {batch.dtype}, expected {self.batch_size} float32 rows")
        self.batches_served += 1
        return [int(self.upload(np.ascontiguousarray(batch)))]

    def read_calibration_cache(self) -> bytes | None:
        return self.cache.read()

    def write_calibration_cache(self, data: bytes | memoryview) -> None:
        self.cache.write(data)


def make_entropy_calibrator(batches: CalibrationBatches | None, cache_path: str | Path, batch_size: int | None = None) -> Any:
    """A `tensorrt.IInt8EntropyCalibrator2` feeding `batches` (real tiles) through one device
    buffer (pycuda, allocated at the first batch), reading/writing the cache at `cache_path`.

    batches None: a calibrator that only serves an existing cache (rebuilds without images).
    Needs TensorRT and pycuda, and a current CUDA context (`engine.cuda_primary_context`).
    """
    import pycuda.driver as cuda
    import tensorrt as trt

    size = batch_size if batch_size is not None else (batches.batch_size if batches is not None else 1)
    cache = CalibrationCache(cache_path)
    if batches is None and cache.read() is None:
        raise FileNotFoundError(f"no INT8 calibration cache at {cache_path}; calibrate with real tiles (--calibration-images)")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device_buffer: Any = None
            self.core = CalibratorCore(batches, size, cache, self._upload)

        def _upload(self, batch: np.ndarray) -> int:
            if self.device_buffer is None:
                self.device_buffer = cuda.mem_alloc(batch.nbytes)
            cuda.memcpy_htod(self.device_buffer, batch)
            return int(self.device_buffer)

        def get_batch_size(self) -> int:
            return self.core.get_batch_size()

        def get_batch(self, names: Sequence[str], *_: Any) -> list[int] | None:
            return self.core.get_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return self.core.read_calibration_cache()

        def write_calibration_cache(self, cache_data: Any) -> None:
            self.core.write_calibration_cache(cache_data)

    return EntropyCalibrator()


def tile_batches_from_images(paths: Iterable[str | Path], grid: TileGrid, images_per_batch: int = 8) -> Iterator[np.ndarray]:
    """Real tiles from image files: an image of the grid's frame size is cut into its tiles (blank
    padding tiles left out), any other image is resized to one tile (as the tile-level COCO
    evaluation sees it). Yields (n, T, T, 3) uint8 RGB batches; unreadable files raise."""
    t = grid.tile_size
    pending: list[np.ndarray] = []
    images = 0
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"calibration image {path} could not be read (not an image, or missing)")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if rgb.shape[:2] == (grid.frame_height, grid.frame_width):
            pending.append(grid.tiles(rgb)[: grid.num_tiles].copy())
        else:
            pending.append(cv2.resize(rgb, (t, t), interpolation=cv2.INTER_AREA)[None])
        images += 1
        if images >= images_per_batch:
            yield np.concatenate(pending)
            pending, images = [], 0
    if pending:
        yield np.concatenate(pending)
