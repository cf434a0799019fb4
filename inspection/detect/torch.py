"""Backend `torch`: the model's ONNX weights as a native torch module, on CUDA or CPU.

On CUDA: fp16 or fp32, channels-last, the whole fixed-shape part (normalisation, network, box
decoding, per-tile candidate top-k) captured once as a CUDA graph for the batch size (and once for
SMALL_BATCH tiles: a second look's crops) and replayed;
numpy batches enter through a pinned host buffer reused across calls; score floor and class-wise
NMS run on the GPU, their cost following the boxes a tile can keep (`torch_post`); one device->host
copy returns the detections. Frames can also stay on the GPU
end to end: nvJPEG decode and tiling on the GPU (`inspection.edge.gpu_frames`) -> `detect_tensor`.

On CPU: fp32 (or bf16), the same graph and post-processing (numpy NMS).

`model.compile` (default `none`) runs that fixed-shape part through `torch.compile` (inductor,
`fullgraph=True`, static shapes: chunks are padded to the batch size, so it compiles once per tile
size). With `model.cuda_graph` the backend captures the compiled kernels in its own CUDA graph, and
inductor's cudagraphs stay off (`max-autotune-no-cudagraphs`): two captures of one computation would
fight over static buffers. Without it, `max-autotune` brings inductor's own cudagraphs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DetectConfig, ModelConfig
from ..detections import Detections
from .base import Detector, ModelSpec
from .convert import resolve_model_file
from .signature import check_model_file
from .torch_graph import OnnxGraphModule
from .torch_post import Candidates, TorchCandidates, default_nms, select_from_candidates

DEFAULT_BATCH = 64
# Chunks of at most this many tiles (a second look's crops: second_look.max_crops <= 16) replay a graph of
# this size: on the 64-tile graph 12 crops cost a whole frame's network pass (H100, issue 17: with the
# second look on, every frame made two full-size requests to the GPU owner).
SMALL_BATCH = 16
WARMUP_RUNS = 3  # eager runs on a side stream before capture: cuDNN picks algorithms, allocator settles
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def compile_mode(choice: str, device: torch.device, own_cuda_graph: bool) -> str | None:
    """`model.compile` -> the torch.compile mode; None for the default mode."""
    if choice == "default":
        return None
    if choice == "max-autotune":
        # Inductor's cudagraphs only where nothing else captures (and only CUDA has them).
        return "max-autotune" if device.type == "cuda" and not own_cuda_graph else "max-autotune-no-cudagraphs"
    raise ValueError(f"model.compile={choice!r}: allowed none, default, max-autotune")


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "model.device=cuda but torch sees no CUDA device (torch.cuda.is_available() is False); use model.device=cpu"
        )
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())  # with its index: tensors report cuda:N


def normalisation(spec: ModelSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, 1 / std) as (3,) float32 tensors on `device`, made once: creating them inside a CUDA
    graph capture would be a host->device copy the capture cannot record."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
    return mean, 1.0 / torch.tensor(spec.std, dtype=torch.float32, device=device)


def preprocess_tiles(
    tiles: torch.Tensor, spec: ModelSpec, dtype: torch.dtype, norm: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """(N, T, T, 3) uint8 RGB on any device -> the network input (model layout, channel order,
    (x - mean) / std with `norm` from `normalisation`, fit to the input size), in `dtype`.
    NCHW comes out as a channels-last view."""
    n, th, tw = tiles.shape[:3]
    ih, iw = spec.input_size
    x = tiles
    if spec.fit == "pad" and (th, tw) != (ih, iw):
        if th > ih or tw > iw:
            raise ValueError(f"tile {tw}×{th} is larger than {spec.name}'s input {iw}×{ih}; use fit=resize")
        x = F.pad(x, (0, 0, 0, iw - tw, 0, ih - th), value=spec.pad_value)
    if spec.channel_order == "BGR":
        x = x.flip(-1)
    x = x.float()
    if spec.fit == "resize" and (th, tw) != (ih, iw):
        x = F.interpolate(x.permute(0, 3, 1, 2), size=(ih, iw), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    mean, inv_std = norm
    x = ((x - mean) * inv_std).to(dtype)
    return x.permute(0, 3, 1, 2) if spec.layout == "NCHW" else x


class _GraphRunner:
    """One captured CUDA graph of `fn` over a static (batch, T, T, 3) uint8 input buffer."""

    def __init__(self, fn: Callable[[torch.Tensor], object], batch: int, tile_hw: tuple[int, int], device: torch.device) -> None:
        self.batch = batch
        self.tile_hw = tile_hw
        self.static_input = torch.zeros((batch, *tile_hw, 3), dtype=torch.uint8, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(WARMUP_RUNS):
                fn(self.static_input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (nvJPEG decoding the next frames) keep launching work while
        # this one captures; in the default global mode their CUDA calls would be illegal.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"), torch.inference_mode():
            self.static_output = fn(self.static_input)

    def run(self, tiles: torch.Tensor) -> object:
        """Copy `tiles` (n <= batch, on the device) into the static input and replay; rows >= n are stale."""
        self.static_input[: tiles.shape[0]].copy_(tiles, non_blocking=True)
        self.graph.replay()
        return self.static_output


class TorchDetector(Detector):
    backend = "torch"
    takes_device_batches = True
    has_forward = True

    def __init__(
        self,
        spec: ModelSpec,
        model: ModelConfig,
        detect: DetectConfig,
        onnx_path: Path | None = None,
        batch_size: int = DEFAULT_BATCH,
        compile_backend: str = "inductor",
    ) -> None:
        """`compile_backend`: the torch.compile backend when `model.compile` is on; tests pass dynamo's
        "eager" backend, which checks the whole-graph trace without generating kernels."""
        self.spec = spec
        self.config = detect
        self.device = _device(model.device)
        if model.precision not in DTYPES:
            raise ValueError(
                f"model.precision={model.precision} is not supported by backend torch (allowed: {', '.join(DTYPES)}); INT8 runs on "
                "backend onnxruntime (CPU) or tensorrt, from `inspection model quantize`"
            )
        if model.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("model.precision=fp16 needs CUDA with backend torch; on CPU use model.precision=fp32 (or bf16)")
        self.precision = model.precision
        self.dtype = DTYPES[model.precision]
        self.batch_size = batch_size
        if model.threads and self.device.type == "cpu":
            torch.set_num_threads(model.threads)
        self.path = onnx_path or resolve_model_file(spec, "onnx", model.path)
        check_model_file(spec, self.path)
        net = OnnxGraphModule(self.path, self.dtype).eval()
        if self.device.type == "cuda":
            net = net.to(self.device, memory_format=torch.channels_last)
        self.net = net
        self.output_names = list(spec.decoder["outputs"].values())
        missing = set(self.output_names) - set(net.output_names)
        if missing:
            raise ValueError(
                f"model {spec.name}: ONNX file {self.path} has no output(s) {sorted(missing)}; it has {net.output_names}"
            )
        self._norm = normalisation(spec, self.device)
        self.class_ids = torch.as_tensor(spec.output_class_ids, dtype=torch.int64, device=self.device)
        self.use_cuda_graph = self.device.type == "cuda" and model.cuda_graph
        self.compile = model.compile
        self.compile_backend = compile_backend
        self._compile_mode = compile_mode(model.compile, self.device, self.use_cuda_graph) if model.compile != "none" else None
        self.nms = default_nms(self.device)
        self._candidates: dict[tuple[int, int], TorchCandidates] = {}
        self._fixed: dict[tuple[str, tuple[int, int]], Callable[[torch.Tensor], object]] = {}
        self._graphs: dict[tuple[str, tuple[int, int], int], _GraphRunner] = {}
        self._padded: dict[tuple[tuple[int, int], int], torch.Tensor] = {}
        self._pinned: torch.Tensor | None = None

    # -- building blocks ---------------------------------------------------------------------

    def _network(self, tiles: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.net(preprocess_tiles(tiles, self.spec, self.dtype, self._norm))
        return dict(zip(self.net.output_names, outputs))

    def _candidates_for(self, tile_hw: tuple[int, int]) -> TorchCandidates:
        if tile_hw not in self._candidates:
            self._candidates[tile_hw] = TorchCandidates(self.spec, self.config, tile_hw, self.device)
        return self._candidates[tile_hw]

    def _detect_part(self, tile_hw: tuple[int, int]) -> Callable[[torch.Tensor], Candidates]:
        candidates = self._candidates_for(tile_hw)
        return lambda tiles: candidates(self._network(tiles))

    def _fixed_part(self, kind: str, tile_hw: tuple[int, int]) -> Callable[[torch.Tensor], object]:
        """The fixed-shape function of `kind` ("detect": up to the candidates, "forward": the network),
        compiled when `model.compile` asks (once, on first call; fullgraph: a graph break is an error)."""
        key = (kind, tile_hw)
        if key not in self._fixed:
            fn = self._detect_part(tile_hw) if kind == "detect" else self._network
            if self.compile != "none":
                options = (
                    {"mode": self._compile_mode} if self.compile_backend == "inductor" else {"backend": self.compile_backend}
                )
                fn = torch.compile(fn, fullgraph=True, dynamic=False, **options)
            self._fixed[key] = fn
        return self._fixed[key]

    def _static_batch(self, n: int) -> int:
        """The fixed batch a chunk of n tiles runs at (CUDA graph, compiled): the small one when it holds them."""
        return SMALL_BATCH if n <= SMALL_BATCH < self.batch_size else self.batch_size

    def _runner(self, kind: str, tile_hw: tuple[int, int], batch: int) -> _GraphRunner:
        key = (kind, tile_hw, batch)
        if key not in self._graphs:
            self._graphs[key] = _GraphRunner(self._fixed_part(kind, tile_hw), batch, tile_hw, self.device)
        return self._graphs[key]

    def _run(self, kind: str, tiles: torch.Tensor) -> object:
        """The fixed-shape part for one chunk (<= batch_size tiles) on the device or in pinned memory.
        Rows of the result past the chunk's length are padding (CUDA graph, compiled)."""
        tile_hw = (int(tiles.shape[1]), int(tiles.shape[2]))
        batch = self._static_batch(int(tiles.shape[0]))
        if self.use_cuda_graph:
            return self._runner(kind, tile_hw, batch).run(tiles)
        tiles = tiles.to(self.device, non_blocking=True)
        if self.compile != "none" and tiles.shape[0] != batch:
            # Static shapes, one compilation each: a short chunk runs padded to its static batch.
            key = (tile_hw, batch)
            if key not in self._padded:
                self._padded[key] = torch.zeros((batch, *tile_hw, 3), dtype=torch.uint8, device=self.device)
            self._padded[key][: tiles.shape[0]].copy_(tiles)
            tiles = self._padded[key]
        with torch.inference_mode():
            return self._fixed_part(kind, tile_hw)(tiles)

    def _stage(self, tiles: np.ndarray) -> torch.Tensor:
        """A numpy chunk as a tensor: on CUDA a slice of one pinned buffer reused across calls (the
        graph runner copies it straight into its static input), on CPU the array itself."""
        if self.device.type != "cuda":
            return torch.from_numpy(np.ascontiguousarray(tiles))
        shape = (self.batch_size, *tiles.shape[1:])
        if self._pinned is None or tuple(self._pinned.shape) != shape:
            self._pinned = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        host = self._pinned[: len(tiles)]
        # Safe to overwrite: every call ends in a device->host copy, so the last upload is done.
        host.numpy()[...] = tiles
        return host

    @staticmethod
    def _check(tiles: np.ndarray | torch.Tensor) -> None:
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"tiles must be (N, T, T, 3) uint8 RGB, got {tuple(tiles.shape)} {tiles.dtype}")

    # -- public API ----------------------------------------------------------------------------

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        """(N, T, T, 3) uint8 RGB numpy tiles -> per-tile Detections (tile pixels, dataset class ids)."""
        self._check(tiles)
        parts = []
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            parts.append(self._detect_chunk(self._stage(chunk), score_threshold, start))
        return Detections.merge(parts)

    def detect_tensor(self, tiles: torch.Tensor, score_threshold: float | None = None) -> Detections:
        """Like `detect` for (N, T, T, 3) uint8 tiles already on the device (e.g. from `edge.gpu_frames.tile_on_gpu`)."""
        self._check(tiles)
        if tiles.device != self.device:
            raise ValueError(f"tiles are on {tiles.device}, the detector runs on {self.device}")
        parts = [
            self._detect_chunk(tiles[s : s + self.batch_size], score_threshold, s)
            for s in range(0, tiles.shape[0], self.batch_size)
        ]
        return Detections.merge(parts)

    def _detect_chunk(self, tiles: torch.Tensor, score_threshold: float | None, offset: int) -> Detections:
        floor = self.config.score_threshold if score_threshold is None else score_threshold
        tile_hw = (int(tiles.shape[1]), int(tiles.shape[2]))
        candidates = self._run("detect", tiles)
        with torch.inference_mode():
            found = select_from_candidates(candidates, tiles.shape[0], self.class_ids, self.config, tile_hw, floor, self.nms)
        if offset:
            return Detections(found.xyxy, found.score, found.class_id, found.tile_index + offset)
        return found

    def forward_only(self, tiles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The bare network (normalisation included) on <= batch_size uint8 tiles on the device,
        graph-replayed on CUDA. Returns the raw outputs in `net.output_names` order, un-synchronised:
        for timing with CUDA events. With a CUDA graph they are static buffers, overwritten by the
        next call, and rows past the input's length are stale."""
        out = self._run("forward", tiles)
        return tuple(out[name] for name in self.net.output_names)

    def forward(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Raw output tensors (float32 numpy) for a batch of tiles, like OnnxRuntimeDetector.forward."""
        self._check(tiles)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, len(tiles), self.batch_size):
            chunk = tiles[start : start + self.batch_size]
            out = self._run("forward", self._stage(chunk))
            parts.append({k: v[: len(chunk)].float().cpu().numpy() for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def warmup(self, tile_hw: tuple[int, int]) -> None:
        """Build and capture everything for this tile size now, before frames arrive (CUDA graph
        capture, cuDNN algorithm choice), so the first frames of a car do not pay for it."""
        tiles = torch.zeros((self.batch_size, *tile_hw, 3), dtype=torch.uint8, device=self.device)
        self.detect_tensor(tiles)
        self.detect_tensor(tiles[:SMALL_BATCH])  # the second look's crops: their own small graph
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self._graphs.clear()
        self._fixed.clear()
        self._padded.clear()
        self._pinned = None
        self.net = None  # type: ignore[assignment]
