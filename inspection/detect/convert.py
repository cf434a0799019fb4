"""`inspection model convert`: the frozen TF graph -> the raw ONNX graph the other backends use.

The graph is cut before TF's post-processing (from `Preprocessor/sub:0` to the box encodings and
sigmoid scores): converting TF's post-processing too loses accuracy (its internal score threshold
drops low-confidence boxes), and our own decoder + batched NMS replace it. Needs the `convert`
extra (tensorflow-cpu, tf2onnx).
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import ModelSpec, model_cache_dir, resolve_model_file


class ConverterMissingError(RuntimeError):
    pass


def convert_to_onnx(spec: ModelSpec, out_path: Path | None = None) -> Path:
    """Convert the model's frozen graph to ONNX at the cache location (or `out_path`); returns the path."""
    if not spec.convert:
        raise ValueError(f"model {spec.name} has no conversion recipe; pass its ONNX file with model.path")
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise ConverterMissingError(
            f"converting {spec.name} needs TensorFlow and tf2onnx: pip install 'inspection[convert]' ({exc})"
        ) from exc
    graph_path = resolve_model_file(spec, "frozen_graph")
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_path.read_bytes())
    target = out_path or model_cache_dir() / spec.files["onnx"]["cache"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=[spec.convert["input_tensor"]],
        output_names=list(spec.convert["output_tensors"]),
        opset=int(spec.convert.get("opset", 13)),
        output_path=str(partial),
    )
    os.replace(partial, target)  # a crash mid-conversion never leaves a half-written model in the cache
    return target
