"""TensorRT engines: ONNX -> serialized engine (FP32 / FP16 / INT8), cached on disk.

An engine is only valid for the exact network, precision, GPU model and TensorRT version it was
built with, so the cache key is the sha256 of all of those (`EngineSpec.key`); a changed ONNX
file, a different GPU or a TensorRT upgrade gets a new engine instead of a wrong one. The timing
cache (kernel timings, per GPU and TensorRT version) makes rebuilds fast. INT8 engines are
explicitly quantized: they are built from the QDQ graph `inspection model quantize` writes, whose
scales are part of the network (and of its sha256), so no calibrator or calibration cache is needed.

Only `build_engine` and `cuda_primary_context` need TensorRT / pycuda; everything else here is
plain Python, testable anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .base import model_cache_dir

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
KEY_VERSION = 2  # bump when the build recipe changes in a way that invalidates cached engines


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build the engine; the message says why."""


@dataclass(frozen=True)
class GpuIdentity:
    """What a TensorRT engine is tied to on the hardware side."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def slug(self) -> str:
        return (
            re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
            + f"-sm{self.compute_capability[0]}{self.compute_capability[1]}"
        )


@dataclass(frozen=True)
class EngineSpec:
    """Everything a built engine depends on; `key` changes whenever any of it does."""

    onnx_sha256: str
    precision: str
    gpu: GpuIdentity
    trt_version: str
    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 64
    profiles: int = 1  # identical optimisation profiles, one per concurrently running execution context

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch sizes must satisfy 1 <= min ({self.min_batch}) <= opt ({self.opt_batch}) <= max ({self.max_batch})"
            )
        if self.profiles < 1:
            raise ValueError(f"profiles must be >= 1, got {self.profiles}")

    @property
    def key(self) -> str:
        payload = dict(asdict(self), key_version=KEY_VERSION)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def file_name(self, stem: str) -> str:
        safe_stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
        trt = re.sub(r"[^0-9.]+", "", self.trt_version)
        return f"{safe_stem}-{self.precision}-{self.gpu.slug}-trt{trt}-{self.key[:12]}.engine"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def default_engine_dir() -> Path:
    return model_cache_dir() / "engines"


def timing_cache_path(cache_dir: Path, gpu: GpuIdentity, trt_version: str) -> Path:
    """Kernel timings are per GPU model and TensorRT version, shared by every network."""
    return Path(cache_dir) / f"timing-{gpu.slug}-trt{re.sub(r'[^0-9.]+', '', trt_version)}.cache"


SUPPORTED_TENSORRT = (10,)  # major versions this code is written for (pyproject: tensorrt>=10,<11)


def check_tensorrt_version(version: str) -> None:
    """TensorRT 11 removed the precision builder flags this code sets; older ones lack its API."""
    major = int(version.split(".")[0])
    if major not in SUPPORTED_TENSORRT:
        raise EngineBuildError(
            f"TensorRT {version} is installed; the engine builder is written for TensorRT "
            f"{'/'.join(map(str, SUPPORTED_TENSORRT))}.x: pip install 'tensorrt>=10,<11' (JetPack 6.1+ ships 10.x)"
        )


def has_qdq(onnx_path: str | Path) -> bool:
    """Whether an ONNX graph is explicitly quantized (holds QuantizeLinear/DequantizeLinear nodes)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def current_gpu(device_index: int = 0) -> GpuIdentity:
    """Name and compute capability of a CUDA device (pycuda)."""
    import pycuda.driver as cuda

    cuda.init()
    dev = cuda.Device(device_index)
    major, minor = dev.compute_capability()
    return GpuIdentity(dev.name(), (int(major), int(minor)))


@contextlib.contextmanager
def cuda_primary_context(device_index: int = 0) -> Iterator[Any]:
    """Make the device's primary context current for pycuda (TensorRT uses the same one)."""
    import pycuda.driver as cuda

    cuda.init()
    ctx = cuda.Device(device_index).retain_primary_context()
    ctx.push()
    try:
        yield ctx
    finally:
        cuda.Context.pop()


def _trt_logger(trt: Any, level: str) -> Any:
    levels = {"verbose": trt.Logger.VERBOSE, "info": trt.Logger.INFO, "warning": trt.Logger.WARNING, "error": trt.Logger.ERROR}
    return trt.Logger(levels[level])


def build_engine(
    onnx_path: str | Path,
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    *,
    min_batch: int = 1,
    opt_batch: int = 64,
    max_batch: int = 64,
    profiles: int = 1,
    workspace_mib: int = 2048,
    gpu: GpuIdentity | None = None,
    force: bool = False,
    log_level: str = "warning",
) -> Path:
    """Build (or find in the cache) the TensorRT engine for an ONNX file; returns the engine's path.

    precision: fp32, fp16 or int8. int8 is explicit quantization: `onnx_path` must be a QDQ graph
        (`inspection model quantize`, its TensorRT flavour); its scales are in the graph, so no
        calibrator is involved, and layers without Q/DQ run in fp16.
    cache_dir: where engines, the timing cache and sidecar metadata live (default: model cache/engines).
    min/opt/max_batch: the optimisation profile of the batch dimension (the tile batch is 64).
    profiles: identical profiles to create, one per execution context used concurrently.
    force: rebuild even when a cached engine exists.
    Written for TensorRT 10 (weakly typed network + precision flags; TensorRT 11 removed those)
    and pycuda (for the GPU's identity); raises EngineBuildError on failure.
    """
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file {onnx_path} does not exist")
    check_tensorrt_version(trt.__version__)
    if precision == "int8" and not has_qdq(onnx_path):
        raise EngineBuildError(
            f"precision int8 builds from a QDQ graph (explicit quantization); {onnx_path} has no "
            "QuantizeLinear/DequantizeLinear nodes: make it with `inspection model quantize NAME`"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_engine_dir()
    gpu = gpu or current_gpu()
    spec = EngineSpec(file_sha256(onnx_path), precision, gpu, trt.__version__, min_batch, opt_batch, max_batch, profiles)
    engine_path = cache / spec.file_name(onnx_path.stem)
    if engine_path.is_file() and not force:
        log.info("TensorRT engine cache hit: %s", engine_path)
        return engine_path

    logger = _trt_logger(trt, log_level)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    if network.num_inputs != 1:
        raise EngineBuildError(f"{onnx_path} has {network.num_inputs} inputs; the detector engines take one tile batch")
    inp = network.get_input(0)
    dims = tuple(inp.shape)
    if any(d < 0 for d in dims[1:]):
        raise EngineBuildError(
            f"{onnx_path}: input {inp.name} has dynamic non-batch dimensions {dims}; export it with a fixed tile size"
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    for _ in range(profiles):
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (min_batch, *dims[1:]), (opt_batch, *dims[1:]), (max_batch, *dims[1:]))
        config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: the layers outside Q/DQ pairs (the float heads) run in fp16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # with Q/DQ in the network TensorRT quantizes explicitly: no calibrator

    timing_path = timing_cache_path(cache, gpu, trt.__version__)
    timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build a {precision} engine from {onnx_path} (run with log_level='verbose' for details)"
        )
    seconds = time.monotonic() - started
    write_atomic(engine_path, memoryview(serialized))
    write_atomic(timing_path, memoryview(config.get_timing_cache().serialize()))
    meta = dict(
        asdict(spec),
        key=spec.key,
        onnx=str(onnx_path),
        build_seconds=round(seconds, 1),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    write_atomic(engine_path.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    log.info("built %s TensorRT engine %s in %.1f s", precision, engine_path, seconds)
    return engine_path


def load_engine(engine_path: str | Path, log_level: str = "warning") -> tuple[Any, Any]:
    """Deserialize an engine file -> (runtime, engine); the runtime must outlive the engine.
    Raises EngineBuildError when TensorRT refuses the file."""
    import tensorrt as trt

    runtime = trt.Runtime(_trt_logger(trt, log_level))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise EngineBuildError(
            f"TensorRT could not deserialize {engine_path}; delete it to rebuild (built for another GPU or TensorRT?)"
        )
    return runtime, engine
