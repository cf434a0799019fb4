"""INT8 by explicit quantization: `inspection model quantize` writes QDQ graphs calibrated on real
tiles; onnxruntime runs the CPU flavour, the TensorRT flavour has what TensorRT's explicit
quantization requires (symmetric int8, zero point 0)."""

from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from inspection.cli import app
from inspection.config import DetectConfig, ModelConfig, StitchConfig
from inspection.detect import create_detector, load_spec
from inspection.detect.int8 import int8_path
from inspection.stitch import stitch
from inspection.tiling import TileGrid
from inspection.tools.evaluate import evaluate
from inspection.tools.quantize import QuantizeSettings, output_tail, quantize_model
from synthetic.coco import CocoDataset

runner = CliRunner()


def zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    return [numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """Both flavours of the SSD (its graph converted on first use), calibrated on 16 tiles of the demo's photo frames (fast)."""
    folder = tmp_path_factory.mktemp("int8")
    paths = quantize_model(load_spec("ssd_mobilenet_v2_coco"), TileGrid(), settings=QuantizeSettings(tiles=16), out_dir=folder)
    return folder, paths


def test_quantize_writes_both_flavours_with_their_activation_types(quantized):
    folder, paths = quantized
    assert set(paths) == {"onnxruntime", "tensorrt"}
    cpu, trt = (onnx.load(str(paths[k])) for k in ("onnxruntime", "tensorrt"))
    assert {z.dtype for z in zero_points(cpu)} == {np.dtype(np.uint8)}
    trt_zero = zero_points(trt)
    assert trt_zero and {z.dtype for z in trt_zero} == {np.dtype(np.int8)} and all(not z.any() for z in trt_zero)
    # weights: int8, symmetric, one scale per output channel
    inits = {t.name: numpy_helper.to_array(t) for t in trt.graph.initializer}
    conv_weights = [
        n
        for n in trt.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].ndim == 4
    ]
    assert len(conv_weights) == 76 and all(inits[n.input[1]].ndim == 1 for n in conv_weights)  # every conv, heads included
    # 7-bit weight range (reduce_range): onnxruntime's AVX2 kernels without VNNI saturate on full-range int8 weights
    assert max(int(np.abs(inits[n.input[0]].astype(np.int16)).max()) for n in conv_weights) <= 64
    # after the heads' convolutions everything is float: no QuantizeLinear reads a tail node's output
    kinds = {n.name: n.op_type for n in trt.graph.node}
    tail = {name for name in output_tail(trt) if kinds[name] not in ("QuantizeLinear", "DequantizeLinear")}
    producers = {o: n for n in trt.graph.node for o in n.output}
    assert (
        len(tail) == 41 - 12 and "Postprocessor/convert_scores" in tail
    )  # 12 transposes + 12 reshapes, 2 concats, sigmoid, 2 outputs
    assert not [
        n.name
        for n in trt.graph.node
        if n.op_type == "QuantizeLinear" and producers.get(n.input[0]) and producers[n.input[0]].name in tail
    ]
    meta = json.loads((folder / "int8_qdq.json").read_text())
    assert (
        meta["tiles"] == 16 and meta["source"].startswith("photo frames") and set(meta["flavours"]) == {"onnxruntime", "tensorrt"}
    )


def test_int8_detector_agrees_with_fp32_on_real_tiles(quantized, coco_tiny):
    """Even on 16 calibration tiles, the INT8 graph keeps the confident detections of fp32."""
    from tests.integration.test_backends import match_detections

    _, paths = quantized
    dataset = CocoDataset.load(coco_tiny / "val2017", coco_tiny / "annotations" / "instances_val2017.json")
    from synthetic.compose import compose_mosaics

    grid = TileGrid()
    tiles = grid.tiles(compose_mosaics(dataset, grid, limit=40).frames[0])
    fp32 = create_detector(ModelConfig(), DetectConfig()).detect(tiles)
    int8 = create_detector(ModelConfig(precision="int8", path=paths["onnxruntime"]), DetectConfig())
    assert int8.precision == "int8"
    found = int8.detect(tiles)
    strong = fp32.with_score_at_least(0.5)
    assert len(strong) > 20 and len(match_detections(strong, found, min_iou=0.7)) >= 0.85 * len(strong)


def test_quantize_command_and_int8_from_the_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    result = runner.invoke(
        app, ["model", "quantize", "ssd_mobilenet_v2_coco", "--tiles", "8", "--for", "onnxruntime"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    path = int8_path(load_spec("ssd_mobilenet_v2_coco"))
    assert path.is_file() and not int8_path(load_spec("ssd_mobilenet_v2_coco"), flavour="tensorrt").is_file()
    assert create_detector(ModelConfig(precision="int8"), DetectConfig()).path == path
    bad = runner.invoke(app, ["model", "quantize", "ssd_mobilenet_v2_coco", "--for", "tflite"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "onnxruntime, tensorrt" in bad.output


@pytest.mark.slow
def test_int8_map_on_coco_tiny_within_001_of_fp32(coco_tiny, tmp_path):
    """The issue's target, on the default calibration (256 tiles of the photo frames, nothing from coco_tiny)."""
    paths = quantize_model(load_spec("ssd_mobilenet_v2_coco"), TileGrid(), out_dir=tmp_path)
    dataset = CocoDataset.load(coco_tiny / "val2017", coco_tiny / "annotations" / "instances_val2017.json")
    scores = {}
    for flavour, model in (("fp32", ModelConfig()), *((f, ModelConfig(precision="int8", path=p)) for f, p in paths.items())):
        report = evaluate(
            create_detector(model, DetectConfig()),
            dataset,
            TileGrid(),
            stitch_fn=functools.partial(stitch, config=StitchConfig()),
        )
        scores[flavour] = (report.tile["mAP"], report.frame["mAP"])
    for flavour in paths:
        for level in (0, 1):  # tile, frame: INT8 loses at most 0.01 (on 80 images it may also score a little higher)
            assert scores["fp32"][level] - 0.01 <= scores[flavour][level] <= scores["fp32"][level] + 0.03, scores
