"""An ONNX file's inputs and outputs, and whether they fit a model family's decoder.

Backends check the file before running it, so a file of another family fails with a message
naming the family it looks like and the command that registers it, not deep inside a runtime
(OpenCV's "'(int)outnames.size()' is 1 must be equal to 'noutputs' is 2").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ModelSpec

Dim = int | None  # None: dynamic


A_FAMILY = {"ssd": "an SSD", "yolox": "a YOLOX", "yolov8": "a YOLOv8/YOLO11"}


class ModelMismatchError(ValueError):
    """A model file does not fit the family/metadata it is used with; the message says what to do."""


@dataclass(frozen=True)
class TensorSignature:
    name: str
    shape: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.name} [{', '.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class OnnxSignature:
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]

    @classmethod
    def from_file(cls, path: str | Path) -> OnnxSignature:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelMismatchError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})") from None
        initializers = {t.name for t in model.graph.initializer}  # old exporters list weights as inputs

        def sig(value: Any) -> TensorSignature:
            dims = value.type.tensor_type.shape.dim
            return TensorSignature(value.name, tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in dims))

        return cls(
            tuple(sig(v) for v in model.graph.input if v.name not in initializers), tuple(sig(v) for v in model.graph.output)
        )

    @classmethod
    def from_session(cls, session: Any) -> OnnxSignature:
        """From an onnxruntime InferenceSession (symbolic dimensions as None)."""

        def sig(arg: Any) -> TensorSignature:
            return TensorSignature(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape))

        return cls(tuple(sig(a) for a in session.get_inputs()), tuple(sig(a) for a in session.get_outputs()))

    def output(self, name: str) -> TensorSignature | None:
        return next((o for o in self.outputs if o.name == name), None)

    def describe(self) -> str:
        return f"inputs {', '.join(map(str, self.inputs))}; outputs {', '.join(map(str, self.outputs))}"


def guess_family(sig: OnnxSignature) -> str | None:
    """The family whose export layout the file has: ssd (box encodings + scores), yolox
    (N, A, 5 + C), yolov8 (N, 4 + C, A); None when it looks like none of them."""
    if len(sig.outputs) == 2 and any(o.shape[-1:] == (4,) for o in sig.outputs):
        return "ssd"
    if len(sig.outputs) != 1 or len(sig.outputs[0].shape) != 3:
        return None
    _, a, b = sig.outputs[0].shape
    if a is not None and (b is None or a < b):
        return "yolov8"  # (N, 4 + C, anchors): classes before the (many) anchors
    if b is not None and (a is None or b < a):
        return "yolox"  # (N, anchors, 5 + C)
    return None


def expected_layout(spec: ModelSpec) -> str:
    """The output layout the spec's decoder reads, in words."""
    kind, c = spec.decoder["type"], spec.num_columns
    names = spec.decoder["outputs"]
    if kind == "ssd_box_coder":
        return f"box encodings {names['boxes']} [N, A, 1, 4] and scores {names['scores']} [N, A, {c}]"
    if kind == "yolox":
        return f"{names['predictions']} [N, A, {5 + c}] (x, y, w, h, objectness, {c} classes)"
    return f"{names['predictions']} [N, {4 + c}, A] (cx, cy, w, h, {c} class scores)"


def fit_problems(spec: ModelSpec, sig: OnnxSignature) -> list[str]:
    """What in the file's signature contradicts the spec (empty: it fits)."""
    problems: list[str] = []
    if len(sig.inputs) != 1:
        problems.append(f"it has {len(sig.inputs)} inputs, a detector takes one tile batch")
    else:
        shape = sig.inputs[0].shape
        channels = shape[3] if spec.layout == "NHWC" else shape[1] if len(shape) == 4 else None
        hw = shape[1:3] if spec.layout == "NHWC" else shape[2:4]
        if len(shape) != 4 or channels not in (3, None):
            problems.append(f"input {sig.inputs[0]} is not a {spec.layout} batch of 3-channel images")
        elif None not in hw and tuple(hw) != tuple(spec.input_size):
            problems.append(
                f"input {sig.inputs[0]} is {hw[0]}×{hw[1]}, the metadata says input_size {spec.input_size[0]}×{spec.input_size[1]}"
            )
    kind, c = spec.decoder["type"], spec.num_columns
    names = spec.decoder["outputs"]
    looks_like = guess_family(sig)
    if looks_like is not None and looks_like != spec.family:
        problems.append(f"its outputs have the {looks_like} layout")
    missing = [n for n in names.values() if sig.output(n) is None]
    if missing:
        problems.append(f"it has no output {', '.join(missing)}")
        return problems
    if kind == "ssd_box_coder":
        boxes, scores = sig.output(names["boxes"]), sig.output(names["scores"])
        if boxes.shape[-1:] not in ((4,), (None,)):
            problems.append(f"box output {boxes} does not end in 4 coordinates")
        if scores.shape[-1] not in (c, None):
            problems.append(f"score output {scores} has {scores.shape[-1]} columns, the metadata {c}")
    else:
        out = sig.output(names["predictions"])
        want = 5 + c if kind == "yolox" else 4 + c
        axis = 2 if kind == "yolox" else 1
        if len(out.shape) != 3:
            problems.append(f"output {out} is not 3-D")
        elif out.shape[axis] not in (want, None):
            problems.append(
                f"output {out} has {out.shape[axis]} values per box on axis {axis}, {kind} with {c} classes has {want}"
            )
    return problems


def check_fits(spec: ModelSpec, sig: OnnxSignature, path: str | Path) -> None:
    """Raise ModelMismatchError naming the problem, what the file looks like, and the fix."""
    problems = fit_problems(spec, sig)
    if not problems:
        return
    family = guess_family(sig)
    if family is not None and family != spec.family:
        hint = (
            f"It looks like {A_FAMILY[family]} export: register it as its own model with `inspection model add NAME --onnx {path} "
            f"--family {family} --classes FILE`, or point model.path at {A_FAMILY.get(spec.family, spec.family)} file"
        )
    else:
        hint = "Re-export the model with that layout, or register it with the metadata that matches it (`inspection model add`)"
    raise ModelMismatchError(
        f"model {spec.name} (family {spec.family}) cannot use {path}: {'; '.join(problems)}. "
        f"The {spec.decoder['type']} decoder reads {expected_layout(spec)}; the file has {sig.describe()}. {hint}"
    )


def check_model_file(spec: ModelSpec, path: str | Path) -> None:
    """`check_fits` for an ONNX file on disk (the frozen TF graph of a built-in model is not checked)."""
    if Path(path).suffix.lower() != ".onnx":
        return
    check_fits(spec, OnnxSignature.from_file(path), path)
