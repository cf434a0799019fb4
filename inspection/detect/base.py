"""The Detector interface, model metadata (`ModelSpec`) and where model files are found.

A model is an ONNX (or frozen) graph plus a metadata file (built in: `models/<name>.json`; a
user model's: `<model dir>/<name>/model.json`, see `registry`): input size, layout, channel
order, normalisation, how a tile fits the input, the class id of each output column, class
names and the output decoder. Backends read the spec; nothing in the pipeline is specific to
one model.
"""

from __future__ import annotations

import abc
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import platformdirs

from ..detections import Detections
from ..machine import MachineSettings


class ModelNotFoundError(FileNotFoundError):
    """A model file is missing; the message says how to get it."""


class MissingBackendError(ImportError):
    """A backend's optional package is not installed; the message names the extra to install."""


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
    source: str = "built-in"  # "built-in", or the metadata file of a user model

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "built-in") -> ModelSpec:
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
            source=source,
        )

    def to_json(self) -> dict[str, Any]:
        """The metadata file's content (inverse of `from_json`)."""
        return {
            "name": self.name,
            "description": self.description,
            "licence": self.licence,
            "family": self.family,
            "input_size": list(self.input_size),
            "layout": self.layout,
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "fit": self.fit,
            "pad_value": self.pad_value,
            "output_class_ids": list(self.output_class_ids),
            "background_columns": list(self.background_columns),
            "class_names": {str(k): v for k, v in self.class_names.items()},
            "decoder": self.decoder,
            "files": self.files,
            **({"convert": self.convert} if self.convert else {}),
        }

    @property
    def num_columns(self) -> int:
        return len(self.output_class_ids)

    def class_name(self, class_id: int) -> str:
        return self.class_names.get(int(class_id), f"class_{int(class_id)}")


def model_cache_dir() -> Path:
    """Where converted/copied model files live: the machine's `model_dir` (INSPECTION_MODEL_DIR) or the user cache."""
    return MachineSettings().model_dir or Path(platformdirs.user_cache_dir("inspection")) / "models"


def model_file_location(spec: ModelSpec, kind: str) -> tuple[Path | None, str]:
    """Where one of the model's files is, without making it: (path or None if absent, how to get it)."""
    entry = spec.files.get(kind)
    if entry is None:
        return None, f"model {spec.name} has no {kind} file"
    if "package" in entry:
        package = entry["package"]
        found = importlib.util.find_spec(package)  # locates the package without importing it
        how = f"pip install {entry.get('pip', package.replace('_', '-'))}"
        if found is None or not found.submodule_search_locations:
            return None, how
        for location in found.submodule_search_locations:
            path = Path(location) / entry["resource"]
            if path.is_file():
                return path, how
        return None, how
    path = model_cache_dir() / entry["cache"]
    return (path if path.is_file() else None), entry.get("made_by", "pass model.path")


def find_model_file(spec: ModelSpec, kind: str, override: str | Path | None = None) -> Path | None:
    """Path of one of the model's files (`onnx`, `frozen_graph`); None for a model cache file not
    made yet (`convert.resolve_model_file` converts it or says how to get it).

    Order: an explicit override (config `model.path`), the package that ships it, the model cache.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"model.path {path} does not exist")
        return path
    if kind not in spec.files:
        raise ModelNotFoundError(f"model {spec.name} has no {kind} file; it provides: {', '.join(spec.files)}")
    path, how = model_file_location(spec, kind)
    entry = spec.files[kind]
    if path is None and "package" in entry:
        raise ModelNotFoundError(
            f"model {spec.name}: the {kind} file ({entry['resource']}) comes from package "
            f"{entry['package']}, which is not installed or lacks it; install it with: {how}"
        )
    return path


class UnsupportedCapability(NotImplementedError):
    """A detector was asked for something its backend does not do (see the `Detector` flags)."""


class Detector(abc.ABC):
    """A batch object detector; every backend subclasses it.

    `detect` takes tiles (N, T, T, 3) uint8 RGB and returns every tile's detections in one
    `Detections` (tile pixels, `tile_index` = position in the batch, class ids = dataset ids),
    after score filtering, class-wise NMS and the per-tile cap.

    What the pipeline and the benchmarks may use beyond `detect`, each with a default:
    - `warmup(tile_hw)`: build/capture everything for a tile size before frames arrive (default: nothing to do);
    - `detect_tensor(tiles)` and `forward_only(tiles)` on tiles already on the device, when
      `takes_device_batches` (default: refused with `UnsupportedCapability`);
    - `forward(tiles)`: the raw output tensors of a host batch, when `has_forward` (default: refused);
    - `close()`: free what the backend holds (default: nothing).
    """

    spec: ModelSpec
    backend: ClassVar[str]
    precision: str
    takes_device_batches: ClassVar[bool] = False
    has_forward: ClassVar[bool] = False
    device: Any = "cpu"  # where device batches must live (a torch.device for backend torch)

    @abc.abstractmethod
    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections: ...

    def detect_tensor(self, tiles: Any, score_threshold: float | None = None) -> Detections:
        """`detect` for tiles already on the device (e.g. `pipeline.decode=gpu`)."""
        raise UnsupportedCapability(
            f"backend {self.backend} takes host batches (numpy), not device tensors; pipeline.decode=gpu needs backend torch"
        )

    def forward_only(self, tiles: Any) -> tuple[Any, ...]:
        """The bare network on device tiles, un-synchronised (for timing)."""
        raise UnsupportedCapability(f"backend {self.backend} has no device forward pass")

    def forward(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """The raw output tensors of a host batch (no decoding)."""
        raise UnsupportedCapability(f"backend {self.backend} does not expose its raw outputs")

    def warmup(self, tile_hw: tuple[int, int]) -> None:
        """Nothing to prepare by default; GPU backends capture their graphs here."""

    def close(self) -> None:
        """Nothing to free by default."""
