"""Which models exist: the built-in ones (package metadata) and a plant's own (the model directory).

- Built-in: `inspection/detect/models/<name>.json`, shipped with the package.
- User models: `<model dir>/<name>/model.json` (model dir = $INSPECTION_MODEL_DIR or the user
  cache directory), written by `inspection model add` next to a copy of the ONNX file, or by hand.
Every backend, `eval`, `bench`, `plan` and the edge take either kind by name (`model.name`).
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_path, write_atomic
from .base import ModelNotFoundError, ModelSpec, model_cache_dir
from .signature import A_FAMILY, ModelMismatchError, OnnxSignature, check_fits, guess_family

USER_METADATA = "model.json"
FAMILIES = ("ssd", "yolox", "yolov8")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
DEFAULT_YOLO_INPUT = 320  # a 300-pixel tile padded to the next multiple of the largest stride (32)


class UnknownModelError(ValueError):
    """`model.name` names no registered model; the message lists those that exist."""


def builtin_models() -> list[str]:
    root = importlib.resources.files("inspection.detect") / "models"
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def user_model_files() -> dict[str, Path]:
    """name -> metadata file of each user model in the model directory (built-in names excluded)."""
    root = model_cache_dir()
    if not root.is_dir():
        return {}
    builtin = set(builtin_models())
    return {p.parent.name: p for p in sorted(root.glob(f"*/{USER_METADATA}")) if p.parent.name not in builtin}


def available_models() -> list[str]:
    """Built-in models first, then user models, each sorted by name."""
    return builtin_models() + sorted(user_model_files())


def _unknown(name: str) -> UnknownModelError:
    users = sorted(user_model_files())
    return UnknownModelError(
        f"unknown model {name!r}; built-in: {', '.join(builtin_models())}; "
        f"user models in {model_cache_dir()}: {', '.join(users) if users else 'none'} "
        f"(add one with: inspection model add NAME --onnx FILE --family {'|'.join(FAMILIES)} --classes FILE)"
    )


def load_spec(name: str) -> ModelSpec:
    """Metadata of a registered model (built-in first, then the model directory)."""
    if name in builtin_models():
        text = (importlib.resources.files("inspection.detect") / "models" / f"{name}.json").read_text()
        return ModelSpec.from_json(json.loads(text))
    path = user_model_files().get(name)
    if path is None:
        raise _unknown(name)
    try:
        data = json.loads(path.read_text())
        spec = ModelSpec.from_json(data, source=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelMismatchError(
            f"user model {name}: metadata file {path} is not valid ({type(exc).__name__}: {exc}); "
            f"re-create it with `inspection model add {name} ... --force`"
        ) from None
    if spec.name != name:
        raise ModelMismatchError(f"user model metadata {path} names model {spec.name!r}, its folder says {name!r}: rename one")
    return spec


# --------------------------------------------------------------------------- registering a model


def read_class_names(path: str | Path) -> list[str]:
    """Class names, one per line (score column order), blank lines and #-comments ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"classes file {path} does not exist (one class name per line, in the model's score column order)"
        )
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"classes file {path} lists no class names (one per line)")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"classes file {path} repeats {', '.join(dupes)}; each score column needs its own name")
    return names


def _input_size(sig: OnnxSignature, layout: str, requested: int | None, family: str, path: Path) -> tuple[int, int]:
    shape = sig.inputs[0].shape if sig.inputs else ()
    hw = (shape[1:3] if layout == "NHWC" else shape[2:4]) if len(shape) == 4 else (None, None)
    if None not in hw:
        if requested is not None and tuple(hw) != (requested, requested):
            raise ModelMismatchError(
                f"{path} has a fixed input of {hw[0]}×{hw[1]}; --input-size {requested} cannot change it "
                f"(drop --input-size, or re-export the model with a dynamic or {requested}-pixel input)"
            )
        return int(hw[0]), int(hw[1])
    size = requested or (300 if family == "ssd" else DEFAULT_YOLO_INPUT)
    if family != "ssd" and size % 32:
        raise ValueError(f"--input-size {size}: YOLO inputs must be multiples of 32 (e.g. {math.ceil(size / 32) * 32})")
    return size, size


def ssd_feature_maps(size: int, layers: int = 6) -> list[int]:
    """Feature map sizes of the TF OD API SSD MobileNet heads for a square input (300 -> 19, 10, 5, 3, 2, 1)."""
    maps = [math.ceil(size / 16)]
    for _ in range(layers - 1):
        maps.append(math.ceil(maps[-1] / 2))
    return maps


def spec_for_family(
    name: str,
    family: str,
    sig: OnnxSignature,
    classes: Sequence[str],
    onnx_cache: str,
    input_size: int | None,
    fit: str | None,
    path: Path,
) -> ModelSpec:
    """Metadata for an exported model of a known family (its usual preprocessing and output layout)."""
    if family not in FAMILIES:
        raise ValueError(f"--family {family!r}: allowed {', '.join(FAMILIES)}")
    if len(sig.inputs) != 1:
        raise ModelMismatchError(f"{path} has {len(sig.inputs)} inputs ({sig.describe()}); a detector takes one image batch")
    n = len(classes)
    files = {
        "onnx": {"cache": onnx_cache, "made_by": f"inspection model add {name} --onnx FILE --family {family} --classes FILE"}
    }
    outputs = sig.outputs
    if family == "ssd":
        layout = "NHWC" if sig.inputs[0].shape[-1:] == (3,) else "NCHW"
        size = _input_size(sig, layout, input_size, family, path)
        boxes = next((o for o in outputs if o.shape[-1:] == (4,)), None)
        scores = next((o for o in outputs if o is not boxes), None)
        if len(outputs) != 2 or boxes is None or scores is None:
            raise ModelMismatchError(
                f"{path} does not look like an SSD export (box encodings [N, A, 1, 4] + scores [N, A, C]): "
                f"{sig.describe()}" + _family_hint(sig, family, path)
            )
        columns = scores.shape[-1] or n
        background = [0] if columns == n + 1 else []
        ids = ([-1] if background else []) + list(range(n))
        decoder = {
            "type": "ssd_box_coder",
            "scales": [10.0, 10.0, 5.0, 5.0],
            "anchors": {
                "type": "ssd_multiple_grid",
                "feature_maps": ssd_feature_maps(size[0]),
                "min_scale": 0.2,
                "max_scale": 0.95,
                "aspect_ratios": [1.0, 2.0, 0.5, 3.0, 0.3333],
                "interpolated_scale_aspect_ratio": 1.0,
                "reduce_boxes_in_lowest_layer": True,
            },
            "outputs": {"boxes": boxes.name, "scores": scores.name},
            "scores_activated": True,
        }
        kwargs = dict(layout=layout, channel_order="RGB", mean=(127.5,) * 3, std=(127.5,) * 3, fit=fit or "resize", pad_value=0)
    else:
        if len(outputs) != 1:
            raise ModelMismatchError(
                f"{path} has {len(outputs)} outputs ({sig.describe()}); a {family} export has one"
                + _family_hint(sig, family, path)
            )
        layout = "NCHW"
        size = _input_size(sig, layout, input_size, family, path)
        ids, background = list(range(n)), []
        if family == "yolox":
            decoder = {"type": "yolox", "strides": [8, 16, 32], "outputs": {"predictions": outputs[0].name}}
            kwargs = dict(layout=layout, channel_order="BGR", mean=(0.0,) * 3, std=(1.0,) * 3, fit=fit or "pad", pad_value=114)
        else:
            decoder = {"type": "yolov8", "outputs": {"predictions": outputs[0].name}}
            kwargs = dict(layout=layout, channel_order="RGB", mean=(0.0,) * 3, std=(255.0,) * 3, fit=fit or "pad", pad_value=114)
    spec = ModelSpec(
        name=name,
        family=family,
        input_size=size,
        output_class_ids=tuple(ids),
        background_columns=tuple(background),
        class_names=dict(enumerate(classes)),
        decoder=decoder,
        files=files,
        description=f"user model ({family}) from {path.name}",
        licence="",
        **kwargs,  # type: ignore[arg-type]
    )
    check_fits(spec, sig, path)
    if family == "ssd":
        _check_ssd_anchors(spec, sig, path)
    return spec


def _family_hint(sig: OnnxSignature, family: str, path: Path) -> str:
    guess = guess_family(sig)
    return f"; it looks like {A_FAMILY[guess]} export: pass --family {guess}" if guess and guess != family else ""


def _check_ssd_anchors(spec: ModelSpec, sig: OnnxSignature, path: Path) -> None:
    from .ssd import anchors_from_decoder

    boxes = sig.output(spec.decoder["outputs"]["boxes"])
    count = len(anchors_from_decoder(spec.decoder))
    if boxes is not None and boxes.shape[1] not in (count, None):
        raise ModelMismatchError(
            f"{path}: {boxes} has {boxes.shape[1]} anchors; TF OD API SSD anchors (multiple grid, 6 layers) for a "
            f"{spec.input_size[0]}-pixel input give {count}. Write the model's anchor settings into {USER_METADATA} by hand "
            f"(decoder.anchors, as in inspection/detect/models/ssd_mobilenet_v2_coco.json)"
        )


def register_model(
    name: str,
    onnx_file: str | Path,
    family: str,
    classes_file: str | Path,
    input_size: int | None = None,
    fit: str | None = None,
    force: bool = False,
) -> ModelSpec:
    """Check an exported ONNX file against its family, copy it into the model directory and write
    its metadata (`<model dir>/<name>/model.json`); returns the registered spec."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"model name {name!r}: use lower-case letters, digits, '_', '-', '.' (at most 64, starting with a letter or digit)"
        )
    if name in builtin_models():
        raise ValueError(f"{name} is a built-in model; choose another name for your model")
    source = Path(onnx_file).expanduser()
    if not source.is_file():
        raise ModelNotFoundError(f"--onnx {source} does not exist")
    folder = model_cache_dir() / name
    metadata = folder / USER_METADATA
    if metadata.exists() and not force:
        raise FileExistsError(f"model {name} is already registered ({metadata}); pass --force to replace it")
    sig = OnnxSignature.from_file(source)
    classes = read_class_names(classes_file)
    target = folder / (source.name if source.suffix == ".onnx" else f"{source.name}.onnx")
    spec = spec_for_family(name, family, sig, classes, f"{name}/{target.name}", input_size, fit, source)
    folder.mkdir(parents=True, exist_ok=True)
    if source.resolve() != target.resolve():
        with atomic_path(target) as partial:
            shutil.copyfile(source, partial)
    write_atomic(metadata, (json.dumps(spec.to_json(), indent=1) + "\n").encode())
    return load_spec(name)


def remove_model(name: str) -> Path:
    """Delete a user model's folder (metadata and copied files); built-in models cannot be removed."""
    if name in builtin_models():
        raise ValueError(f"{name} is a built-in model and cannot be removed")
    path = user_model_files().get(name)
    if path is None:
        raise _unknown(name)
    shutil.rmtree(path.parent)
    return path.parent
