"""Detectors: one `Detector` interface, one registry of backends, models described by metadata."""

from __future__ import annotations

from typing import Callable

from ..config import DetectConfig, ModelConfig
from .base import Detector, ModelNotFoundError, ModelSpec, available_models, load_spec, resolve_model_file

BACKENDS = ("opencv", "onnxruntime", "torch", "tensorrt")


def _opencv(spec: ModelSpec, model: ModelConfig, detect: DetectConfig) -> Detector:
    from .opencv import OpenCVDetector

    return OpenCVDetector(spec, model, detect)


def _onnxruntime(spec: ModelSpec, model: ModelConfig, detect: DetectConfig) -> Detector:
    from .onnxruntime import OnnxRuntimeDetector

    return OnnxRuntimeDetector(spec, model, detect)


def _torch(spec: ModelSpec, model: ModelConfig, detect: DetectConfig) -> Detector:
    from .torch import TorchDetector

    return TorchDetector(spec, model, detect)


def _tensorrt(spec: ModelSpec, model: ModelConfig, detect: DetectConfig) -> Detector:
    from .tensorrt import TensorRTDetector

    return TensorRTDetector(spec, model, detect)


_FACTORIES: dict[str, Callable[[ModelSpec, ModelConfig, DetectConfig], Detector]] = {
    "opencv": _opencv,
    "onnxruntime": _onnxruntime,
    "torch": _torch,
    "tensorrt": _tensorrt,
}


def create_detector(model: ModelConfig, detect: DetectConfig) -> Detector:
    """Build the configured backend for the configured model (backends import lazily)."""
    spec = load_spec(model.name)
    return _FACTORIES[model.backend](spec, model, detect)


__all__ = ["BACKENDS", "Detector", "ModelNotFoundError", "ModelSpec", "available_models", "create_detector", "load_spec", "resolve_model_file"]
