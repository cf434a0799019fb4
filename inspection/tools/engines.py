"""`inspection model build-engine`: the ONNX graph a TensorRT engine is built from, then the engine.

INT8 engines are built from the model's TensorRT QDQ graph (`quantize`); where it is missing and
calibration images are given, the graph is quantized first, here, on those images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..detect.base import ModelNotFoundError, ModelSpec
from ..detect.convert import resolve_model_file
from ..detect.int8 import int8_path
from ..tiling import TileGrid
from .quantize import QuantizeSettings, quantize_model


def engine_source(
    spec: ModelSpec,
    precision: str,
    grid: TileGrid,
    onnx: Path | None = None,
    calibration_images: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The ONNX graph to build `spec`'s engine of `precision` from (an explicit `onnx` wins)."""
    if precision != "int8" or onnx is not None:
        return resolve_model_file(spec, "onnx", onnx)
    path = int8_path(spec, flavour="tensorrt")
    if path.is_file():
        return path
    if calibration_images is None:
        raise ModelNotFoundError(
            f"no INT8 QDQ graph for TensorRT at {path}: run `inspection model quantize {spec.name}` "
            "(any machine; copy the model directory here), or pass --calibration-images DIR to quantize now"
        )
    quantize_model(spec, grid, calibration_images, None, QuantizeSettings(), flavours=["tensorrt"], progress=progress)
    return path


def build_model_engine(
    spec: ModelSpec,
    precision: str,
    grid: TileGrid,
    cache_dir: Path | None,
    *,
    onnx: Path | None = None,
    calibration_images: Path | None = None,
    profiles: int = 2,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build (or find in the cache) the engine; returns its path. Needs tensorrt and pycuda."""
    from ..detect.engine import build_engine, cuda_primary_context, default_engine_dir

    source = engine_source(spec, precision, grid, onnx, calibration_images, progress)
    with cuda_primary_context():
        return build_engine(source, precision, cache_dir or default_engine_dir(), profiles=profiles, force=force)
