"""TensorRT backend parts that need neither TensorRT nor a GPU: engine cache keys, the version
and QDQ checks of the builder, calibration tiles and the reader feeding INT8 calibration, host
preprocessing."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.detect import load_spec
from inspection.detect.engine import (
    EngineBuildError,
    EngineSpec,
    GpuIdentity,
    check_tensorrt_version,
    file_sha256,
    has_qdq,
    timing_cache_path,
    write_atomic,
)
from inspection.detect.preprocess import to_network_input
from inspection.detect.tensorrt import write_network_input
from inspection.tiling import TileGrid
from inspection.tools.calibration import tile_batches_from_images
from inspection.tools.quantize import TileCalibrationReader

XAVIER = GpuIdentity("Xavier", (7, 2))
V100 = GpuIdentity("Tesla V100-SXM2-16GB", (7, 0))


def engine_spec(**changes) -> EngineSpec:
    base = EngineSpec(onnx_sha256="a" * 64, precision="fp16", gpu=V100, trt_version="10.3.0")
    return replace(base, **changes)


# -- engine cache key ------------------------------------------------------------------------


def test_engine_key_is_stable_for_the_same_inputs():
    assert engine_spec().key == engine_spec().key
    assert engine_spec().file_name("raw_fp32") == engine_spec().file_name("raw_fp32")


@pytest.mark.parametrize(
    "changes",
    [
        {"onnx_sha256": "b" * 64},
        {"precision": "int8"},
        {"precision": "fp32"},
        {"gpu": XAVIER},
        {"gpu": GpuIdentity("Tesla V100-SXM2-16GB", (7, 5))},
        {"gpu": GpuIdentity("Tesla V100-PCIE-32GB", (7, 0))},
        {"trt_version": "10.4.0"},
        {"max_batch": 32, "opt_batch": 32},
        {"profiles": 2},
    ],
)
def test_engine_key_and_file_name_change_with_what_the_engine_depends_on(changes):
    changed = engine_spec(**changes)
    assert changed.key != engine_spec().key
    assert changed.file_name("raw_fp32") != engine_spec().file_name("raw_fp32")


def test_engine_file_name_says_precision_gpu_and_tensorrt_version():
    name = engine_spec(gpu=XAVIER, precision="int8").file_name("raw fp32")
    assert name.startswith("raw_fp32-int8-xavier-sm72-trt10.3.0-") and name.endswith(".engine")


def test_engine_spec_rejects_bad_precision_and_batches():
    with pytest.raises(ValueError, match="precision"):
        engine_spec(precision="bf16")
    with pytest.raises(ValueError, match="batch"):
        engine_spec(min_batch=8, opt_batch=4)
    with pytest.raises(ValueError, match="profiles"):
        engine_spec(profiles=0)


def test_file_hash_follows_the_onnx_bytes(tmp_path, ssd_onnx):
    copy = tmp_path / "model.onnx"
    copy.write_bytes(ssd_onnx.read_bytes())
    first = file_sha256(copy)
    assert first == file_sha256(ssd_onnx) and len(first) == 64
    with open(copy, "ab") as f:
        f.write(b"\0")
    assert file_sha256(copy) != first


def test_timing_cache_is_keyed_by_gpu_and_tensorrt_version(tmp_path):
    assert timing_cache_path(tmp_path, V100, "10.3.0") != timing_cache_path(tmp_path, XAVIER, "10.3.0")
    assert timing_cache_path(tmp_path, V100, "10.3.0") != timing_cache_path(tmp_path, V100, "10.4.1")


@pytest.mark.parametrize("version", ["10.0.1", "10.13.3.9"])
def test_tensorrt_10_is_accepted(version):
    check_tensorrt_version(version)


@pytest.mark.parametrize("version", ["8.6.1", "11.4.0"])
def test_other_tensorrt_versions_are_refused_with_the_pin(version):
    with pytest.raises(EngineBuildError, match=rf"TensorRT {version} is installed.*tensorrt>=10,<11"):
        check_tensorrt_version(version)


def test_int8_engines_need_a_qdq_graph(ssd_onnx, tmp_path):
    """The raw graph has no Q/DQ nodes; a graph with one QuantizeLinear/DequantizeLinear pair has."""
    import onnx
    from onnx import TensorProto, helper

    assert not has_qdq(ssd_onnx)
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])
    graph = helper.make_graph(
        [q, dq],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])],
    )
    path = tmp_path / "qdq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert has_qdq(path)


def test_write_atomic_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "engines" / "x.engine"
    write_atomic(target, b"one")
    write_atomic(target, memoryview(b"two"))
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["x.engine"]


# -- calibration tiles and reader --------------------------------------------------------------


@pytest.fixture(scope="module")
def ssd_spec():
    return load_spec("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def coco_jpegs(coco_tiny):
    return sorted((coco_tiny / "val2017").glob("*.jpg"))[:20]


def test_calibration_tiles_are_the_images_resized_in_order(coco_jpegs):
    source = list(tile_batches_from_images(coco_jpegs, TileGrid(), images_per_batch=7))  # 7 + 7 + 6 tiles
    assert [len(b) for b in source] == [7, 7, 6]
    first = cv2.resize(cv2.cvtColor(cv2.imread(str(coco_jpegs[0])), cv2.COLOR_BGR2RGB), (300, 300), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(source[0][0], first)


def test_frames_of_the_grid_size_become_their_tiles(tmp_path, ssd_spec, coco_jpegs):
    grid = TileGrid()
    tiles = np.concatenate(list(tile_batches_from_images(coco_jpegs[:9], grid, images_per_batch=9)))
    frame = grid.untile(np.concatenate([np.tile(tiles, (7, 1, 1, 1)), tiles[:1]]))
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (batch,) = tile_batches_from_images([path], grid)
    np.testing.assert_array_equal(batch, grid.tiles(frame)[: grid.num_tiles])


def test_calibration_inputs_are_validated(ssd_spec, tmp_path):
    reader = TileCalibrationReader([np.zeros((4, 300, 300, 3), np.float32)], ssd_spec, "x", 8)
    with pytest.raises(ValueError, match="uint8"):
        reader.get_next()
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not_an_image"):
        list(tile_batches_from_images([bad], TileGrid()))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), max_size=6), batch_size=st.integers(1, 7), max_tiles=st.integers(1, 30))
def test_calibration_reader_feeds_the_source_tiles_in_order_up_to_the_limit(sizes, batch_size, max_tiles):
    """Each get_next is the next <= batch_size tiles, preprocessed as the model says, until
    max_tiles tiles were read or the source ends; then None."""
    spec = load_spec("ssd_mobilenet_v2_coco")
    rng = np.random.default_rng(sum(sizes) * 31 + batch_size)
    source = [rng.integers(0, 256, (n, 300, 300, 3), dtype=np.uint8) for n in sizes]
    reader = TileCalibrationReader(iter(source), spec, "Preprocessor/sub:0", max_tiles, batch_size)
    fed = []
    while (item := reader.get_next()) is not None:
        assert list(item) == ["Preprocessor/sub:0"] and 1 <= len(item["Preprocessor/sub:0"]) <= batch_size
        fed.append(item["Preprocessor/sub:0"])
    expected = min(sum(sizes), max_tiles)
    assert reader.tiles_read == expected and reader.get_next() is None
    if expected:
        np.testing.assert_array_equal(np.concatenate(fed), to_network_input(np.concatenate(source)[:expected], spec))


# -- host preprocessing into pinned buffers --------------------------------------------------


@pytest.mark.parametrize("name, tile", [("ssd_mobilenet_v2_coco", 300), ("yolox_nano", 300), ("ssd_mobilenet_v2_coco", 320)])
def test_write_network_input_equals_to_network_input(name, tile):
    spec = load_spec(name)
    tiles = np.random.default_rng(tile).integers(0, 256, (3, tile, tile, 3), dtype=np.uint8)
    expected = to_network_input(tiles, spec)
    out = np.full((5, *expected.shape[1:]), np.nan, np.float32)  # a larger buffer: only the first rows are written
    write_network_input(tiles, spec, out[:3])
    np.testing.assert_allclose(out[:3], expected, rtol=0, atol=1e-6)
    assert np.isnan(out[3:]).all()
