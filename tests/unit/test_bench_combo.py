"""A bench combo as the model configuration every bench mode (sweep, end to end, peers) runs."""

from __future__ import annotations

import pytest

from inspection.bench import Combo
from inspection.config import ModelConfig


def test_gpu_backend_takes_the_device_and_eager_turns_the_cuda_graph_off() -> None:
    base = ModelConfig(cuda_graph=True, threads=3)
    graph = Combo.parse("ssd_mobilenet_v2_coco:torch:fp16").model_config(base, "cuda")
    eager = Combo.parse("ssd_mobilenet_v2_coco:torch:fp16:eager").model_config(base, "cuda")
    assert (graph.backend, graph.precision, graph.device, graph.cuda_graph, graph.threads) == ("torch", "fp16", "cuda", True, 3)
    assert eager.cuda_graph is False and eager.device == "cuda"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cpu_backends_run_on_the_cpu_beside_gpu_ones(precision: str) -> None:
    config = Combo.parse(f"ssd_mobilenet_v2_coco:onnxruntime:{precision}").model_config(ModelConfig(), "cuda")
    assert config.device == "cpu" and config.backend == "onnxruntime" and config.precision == precision
