"""Real models on real COCO tiles: the decoder against TF's own outputs, and backends agreeing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inspection.boxes import box_iou
from inspection.config import DetectConfig, ModelConfig
from inspection.detect import create_detector, load_spec
from inspection.detect.postprocess import OutputDecoder
from inspection.detect.preprocess import to_network_input
from inspection.detect.ssd import anchors_from_decoder, decode_ssd_boxes


@pytest.fixture(scope="module")
def coco_tiles(coco_tiny) -> np.ndarray:
    """64 real COCO images resized to 300×300 RGB tiles (the model's own plain resize)."""
    images = json.loads((coco_tiny / "annotations" / "instances_val2017.json").read_text())["images"]
    tiles = []
    for image in images[:64]:
        bgr = cv2.imread(str(coco_tiny / "val2017" / image["file_name"]))
        tiles.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (300, 300), interpolation=cv2.INTER_LINEAR))
    return np.stack(tiles)


@pytest.fixture(scope="module")
def ort_ssd(ssd_onnx):
    return create_detector(ModelConfig(backend="onnxruntime", path=ssd_onnx), DetectConfig())


def test_anchor_generator_reproduces_tf_anchors(ssd_dir):
    anchors = anchors_from_decoder(load_spec("ssd_mobilenet_v2_coco").decoder)
    np.testing.assert_allclose(anchors, np.load(ssd_dir / "anchors_300.npy"), atol=1e-6)


def test_preprocessing_and_graph_reproduce_tf_reference(ssd_dir, ort_ssd):
    ref = np.load(ssd_dir / "tf_reference_outputs.npz")
    x = ref["x"].astype(np.uint8)
    np.testing.assert_allclose(to_network_input(x, ort_ssd.spec), ref["pre"], atol=1e-6)
    out = ort_ssd.forward(x)
    np.testing.assert_allclose(out["concat:0"], ref["enc"], atol=1e-4)
    np.testing.assert_allclose(out["Postprocessor/convert_scores:0"], ref["sc"], atol=1e-4)


def test_decoder_on_tf_reference_outputs(ssd_dir, ort_ssd):
    """Decoding TF's own encodings and ours gives the same boxes; zero encodings give the anchors."""
    ref = np.load(ssd_dir / "tf_reference_outputs.npz")
    decoder = OutputDecoder(ort_ssd.spec)
    ours = decoder.decode(ort_ssd.forward(ref["x"].astype(np.uint8)))
    theirs = decoder.decode({"concat:0": ref["enc"], "Postprocessor/convert_scores:0": ref["sc"]})
    np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=0.05)  # pixels
    anchors = decoder.anchors
    unit = decode_ssd_boxes(np.zeros((1, len(anchors), 1, 4), np.float32), anchors, [10, 10, 5, 5])[0]
    np.testing.assert_allclose(unit, anchors[:, [1, 0, 3, 2]], atol=1e-6)
    # A shift of +1 in tx moves the box by a tenth of the anchor width.
    enc = np.zeros((1, len(anchors), 1, 4), np.float32)
    enc[..., 1] = 1.0
    moved = decode_ssd_boxes(enc, anchors, [10, 10, 5, 5])[0]
    np.testing.assert_allclose(moved[:, 0] - unit[:, 0], (anchors[:, 3] - anchors[:, 1]) / 10, atol=1e-6)


def match_detections(a, b, min_iou=0.9):
    """Greedy one-to-one matching of same-tile, same-class boxes; returns matched index pairs."""
    pairs = []
    used = np.zeros(len(b), bool)
    for i in np.argsort(-a.score):
        same = (b.tile_index == a.tile_index[i]) & (b.class_id == a.class_id[i]) & ~used
        if not same.any():
            continue
        candidates = np.flatnonzero(same)
        iou = box_iou(a.xyxy[[i]], b.xyxy[candidates])[0]
        j = int(np.argmax(iou))
        if iou[j] > min_iou:
            used[candidates[j]] = True
            pairs.append((i, candidates[j]))
    return pairs


def test_detections_are_capped_per_tile_and_inside_tiles(coco_tiles, ort_ssd):
    det = ort_ssd.detect(coco_tiles, score_threshold=0.001)
    counts = np.bincount(det.tile_index, minlength=64)
    assert counts.max() == 100 and counts.min() > 0
    assert det.xyxy.min() >= 0 and det.xyxy.max() <= 300
    assert set(np.unique(det.class_id)) <= set(range(1, 91))


def test_yolox_through_the_same_interface(coco_tiles, yolox_onnx):
    """A second model family: only its metadata differs (NCHW, BGR, pad 300 → 320 with 114)."""
    ort = create_detector(ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx), DetectConfig())
    a = ort.detect(coco_tiles)
    assert len(a) > 50
    assert a.xyxy.max() <= 300  # boxes in tile pixels, padding removed
    assert set(np.unique(a.class_id)) <= set(load_spec("yolox_nano").class_names)


def test_missing_model_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    with pytest.raises(
        FileNotFoundError,
        match=r"onnx file not found at .*yolox_nano_dynamic.onnx; get it with: copy yolox_nano_dynamic.onnx into",
    ):
        create_detector(ModelConfig(name="yolox_nano", backend="onnxruntime"), DetectConfig())
    with pytest.raises(
        FileNotFoundError, match=r"no INT8 \(QDQ\) graph .*make it with: inspection model quantize ssd_mobilenet_v2_coco"
    ):
        create_detector(ModelConfig(backend="onnxruntime", precision="int8"), DetectConfig())
    with pytest.raises(FileNotFoundError, match="model.path .*nope.onnx does not exist"):
        create_detector(ModelConfig(backend="onnxruntime", path=tmp_path / "nope.onnx"), DetectConfig())


def test_wrong_input_is_rejected(ort_ssd):
    with pytest.raises(ValueError, match="uint8 RGB"):
        ort_ssd.detect(np.zeros((2, 300, 300), np.uint8))
