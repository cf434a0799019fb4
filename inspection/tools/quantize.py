"""`inspection model quantize`: INT8 by explicit quantization (QDQ graphs), measurable on a CPU.

Static post-training quantization of the model's raw ONNX graph with onnxruntime.quantization:
weights INT8, symmetric, per output channel, 7-bit range (`QuantizeSettings.reduce_range`); activation ranges calibrated once on real tiles fed
through a `CalibrationDataReader`; QuantizeLinear/DequantizeLinear pairs around the operators.
Every convolution runs in INT8, the detection heads' included (they hold a fifth of SSD's
multiply-adds; kept in float they cost more time than they save accuracy); the reshapes,
concatenations and sigmoid after them stay float, so box encodings and logits are dequantized
before they are combined (`output_tail`); biases stay float.

One calibration, two graphs (`FLAVOURS`), because the two runtimes want different activations:
- `int8_qdq.onnx` for onnxruntime on the CPU: asymmetric uint8 activations, so Relu6 folds into
  the quantization range and every Conv fuses into one INT8 kernel (symmetric activations keep a
  float Clip between Q/DQ pairs and run slower than fp32);
- `int8_qdq_tensorrt.onnx` for TensorRT >= 10: symmetric int8 activations with zero point 0 (the
  only kind TensorRT accepts), built into an explicitly quantized engine without a calibrator
  (`inspection model build-engine --precision int8`).
Both live next to the raw graph in the model cache (`<model dir>/<name>/`), with the activation
ranges (`int8_calibration.json`) and a sidecar naming the calibration data and settings.

Calibration tiles (`calibration_tiles`): the demo's photo frames (scikit-image's bundled
photographs, cut by the grid: nothing to download, and nothing from an evaluation set), or real
line frames / any images from a folder (`--images`), or COCO mosaics from the composer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.base import ModelSpec
from ..detect.int8 import CALIBRATION_FILE, FLAVOURS, SIDECAR_FILE, int8_path
from ..detect.preprocess import to_network_input
from ..files import atomic_path

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_TILES = 256
CALIBRATION_BATCH = (
    8  # tiles per calibration run: bounds the memory of the augmented graph's outputs (percentile/entropy keep them all)
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class QuantizeSettings:
    method: str = "minmax"
    per_channel: bool = True
    tiles: int = DEFAULT_TILES
    float_tail: bool = True  # the ops after the heads' last convolutions stay float (`output_tail`)
    source: str = "photos"  # what the calibration tiles are (recorded in the sidecar)
    # 7-bit weights: onnxruntime's x86 INT8 kernels without VNNI (AVX2 only, e.g. AMD EPYC) multiply uint8 by int8
    # with vpmaddubsw, whose int16 pair sums saturate on full-range weights; with 7 bits they cannot. Measured on
    # coco_tiny tile mAP on an AVX2-only machine: full range 0.206 (tensorrt flavour 0.251) against fp32 0.320.
    reduce_range: bool = True

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method {self.method!r}: allowed {', '.join(CALIBRATION_METHODS)}")
        if self.tiles < 1:
            raise ValueError(f"calibration needs at least one tile, got {self.tiles}")


class TileCalibrationReader:
    """onnxruntime's CalibrationDataReader over tile batches: each `get_next` is one preprocessed
    batch of `batch_size` tiles ({input name: float32 network input}), None at the end; at most
    `max_tiles` tiles in all."""

    def __init__(
        self, batches: Iterable[np.ndarray], spec: ModelSpec, input_name: str, max_tiles: int, batch_size: int = CALIBRATION_BATCH
    ) -> None:
        self.spec = spec
        self.input_name = input_name
        self.max_tiles = max_tiles
        self.batch_size = batch_size
        self.tiles_read = 0
        self._iterator = self._chunks(batches)

    def _chunks(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for tiles in batches:
            tiles = np.asarray(tiles)
            if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
                raise ValueError(f"calibration tiles must be (n, T, T, 3) uint8 RGB, got {tiles.shape} {tiles.dtype}")
            for start in range(0, len(tiles), self.batch_size):
                room = self.max_tiles - self.tiles_read
                if room <= 0:
                    return
                chunk = tiles[start : start + min(self.batch_size, room)]
                self.tiles_read += len(chunk)
                yield chunk

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._iterator, None)
        if chunk is None:
            return None
        return {self.input_name: np.ascontiguousarray(to_network_input(chunk, self.spec))}


# --------------------------------------------------------------------------- calibration tiles


def photo_tiles(grid: Any, frames: int, seed: int = 1) -> Iterator[np.ndarray]:
    """Real tiles of the demo's photo frames (scikit-image's bundled photographs), grid-cut, no blank tiles."""
    from synthetic.photos import PhotoFrameSource

    source = PhotoFrameSource(grid, seed=seed)
    for shot in range(frames):
        yield grid.tiles(source(0, 0, shot))[: grid.num_tiles].copy()


def coco_tiles(images: Path, annotations: Path, grid: Any, seed: int = 0) -> Iterator[np.ndarray]:
    """Real tiles of COCO mosaics (the composer's frames, as `inspection eval` sees them)."""
    from synthetic.coco import CocoDataset
    from synthetic.compose import compose_mosaics

    mosaics = compose_mosaics(CocoDataset.load(images, annotations), grid, seed=seed)
    for frame in mosaics.frames:
        yield grid.tiles(frame)[: grid.num_tiles].copy()


def calibration_tiles(
    grid: Any, images: Path | None = None, annotations: Path | None = None, tiles: int = DEFAULT_TILES
) -> tuple[Iterator[np.ndarray], str]:
    """(tile batches, description) from a folder of images (with a COCO JSON: composer mosaics),
    or by default the photo frames."""
    from .calibration import tile_batches_from_images

    if images is None:
        frames = -(-tiles // grid.num_tiles)
        return photo_tiles(grid, frames), f"photo frames (scikit-image sample photographs, {frames} frames)"
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder of calibration images")
    if annotations is not None:
        return coco_tiles(images, annotations, grid), f"COCO mosaics of {images}"
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise FileNotFoundError(f"--images {images} holds no .jpg/.png images")
    return tile_batches_from_images(paths, grid), f"{len(paths)} images of {images}"


# --------------------------------------------------------------------------- quantization


def output_tail(model: Any) -> list[str]:
    """Names of the nodes between the graph outputs and the last convolutions before them (the
    detection heads' reshapes, transposes, concatenations and activations), heads excluded.
    They stay float: box encodings and class logits are dequantized right after the heads'
    convolutions, so concatenation and sigmoid see full-precision values, while the heads'
    convolutions themselves (a fifth of SSD's multiply-adds: 91 classes × anchors) run in INT8."""
    producers = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    seen: set[str] = set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen or node.op_type == "Conv":
            continue
        seen.add(node.name)
        names.append(node.name)
        stack.extend(node.input)
    return sorted(names)


@contextlib.contextmanager
def _quiet_preprocessing_advice() -> Iterator[None]:
    """onnxruntime logs a warning on the root logger advising shape-inference pre-processing; the
    converted graphs are already folded and fully shaped, so the advice is noise here."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def quantize_onnx(
    spec: ModelSpec,
    fp32_path: Path,
    out_dir: Path,
    batches: Iterable[np.ndarray],
    settings: QuantizeSettings = QuantizeSettings(),
    flavours: Sequence[str] = tuple(FLAVOURS),
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Static QDQ quantization of `fp32_path`: one calibration, then one graph per flavour in
    `out_dir` (atomic writes). Returns {flavour: path}; a sidecar JSON names data and settings."""
    import inspect

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32_path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    input_name = next(i.name for i in model.graph.input if i.name not in initializers)
    exclude = output_tail(model) if settings.float_tail else []
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[settings.method]
    out_dir.mkdir(parents=True, exist_ok=True)
    ranges = out_dir / CALIBRATION_FILE
    ranges.unlink(missing_ok=True)
    reuse_ranges = "calibration_cache_path" in inspect.signature(quantize_static).parameters
    tiles = list(batches) if len(flavours) > 1 and not reuse_ranges else batches  # re-read per flavour on old onnxruntime
    started = time.monotonic()
    written: dict[str, Path] = {}
    tiles_read = 0
    for name in flavours:
        flavour = FLAVOURS[name]
        reader = TileCalibrationReader(tiles, spec, input_name, settings.tiles)
        if progress is not None:
            progress(
                f"{name}: {'calibrating on' if not written or not reuse_ranges else 'reusing the ranges of'} "
                f"{settings.tiles} tiles ({settings.method}); {len(exclude)} nodes after the heads kept in float"
            )
        target = out_dir / flavour.file
        with atomic_path(target) as partial, _quiet_preprocessing_advice():
            quantize_static(
                str(fp32_path),
                str(partial),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QuantType.QUInt8 if flavour.activation == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_exclude=exclude,
                extra_options={
                    "ActivationSymmetric": flavour.activation == "int8",
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # float bias: TensorRT and onnxruntime fold it into their INT8 kernels
                },
                **({"calibration_cache_path": str(ranges)} if reuse_ranges else {}),
            )
        tiles_read = max(tiles_read, reader.tiles_read)
        written[name] = target
    meta = {
        **asdict(settings),
        "tiles": tiles_read,
        "fp32": str(fp32_path),
        "excluded_nodes": exclude,
        "weights": f"int8 symmetric ({'7-bit range' if settings.reduce_range else 'full range'}) "
        f"{'per output channel' if settings.per_channel else 'per tensor'}",
        "flavours": {
            n: {"file": FLAVOURS[n].file, "activations": FLAVOURS[n].activation, "why": FLAVOURS[n].why} for n in written
        },
        "seconds": round(time.monotonic() - started, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out_dir / SIDECAR_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    if progress is not None:
        progress(f"wrote {', '.join(str(p) for p in written.values())} in {meta['seconds']} s")
    return written


def quantize_model(
    spec: ModelSpec,
    grid: Any,
    images: Path | None = None,
    annotations: Path | None = None,
    settings: QuantizeSettings = QuantizeSettings(),
    fp32_path: Path | None = None,
    out_dir: Path | None = None,
    flavours: Sequence[str] = tuple(FLAVOURS),
    progress: Progress | None = None,
) -> dict[str, Path]:
    """`inspection model quantize NAME`: the model's raw graph (converted first where needed) -> its INT8 QDQ graphs."""
    from ..detect.convert import resolve_model_file

    fp32 = fp32_path or resolve_model_file(spec, "onnx")
    batches, source = calibration_tiles(grid, images, annotations, settings.tiles)
    target = out_dir or int8_path(spec).parent
    return quantize_onnx(
        spec, fp32, target, batches, QuantizeSettings(**{**asdict(settings), "source": source}), flavours, progress
    )
