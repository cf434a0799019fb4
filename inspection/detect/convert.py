"""`inspection model convert`: the frozen TF graph -> the raw ONNX graph the other backends use.

No TensorFlow: `tf_graph` parses the GraphDef with the protobuf runtime and `tf_to_onnx` maps its
operators to ONNX. The graph is cut before TF's post-processing (from `Preprocessor/sub:0` to the
box encodings and sigmoid scores): converting TF's post-processing too loses accuracy (its
internal score threshold drops low-confidence boxes), and our own decoder + batched NMS replace it.

`ensure_onnx` is what backends call: the model cache's ONNX file, converted once on first use,
under a file lock (two processes starting at once convert once), written atomically (a crash
mid-write never leaves a half-written model in the cache).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..files import atomic_path
from .base import ModelNotFoundError, ModelSpec, find_model_file, model_cache_dir, model_file_location

Progress = Callable[[str], None]
LOCK_TIMEOUT_S = 600.0  # a conversion takes seconds; a lock held this long belongs to a stuck process


def _stderr(message: str) -> None:
    print(f"inspection: {message}", file=sys.stderr, flush=True)


def cache_path(spec: ModelSpec) -> Path:
    """Where the model's converted ONNX file lives in the model cache."""
    return model_cache_dir() / spec.files["onnx"]["cache"]


def resolve_model_file(spec: ModelSpec, kind: str, override: str | Path | None = None, auto_convert: bool = True) -> Path:
    """Path of one of the model's files (`onnx`, `frozen_graph`), see `base.find_model_file`.

    A model with a conversion recipe gets its ONNX file converted into the cache on first use
    (`auto_convert`, `ensure_onnx`); otherwise a missing file raises ModelNotFoundError saying how to get it.
    """
    path = find_model_file(spec, kind, override)
    if path is not None:
        return path
    if kind == "onnx" and spec.convert and auto_convert:
        return ensure_onnx(spec)
    _, how = model_file_location(spec, kind)
    raise ModelNotFoundError(
        f"model {spec.name}: {kind} file not found at {model_cache_dir() / spec.files[kind]['cache']}; get it with: {how}"
    )


def convert_to_onnx(spec: ModelSpec, out_path: Path | None = None, progress: Progress | None = None) -> Path:
    """Convert the model's frozen graph to ONNX at the cache location (or `out_path`); returns the path."""
    import onnx

    from .tf_graph import TfGraph
    from .tf_to_onnx import TfToOnnx

    if not spec.convert:
        raise ValueError(f"model {spec.name} has no conversion recipe; pass its ONNX file with model.path")
    if spec.layout != "NHWC":
        raise ValueError(f"model {spec.name}: the converter keeps TensorFlow's NHWC input; the metadata says {spec.layout}")
    graph_path = resolve_model_file(spec, "frozen_graph")
    target = Path(out_path) if out_path is not None else cache_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    graph = TfGraph.load(graph_path)
    ih, iw = spec.input_size
    converter = TfToOnnx(
        graph,
        spec.convert["input_tensor"],
        [None, ih, iw, 3],
        list(spec.convert["output_tensors"]),
        opset=int(spec.convert.get("opset", 13)),
    )
    model = converter.convert()
    with atomic_path(target) as partial:
        onnx.save(model, str(partial))
    if progress is not None:
        progress(
            f"converted {spec.name} ({graph_path.name}, {len(model.graph.node)} ONNX nodes) in {time.monotonic() - started:.1f} s: {target}"
        )
    return target


def ensure_onnx(spec: ModelSpec, progress: Progress | None = _stderr) -> Path:
    """The model's ONNX file in the cache, converted from its frozen graph the first time it is asked for.

    Raises ModelNotFoundError naming the package to install when the frozen graph is missing.
    """
    from filelock import FileLock, Timeout

    target = cache_path(spec)
    if target.is_file():
        return target
    if not spec.convert:
        raise ModelNotFoundError(
            f"model {spec.name}: ONNX file not found at {target}; get it with: {spec.files['onnx'].get('made_by', 'pass model.path')}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelNotFoundError(
            f"model {spec.name}: cannot create the model cache {target.parent} ({exc}); "
            f"set INSPECTION_MODEL_DIR to a writable folder"
        ) from None
    lock = FileLock(str(target) + ".lock")
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            if target.is_file():  # another process converted it while this one waited
                return target
            if progress is not None:
                progress(
                    f"first use of {spec.name} with an ONNX backend: converting its frozen TensorFlow graph to ONNX, once, into {target}"
                )
            return convert_to_onnx(spec, target, progress)
    except Timeout:
        raise ModelNotFoundError(
            f"model {spec.name}: waited {LOCK_TIMEOUT_S:.0f} s for another process converting into {target}; "
            f"if none is running, delete {lock.lock_file} and retry"
        ) from None
