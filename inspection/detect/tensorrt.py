"""Backend `tensorrt`: the production path (Jetson, V100). TensorRT 10 engine + pycuda runtime.

- The engine comes from `engine.build_engine` (cached per ONNX, precision, GPU, TensorRT version);
  INT8 is explicit quantization from the QDQ graph of `inspection model quantize` (its TensorRT
  flavour, symmetric int8), no calibrator.
- One *slot* per execution context (`model.contexts`, each with its own optimisation profile, as
  TensorRT requires for contexts running at once): pinned host buffers and device buffers
  allocated once and reused, its own compute stream, and optionally a CUDA graph of
  `execute_async_v3` captured for the full batch.
- Host -> device copies run on a separate copy stream; events order each copy before its compute,
  so the upload of batch n+1 (and its host preprocessing, and the decoding of batch n-1) overlaps
  the compute of batch n (`detect_many`).
- Output tensors go through the shared numpy `OutputDecoder` + `select_detections`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DetectConfig, ModelConfig
from ..detections import Detections
from .base import Detector, MissingBackendError, ModelSpec, resolve_model_file
from .engine import build_engine, default_engine_dir, load_engine
from .postprocess import OutputDecoder, select_detections
from .preprocess import fit_tiles
from .signature import check_model_file

DEFAULT_BATCH = 64
MISSING = "TensorRT/pycuda not installed"


def import_runtime() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver), or ImportError saying what to install."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise MissingBackendError(
            f"backend tensorrt: {MISSING} ({exc}); install TensorRT 10 (JetPack on Jetson, the NGC TensorRT image "
            "or NVIDIA's pip install 'tensorrt>=10,<11') and pip install 'inspection[gpu]' (pycuda), or use model.backend=torch / onnxruntime"
        ) from exc
    return trt, cuda


def engine_onnx(spec: ModelSpec, model: ModelConfig) -> Path:
    """The ONNX graph an engine is built from: model.path as given, else the raw graph, or for
    int8 the TensorRT flavour of the QDQ graph (`inspection model quantize`)."""
    if model.precision == "int8" and model.path is None:
        from .quantize import int8_path

        return int8_path(spec, must_exist=True, flavour="tensorrt")
    return resolve_model_file(spec, "onnx", model.path)


def write_network_input(tiles: np.ndarray, spec: ModelSpec, out: np.ndarray) -> None:
    """Preprocess (n, T, T, 3) uint8 tiles straight into `out` (e.g. a pinned buffer's first n rows):
    the same maths as `preprocess.to_network_input`, without an intermediate float array."""
    x = fit_tiles(tiles, spec)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    shape = (1, 1, 1, 3)
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
        shape = (1, 3, 1, 1)
    np.subtract(x, np.asarray(spec.mean, np.float32).reshape(shape), out=out, dtype=np.float32)
    out *= (1.0 / np.asarray(spec.std, np.float32)).reshape(shape)


class _Slot:
    """One execution context with its buffers, stream, events and (optional) CUDA graph."""

    def __init__(
        self,
        trt: Any,
        cuda: Any,
        engine: Any,
        profile: int,
        input_name: str,
        output_names: list[str],
        batch: int,
        use_graph: bool,
    ) -> None:
        self.cuda = cuda
        self.stream = cuda.Stream()
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self.context.set_optimization_profile_async(profile, self.stream.handle)
        input_shape = (batch, *tuple(engine.get_tensor_shape(input_name))[1:])
        if not self.context.set_input_shape(input_name, input_shape):
            raise RuntimeError(f"TensorRT refused input shape {input_shape} for {input_name} (profile {profile})")
        self.host_in = cuda.pagelocked_empty(input_shape, trt.nptype(engine.get_tensor_dtype(input_name)))
        self.dev_in = cuda.mem_alloc(self.host_in.nbytes)
        self.context.set_tensor_address(input_name, int(self.dev_in))
        self.host_out: dict[str, np.ndarray] = {}
        self.dev_out: dict[str, Any] = {}
        for name in output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            self.host_out[name] = cuda.pagelocked_empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
            self.dev_out[name] = cuda.mem_alloc(self.host_out[name].nbytes)
            self.context.set_tensor_address(name, int(self.dev_out[name]))
        self.uploaded = cuda.Event(cuda.event_flags.DISABLE_TIMING)
        self.done = cuda.Event(cuda.event_flags.DISABLE_TIMING)
        self.graph = None
        if use_graph:
            # TensorRT finishes shape-dependent setup on the first enqueue after a shape change: run it once
            # outside the capture, then record the steady-state enqueue.
            self._enqueue()
            self.stream.synchronize()
            self.stream.begin_capture()
            try:
                self._enqueue()
            finally:
                graph = self.stream.end_capture()
            self.graph = graph.instantiate()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def launch(self) -> None:
        if self.graph is not None:
            self.graph.launch(self.stream)
        else:
            self._enqueue()


class TensorRTDetector(Detector):
    backend = "tensorrt"

    def __init__(
        self,
        spec: ModelSpec,
        model: ModelConfig,
        detect: DetectConfig,
        onnx_path: Path | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if model.device == "cpu":
            raise ValueError("backend tensorrt runs on CUDA; for model.device=cpu use backend onnxruntime or torch")
        trt, cuda = import_runtime()
        self.spec = spec
        self.config = detect
        self.precision = model.precision
        self.batch_size = batch_size
        self.decoder = OutputDecoder(spec)
        self._cuda = cuda
        cuda.init()
        self._ctx = cuda.Device(0).retain_primary_context()
        self._ctx.push()
        try:
            onnx = onnx_path or engine_onnx(spec, model)
            check_model_file(spec, onnx)
            cache_dir = Path(model.engine_cache_dir) if model.engine_cache_dir else default_engine_dir()
            self.engine_path = build_engine(
                onnx, model.precision, cache_dir, opt_batch=batch_size, max_batch=batch_size, profiles=model.contexts
            )
            self._runtime, self.engine = load_engine(self.engine_path)
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            if len(inputs) != 1:
                raise RuntimeError(f"engine {self.engine_path} has inputs {inputs}; expected one tile batch")
            self.input_name = inputs[0]
            self.output_names = self.decoder.output_names
            missing = set(self.output_names) - set(names)
            if missing:
                raise RuntimeError(f"engine {self.engine_path} lacks outputs {sorted(missing)}; it has {names}")
            if self.engine.num_optimization_profiles < model.contexts:
                raise RuntimeError(
                    f"engine {self.engine_path} has {self.engine.num_optimization_profiles} profiles, model.contexts={model.contexts}"
                )
            self.copy_stream = cuda.Stream()
            self.slots = [
                _Slot(trt, cuda, self.engine, i, self.input_name, self.output_names, batch_size, model.cuda_graph)
                for i in range(model.contexts)
            ]
        finally:
            cuda.Context.pop()

    # -- pipeline ----------------------------------------------------------------------------

    def _submit(self, slot: _Slot, tiles: np.ndarray) -> None:
        """Preprocess into the slot's pinned input, upload on the copy stream, compute + download on
        the slot's stream, ordered by events. Asynchronous: returns before the GPU is done."""
        cuda = self._cuda
        n = len(tiles)
        write_network_input(tiles, self.spec, slot.host_in[:n])
        cuda.memcpy_htod_async(slot.dev_in, slot.host_in[:n], self.copy_stream)
        slot.uploaded.record(self.copy_stream)
        slot.stream.wait_for_event(slot.uploaded)
        slot.launch()  # the full batch: rows past n hold stale data and are ignored
        for name in self.output_names:
            cuda.memcpy_dtoh_async(slot.host_out[name][:n], slot.dev_out[name], slot.stream)
        slot.done.record(slot.stream)

    def _finish(self, slot: _Slot, n: int, tile_hw: tuple[int, int], score_threshold: float | None) -> Detections:
        slot.done.synchronize()
        raw = self.decoder.decode({name: slot.host_out[name][:n] for name in self.output_names})
        return select_detections(raw, self.spec, self.config, tile_hw, score_threshold)

    def detect_many(self, batches: Iterable[np.ndarray], score_threshold: float | None = None) -> Iterator[Detections]:
        """Detections of each batch (<= batch_size tiles) in order, with up to `model.contexts`
        batches on the GPU at once. Each result is yielded as soon as it is ready."""
        in_flight: deque[tuple[_Slot, int, tuple[int, int]]] = deque()
        index = 0
        for tiles in batches:
            if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
                raise ValueError(f"tiles must be (N, T, T, 3) uint8 RGB, got {tiles.shape} {tiles.dtype}")
            if len(tiles) > self.batch_size:
                raise ValueError(
                    f"batch of {len(tiles)} tiles exceeds the engine's batch {self.batch_size} (configs: grid.batch_size)"
                )
            slot = self.slots[index % len(self.slots)]
            index += 1
            if len(in_flight) == len(self.slots):  # the slot's previous batch is the oldest in flight
                yield self._in_context(self._finish, *in_flight.popleft(), score_threshold)
            self._in_context(self._submit, slot, tiles)
            in_flight.append((slot, len(tiles), tiles.shape[1:3]))
        while in_flight:
            yield self._in_context(self._finish, *in_flight.popleft(), score_threshold)

    def _in_context(self, fn: Any, *args: Any) -> Any:
        """pycuda calls need the context current on the calling thread; TensorRT shares it."""
        self._ctx.push()
        try:
            return fn(*args)
        finally:
            self._cuda.Context.pop()

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        chunks = [tiles[s : s + self.batch_size] for s in range(0, len(tiles), self.batch_size)]
        parts = []
        for k, found in enumerate(self.detect_many(chunks, score_threshold)):
            offset = k * self.batch_size
            parts.append(Detections(found.xyxy, found.score, found.class_id, found.tile_index + offset) if offset else found)
        return Detections.merge(parts)

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._ctx.push()
        try:
            for slot in getattr(self, "slots", []):
                slot.stream.synchronize()
            self.slots = []  # buffers, contexts and graphs are freed with the slots, inside the context
            self.engine = None
            self._runtime = None
        finally:
            self._cuda.Context.pop()
        self._ctx.detach()
        self._ctx = None
