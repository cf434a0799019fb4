"""Backend `onnxruntime`: the model's raw ONNX graph + our vectorised decoding and batched NMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..config import DetectConfig, ModelConfig
from ..detections import Detections
from .base import ModelSpec, resolve_model_file
from .postprocess import OutputDecoder, select_detections
from .preprocess import to_network_input


class OnnxRuntimeDetector:
    backend = "onnxruntime"

    def __init__(self, spec: ModelSpec, model: ModelConfig, detect: DetectConfig, onnx_path: Path | None = None) -> None:
        self.spec = spec
        self.config = detect
        self.precision = model.precision
        if model.precision in ("int8", "bf16"):
            raise ValueError(f"model.precision={model.precision} is not supported by backend onnxruntime (allowed: fp32, fp16)")
        self.path = onnx_path or resolve_model_file(spec, "onnx", model.path)
        options = ort.SessionOptions()
        if model.threads:
            options.intra_op_num_threads = model.threads
        providers = ["CPUExecutionProvider"]
        if model.device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.decoder = OutputDecoder(spec)
        self.output_names = self.decoder.output_names

    def forward(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Raw output tensors for a batch of tiles (no decoding)."""
        outputs = self.session.run(self.output_names, {self.input_name: to_network_input(tiles, self.spec)})
        return dict(zip(self.output_names, outputs))

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        raw = self.decoder.decode(self.forward(tiles))
        return select_detections(raw, self.spec, self.config, tiles.shape[1:3], score_threshold)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
