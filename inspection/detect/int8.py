"""The model's INT8 (QDQ) graphs in the model cache: which exist, where, what they were made from.

What the backends read at run time; `inspection.tools.quantize` makes them (`inspection model quantize`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ModelNotFoundError, ModelSpec, model_cache_dir

INT8_FILE = "int8_qdq.onnx"  # onnxruntime (CPU) flavour
INT8_TENSORRT_FILE = "int8_qdq_tensorrt.onnx"  # TensorRT explicit-quantization flavour
CALIBRATION_FILE = "int8_calibration.json"  # activation ranges (onnxruntime's calibration cache)
SIDECAR_FILE = "int8_qdq.json"  # what the INT8 graphs were made from


@dataclass(frozen=True)
class Flavour:
    """One QDQ variant of the graph, for one runtime."""

    name: str
    file: str
    activation: str  # "uint8" (asymmetric) or "int8" (symmetric, zero point 0)
    why: str


FLAVOURS = {
    "onnxruntime": Flavour(
        "onnxruntime",
        INT8_FILE,
        "uint8",
        "asymmetric uint8 activations: Relu6 folds into the quantization range and every Conv fuses into an INT8 kernel on x86",
    ),
    "tensorrt": Flavour(
        "tensorrt",
        INT8_TENSORRT_FILE,
        "int8",
        "symmetric int8 activations with zero point 0, as TensorRT's explicit quantization requires",
    ),
}


def int8_path(spec: ModelSpec, must_exist: bool = False, flavour: str = "onnxruntime") -> Path:
    """Where the model's INT8 QDQ graph for a runtime (`FLAVOURS`) lives in the model cache."""
    path = model_cache_dir() / spec.name / FLAVOURS[flavour].file
    if must_exist and not path.is_file():
        raise ModelNotFoundError(
            f"model {spec.name}: no INT8 (QDQ) graph for {flavour} at {path}; make it with: inspection model quantize {spec.name}"
        )
    return path


def int8_metadata(spec: ModelSpec) -> dict[str, Any] | None:
    """The sidecar of the model's INT8 graphs (calibration data and settings), None if never quantized."""
    path = model_cache_dir() / spec.name / SIDECAR_FILE
    return json.loads(path.read_text()) if path.is_file() else None
