"""What `inspection model list` shows per model: its files (present or how to get them), the
backends that can run it on this machine now, and the mAP measured by `inspection eval` if any."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from .base import ModelSpec, model_file_location
from .quantize import FLAVOURS, int8_path


@dataclass(frozen=True)
class ModelFile:
    kind: str  # onnx, frozen_graph, int8 (onnxruntime), int8 (tensorrt)
    path: Path | None  # None: absent
    how: str  # how to get it when absent


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    files: tuple[ModelFile, ...]
    backends: tuple[str, ...]  # "backend precision" runnable now
    accuracy: dict[str, float] = field(default_factory=dict)  # "backend precision" -> tile mAP


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def model_files(spec: ModelSpec) -> list[ModelFile]:
    files = []
    for kind in spec.files:
        path, how = model_file_location(spec, kind)
        if path is None and kind == "onnx" and spec.convert:
            how = f"converted on first use from the frozen graph, or now: inspection model convert {spec.name}"
        files.append(ModelFile(kind, path, how))
    for flavour in FLAVOURS:
        path = int8_path(spec, flavour=flavour)
        files.append(ModelFile(f"int8 ({flavour})", path if path.is_file() else None, f"inspection model quantize {spec.name}"))
    return files


def runnable_backends(spec: ModelSpec, files: list[ModelFile]) -> list[str]:
    """Backend/precision pairs whose packages are installed and whose model file is at hand
    (an ONNX file a frozen graph converts into counts as at hand)."""
    have = {f.kind: f.path is not None for f in files}
    onnx = have.get("onnx", False) or (bool(spec.convert) and have.get("frozen_graph", False))
    out = []
    if onnx:
        out.append("onnxruntime fp32")
    if have.get("int8 (onnxruntime)"):
        out.append("onnxruntime int8")
    cuda = _cuda_available()
    if onnx and _installed("torch"):
        out.append("torch fp32/fp16" if cuda else "torch fp32 (cpu)")
    if cuda and _installed("tensorrt", "pycuda"):
        if onnx:
            out.append("tensorrt fp32/fp16")
        if have.get("int8 (tensorrt)"):
            out.append("tensorrt int8")
    return out


def _cuda_available() -> bool:
    """A CUDA device, asked without initialising CUDA in this process where possible."""
    if not Path("/dev/nvidiactl").exists() and not Path("/dev/nvhost-ctrl").exists():  # desktop GPUs / Jetson
        return False
    if _installed("torch"):
        import torch

        return bool(torch.cuda.is_available())
    return _installed("pycuda")


def model_status(spec: ModelSpec, accuracy: dict[tuple[str, str, str], float] | None = None) -> ModelStatus:
    files = model_files(spec)
    measured = {
        f"{backend} {precision}": value for (model, backend, precision), value in (accuracy or {}).items() if model == spec.name
    }
    return ModelStatus(spec, tuple(files), tuple(runnable_backends(spec, files)), measured)
