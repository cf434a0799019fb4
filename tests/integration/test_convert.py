"""`inspection model convert`: frozen TF graph -> raw ONNX, checked against TF's reference outputs."""

import importlib.util

import numpy as np
import pytest

from inspection.detect import load_spec
from inspection.detect.convert import ConverterMissingError, convert_to_onnx

HAVE_TF = importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tf2onnx") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TF, reason="TensorFlow/tf2onnx not installed (pip install 'inspection[convert]')")
def test_converted_graph_reproduces_tf_reference(tmp_path, ssd_dir):
    import onnxruntime as ort

    path = convert_to_onnx(load_spec("ssd_mobilenet_v2_coco"), tmp_path / "raw.onnx")
    ref = np.load(ssd_dir / "tf_reference_outputs.npz")
    session = ort.InferenceSession(str(path))
    enc, scores = session.run(None, {session.get_inputs()[0].name: ref["pre"]})
    np.testing.assert_allclose(enc, ref["enc"], atol=1e-4)
    np.testing.assert_allclose(scores, ref["sc"], atol=1e-4)


@pytest.mark.skipif(HAVE_TF, reason="checks the message shown when TensorFlow is missing")
def test_missing_converter_says_which_extra_to_install(tmp_path):
    with pytest.raises(ConverterMissingError, match=r"inspection\[convert\]"):
        convert_to_onnx(load_spec("ssd_mobilenet_v2_coco"), tmp_path / "raw.onnx")


def test_model_without_recipe_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no conversion recipe"):
        convert_to_onnx(load_spec("yolox_nano"), tmp_path / "x.onnx")
