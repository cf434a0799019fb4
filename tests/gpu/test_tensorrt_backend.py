"""Backend tensorrt on a real GPU: engine build and cache, FP16 and INT8 (explicit quantization
from the QDQ graph `inspection model quantize` writes), pipelined `detect_many`, agreement with
onnxruntime and coco_tiny mAP.

Skipped where TensorRT or pycuda is missing (the parts that need neither are tested in
tests/unit/test_engine_cache.py).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
    pytest.skip("TensorRT/pycuda not installed", allow_module_level=True)

from inspection.config import DetectConfig, ModelConfig
from inspection.detect import load_spec
from inspection.detect.engine import EngineBuildError, build_engine, cuda_primary_context
from inspection.detect.onnxruntime import OnnxRuntimeDetector
from inspection.detect.tensorrt import TensorRTDetector
from inspection.tiling import TileGrid
from inspection.tools.quantize import QuantizeSettings, quantize_model
from tests.gpu.detection_checks import assert_detections_agree, coco_tiles, tile_level_map

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def spec():
    return load_spec("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def tiles64(coco_tiny):
    return coco_tiles(coco_tiny, 64)[0]


@pytest.fixture(scope="module")
def reference(spec, ssd_onnx):
    return OnnxRuntimeDetector(spec, ModelConfig(backend="onnxruntime", path=ssd_onnx), DetectConfig())


def _detector(spec, onnx, cache_dir, precision, **extra):
    model = ModelConfig(backend="tensorrt", device="cuda", precision=precision, path=onnx, engine_cache_dir=cache_dir, **extra)
    return TensorRTDetector(spec, model, DetectConfig())


def test_engine_is_built_once_and_then_found_in_the_cache(ssd_onnx, cache_dir):
    with cuda_primary_context():
        first = build_engine(ssd_onnx, "fp16", cache_dir, profiles=2)
        stamp = first.stat().st_mtime_ns
        assert build_engine(ssd_onnx, "fp16", cache_dir, profiles=2) == first
        assert first.stat().st_mtime_ns == stamp
        assert first.with_suffix(".json").is_file()
        assert any(p.name.startswith("timing-") for p in cache_dir.iterdir())
        assert build_engine(ssd_onnx, "fp32", cache_dir, profiles=2) != first


@pytest.mark.parametrize("precision, max_score_diff", [("fp32", 0.02), ("fp16", 0.03)])
def test_tensorrt_agrees_with_onnxruntime(spec, ssd_onnx, cache_dir, reference, tiles64, precision, max_score_diff):
    detector = _detector(spec, ssd_onnx, cache_dir, precision)
    try:
        for floor in (0.3, 0.05):
            assert_detections_agree(reference.detect(tiles64, floor), detector.detect(tiles64, floor), floor, 0.9, max_score_diff)
    finally:
        detector.close()


def test_detect_many_pipelines_batches_in_order(spec, ssd_onnx, cache_dir, tiles64):
    graphed = _detector(spec, ssd_onnx, cache_dir, "fp16", contexts=2)
    serial = _detector(spec, ssd_onnx, cache_dir, "fp16", contexts=2, cuda_graph=False)
    try:
        batches = [tiles64, tiles64[::-1].copy(), tiles64[:10], tiles64]
        results = list(graphed.detect_many(batches))
        assert len(results) == len(batches)
        for batch, found in zip(batches, results):
            assert_detections_agree(serial.detect(batch), found, DetectConfig().score_threshold, 0.99, 1e-3)
    finally:
        graphed.close()
        serial.close()


@pytest.fixture(scope="module")
def qdq_tensorrt(spec, ssd_onnx, tmp_path_factory):
    """The TensorRT flavour of the QDQ graph, calibrated on the demo's photo frames."""
    out = tmp_path_factory.mktemp("int8")
    return quantize_model(
        spec, TileGrid(), settings=QuantizeSettings(tiles=256), fp32_path=ssd_onnx, out_dir=out, flavours=["tensorrt"]
    )["tensorrt"]


@pytest.mark.slow
def test_int8_engine_from_the_qdq_graph_keeps_map_close(spec, qdq_tensorrt, cache_dir, coco_tiny, reference):
    pytest.importorskip("pycocotools")
    detector = _detector(spec, qdq_tensorrt, cache_dir, "int8")
    try:
        assert tile_level_map(detector, coco_tiny) >= tile_level_map(reference, coco_tiny) - 0.01
    finally:
        detector.close()


def test_int8_needs_a_qdq_graph(ssd_onnx, tmp_path):
    with cuda_primary_context(), pytest.raises(EngineBuildError, match="inspection model quantize"):
        build_engine(ssd_onnx, "int8", tmp_path)


@pytest.mark.slow
def test_fp16_tile_level_map_matches_onnxruntime(spec, ssd_onnx, cache_dir, coco_tiny, reference):
    pytest.importorskip("pycocotools")
    detector = _detector(spec, ssd_onnx, cache_dir, "fp16")
    try:
        assert abs(tile_level_map(detector, coco_tiny) - tile_level_map(reference, coco_tiny)) <= 0.005
    finally:
        detector.close()


def test_int8_without_a_quantized_graph_says_how_to_make_one(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="inspection model quantize ssd_mobilenet_v2_coco"):
        TensorRTDetector(
            spec, ModelConfig(backend="tensorrt", device="cuda", precision="int8", engine_cache_dir=tmp_path), DetectConfig()
        )


def test_results_are_independent_of_tile_order(spec, ssd_onnx, cache_dir, tiles64):
    detector = _detector(spec, ssd_onnx, cache_dir, "fp16")
    try:
        forward = detector.detect(tiles64)
        backward = detector.detect(tiles64[::-1].copy())
        from inspection.detections import Detections

        flipped = Detections(backward.xyxy, backward.score, backward.class_id, 63 - backward.tile_index)
        assert_detections_agree(forward, flipped, DetectConfig().score_threshold, 0.99, 1e-2)
        assert np.all(np.diff(forward.tile_index) >= 0)
    finally:
        detector.close()
