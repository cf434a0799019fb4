"""Detectors: one `Detector` interface, one registry of backends, models described by metadata."""

from __future__ import annotations

from collections.abc import Callable

from ..config import DetectConfig, ModelConfig
from .base import Detector, MissingBackendError, ModelNotFoundError, ModelSpec, resolve_model_file
from .registry import UnknownModelError, available_models, load_spec
from .signature import ModelMismatchError

BACKENDS = ("onnxruntime", "torch", "tensorrt")


def _onnxruntime(spec: ModelSpec, model: ModelConfig, detect: DetectConfig) -> Detector:
    from .onnxruntime import OnnxRuntimeDetector

    return OnnxRuntimeDetector(spec, model, detect)


def _torch(spec: ModelSpec, model: ModelConfig, detect: DetectConfig, batch_size: int | None = None) -> Detector:
    try:
        from .torch import DEFAULT_BATCH, TorchDetector
    except ImportError as exc:
        raise MissingBackendError(
            f"backend torch needs torch and torchvision, which are not installed ({exc}): "
            "pip install 'inspection[torch]', or use model.backend=onnxruntime"
        ) from None

    return TorchDetector(spec, model, detect, batch_size=batch_size or DEFAULT_BATCH)


def _tensorrt(spec: ModelSpec, model: ModelConfig, detect: DetectConfig, batch_size: int | None = None) -> Detector:
    from .tensorrt import DEFAULT_BATCH, TensorRTDetector

    return TensorRTDetector(spec, model, detect, batch_size=batch_size or DEFAULT_BATCH)


_FACTORIES: dict[str, Callable[..., Detector]] = {
    "onnxruntime": _onnxruntime,
    "torch": _torch,
    "tensorrt": _tensorrt,
}


# Backends that compile for one batch size (CUDA graph, TensorRT profile): the size they are built for.
FIXED_BATCH_BACKENDS = ("torch", "tensorrt")


def create_detector(model: ModelConfig, detect: DetectConfig, batch_size: int | None = None) -> Detector:
    """Build the configured backend for the configured model (backends import lazily).

    `batch_size` sets the batch a fixed-batch backend (FIXED_BATCH_BACKENDS) is captured for;
    default the 64-tile frame batch. Other backends take any batch and ignore it.
    """
    spec = load_spec(model.name)
    if model.backend in FIXED_BATCH_BACKENDS:
        return _FACTORIES[model.backend](spec, model, detect, batch_size)
    return _FACTORIES[model.backend](spec, model, detect)


__all__ = [
    "BACKENDS",
    "FIXED_BATCH_BACKENDS",
    "Detector",
    "MissingBackendError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "ModelSpec",
    "UnknownModelError",
    "available_models",
    "create_detector",
    "load_spec",
    "resolve_model_file",
]
