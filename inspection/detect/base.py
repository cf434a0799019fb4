"""The Detector interface, model metadata (`ModelSpec`) and where model files are found.

A model is an ONNX (or frozen) graph plus a metadata file (`models/<name>.json`): input size,
layout, channel order, normalisation, how a tile fits the input, the dataset class id of each
output column, class names and the output decoder. Backends read the spec; nothing in the
pipeline is specific to one model.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import platformdirs

from ..detections import Detections

MODEL_DIR_ENV = "INSPECTION_MODEL_DIR"


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing; the message says how to get it."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    input_size: tuple[int, int]  # (height, width) of the network input
    layout: Literal["NHWC", "NCHW"]
    channel_order: Literal["RGB", "BGR"]
    mean: tuple[float, float, float]  # per channel, in the model's channel order
    std: tuple[float, float, float]
    fit: Literal["resize", "pad"]  # how a tile becomes the network input
    pad_value: int
    output_class_ids: tuple[int, ...]  # dataset category id of each score column
    background_columns: tuple[int, ...]
    class_names: dict[int, str]
    decoder: dict[str, Any]
    files: dict[str, dict[str, str]]
    description: str = ""
    licence: str = ""
    convert: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(
            name=data["name"],
            family=data["family"],
            input_size=tuple(data["input_size"]),
            layout=data["layout"],
            channel_order=data["channel_order"],
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            fit=data["fit"],
            pad_value=int(data["pad_value"]),
            output_class_ids=tuple(int(i) for i in data["output_class_ids"]),
            background_columns=tuple(int(i) for i in data.get("background_columns", [])),
            class_names={int(k): v for k, v in data["class_names"].items()},
            decoder=data["decoder"],
            files=data["files"],
            description=data.get("description", ""),
            licence=data.get("licence", ""),
            convert=data.get("convert", {}),
        )

    @property
    def num_columns(self) -> int:
        return len(self.output_class_ids)

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(int(class_id), f"class_{int(class_id)}")


def available_models() -> list[str]:
    root = importlib.resources.files("inspection.detect") / "models"
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_spec(name: str) -> ModelSpec:
    """Metadata of a registered model (inspection/detect/models/<name>.json)."""
    if name not in available_models():
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(available_models())}")
    text = (importlib.resources.files("inspection.detect") / "models" / f"{name}.json").read_text()
    return ModelSpec.from_json(json.loads(text))


def model_cache_dir() -> Path:
    """Where converted/copied model files live: $INSPECTION_MODEL_DIR or the user cache directory."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("inspection")) / "models"


def resolve_model_file(spec: ModelSpec, kind: str, override: str | Path | None = None) -> Path:
    """Path of one of the model's files (`onnx`, `frozen_graph`, `opencv_pbtxt`).

    Order: an explicit override (config `model.path`), the package that ships it, the model cache.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"model.path {path} does not exist")
        return path
    entry = spec.files.get(kind)
    if entry is None:
        raise ModelNotFoundError(f"model {spec.name} has no {kind} file; it provides: {', '.join(spec.files)}")
    if "package" in entry:
        package = entry["package"]
        # find_spec locates the package without importing it (openpibo's __init__ needs pkg_resources).
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(f"model {spec.name}: package {package} is not installed (pip install {package.replace('_', '-')})")
        for location in found.submodule_search_locations:
            path = Path(location) / entry["resource"]
            if path.is_file():
                return path
        raise ModelNotFoundError(f"model {spec.name}: {entry['resource']} missing from package {package}")
    path = model_cache_dir() / entry["cache"]
    if path.is_file():
        return path
    how = entry.get("made_by", "pass model.path")
    raise ModelNotFoundError(f"model {spec.name}: {kind} file not found at {path}; get it with: {how}")


@runtime_checkable
class Detector(Protocol):
    """A batch object detector.

    `detect` takes tiles (N, T, T, 3) uint8 RGB and returns every tile's detections in one
    `Detections` (tile pixels, `tile_index` = position in the batch, class ids = dataset ids),
    after score filtering, class-wise NMS and the per-tile cap.
    """

    spec: ModelSpec
    backend: str
    precision: str

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections: ...

    def close(self) -> None: ...
