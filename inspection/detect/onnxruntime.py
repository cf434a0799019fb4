"""Backend `onnxruntime`: the model's raw ONNX graph + our vectorised decoding and batched NMS.

The embedded default (fastest on the CPU). fp32 runs the raw graph (converted from the frozen
TF graph on first use); int8 runs the QDQ graph `inspection model quantize` writes (per-channel
INT8 weights, INT8 activations with ranges calibrated on real tiles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..config import DetectConfig, ModelConfig
from ..detections import Detections
from .base import Detector, ModelSpec
from .convert import resolve_model_file
from .postprocess import OutputDecoder, select_detections
from .preprocess import to_network_input
from .signature import OnnxSignature, check_fits


def model_path(spec: ModelSpec, model: ModelConfig) -> Path:
    """The ONNX file a precision runs: model.path as given (for int8 a QDQ file), else the raw graph or its INT8 (QDQ) twin."""
    if model.precision == "int8" and model.path is None:
        from .int8 import int8_path

        return int8_path(spec, must_exist=True)
    return resolve_model_file(spec, "onnx", model.path)


class OnnxRuntimeDetector(Detector):
    backend = "onnxruntime"
    has_forward = True

    def __init__(self, spec: ModelSpec, model: ModelConfig, detect: DetectConfig, onnx_path: Path | None = None) -> None:
        self.spec = spec
        self.config = detect
        self.precision = model.precision
        if model.precision == "bf16":
            raise ValueError(
                "model.precision=bf16 is not supported by backend onnxruntime (allowed: fp32, fp16, int8); bf16 runs on backend torch"
            )
        if model.precision == "fp16" and model.path is None:
            raise ValueError(
                "model.precision=fp16 with backend onnxruntime runs the file model.path names (an ONNX graph with fp16 "
                "weights); none is given. On the CPU use fp32 or int8; fp16 computes on backend torch or tensorrt"
            )
        self.path = onnx_path or model_path(spec, model)
        options = ort.SessionOptions()
        if model.threads:
            options.intra_op_num_threads = model.threads
        providers = ["CPUExecutionProvider"]
        if model.device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        check_fits(spec, OnnxSignature.from_session(self.session), self.path)
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
