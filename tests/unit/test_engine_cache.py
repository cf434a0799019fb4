"""TensorRT backend parts that need neither TensorRT nor a GPU: engine cache keys, calibration
batching over real tiles, the calibrator protocol and its cache file, host preprocessing."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.detect import load_spec
from inspection.detect.calibration import CalibrationBatches, CalibrationCache, CalibratorCore, tile_batches_from_images
from inspection.detect.engine import (
    EngineSpec,
    GpuIdentity,
    calibration_cache_path,
    file_sha256,
    timing_cache_path,
    write_atomic,
)
from inspection.detect.preprocess import to_network_input
from inspection.detect.tensorrt import write_network_input
from inspection.tiling import TileGrid

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
        {"calibration": "coco-tiles-v2"},
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


def test_timing_and_calibration_caches_are_keyed_by_what_they_depend_on(tmp_path):
    assert timing_cache_path(tmp_path, V100, "10.3.0") != timing_cache_path(tmp_path, XAVIER, "10.3.0")
    assert timing_cache_path(tmp_path, V100, "10.3.0") != timing_cache_path(tmp_path, V100, "10.4.1")
    # INT8 scales belong to the network, not the GPU: one calibration cache per ONNX file.
    assert calibration_cache_path(tmp_path, "a" * 64) != calibration_cache_path(tmp_path, "b" * 64)


def test_write_atomic_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "engines" / "x.engine"
    write_atomic(target, b"one")
    write_atomic(target, memoryview(b"two"))
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["x.engine"]


# -- calibration batches -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssd_spec():
    return load_spec("ssd_mobilenet_v2_coco")


@pytest.fixture(scope="module")
def coco_jpegs(coco_tiny):
    return sorted((coco_tiny / "val2017").glob("*.jpg"))[:20]


def test_calibration_batches_rechunk_real_tiles_in_order(ssd_spec, coco_jpegs):
    grid = TileGrid()
    source = list(tile_batches_from_images(coco_jpegs, grid, images_per_batch=7))  # 7 + 7 + 6 tiles
    assert [len(b) for b in source] == [7, 7, 6]
    all_tiles = np.concatenate(source)
    first = cv2.resize(cv2.cvtColor(cv2.imread(str(coco_jpegs[0])), cv2.COLOR_BGR2RGB), (300, 300), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(all_tiles[0], first)
    batches = list(CalibrationBatches(source, ssd_spec, batch_size=8))
    assert len(batches) == 2  # 20 tiles -> two batches of 8; the remaining 4 are dropped
    for k, batch in enumerate(batches):
        assert batch.shape == (8, 300, 300, 3) and batch.dtype == np.float32 and batch.flags.c_contiguous
        np.testing.assert_array_equal(batch, to_network_input(all_tiles[8 * k: 8 * k + 8], ssd_spec))
    assert batches[0].min() >= -1.0 and batches[0].max() <= 1.0
    assert len(list(CalibrationBatches(source, ssd_spec, batch_size=8, max_batches=1))) == 1
    assert CalibrationBatches(source, ssd_spec, batch_size=8).input_shape == (8, 300, 300, 3)


def test_frames_of_the_grid_size_become_their_tiles(tmp_path, ssd_spec, coco_jpegs):
    grid = TileGrid()
    tiles = np.concatenate(list(tile_batches_from_images(coco_jpegs[:9], grid, images_per_batch=9)))
    frame = grid.untile(np.concatenate([np.tile(tiles, (7, 1, 1, 1)), tiles[:1]]))
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (batch,) = tile_batches_from_images([path], grid)
    np.testing.assert_array_equal(batch, grid.tiles(frame)[: grid.num_tiles])


def test_calibration_inputs_are_validated(ssd_spec, tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        list(CalibrationBatches([np.zeros((4, 300, 300, 3), np.float32)], ssd_spec, batch_size=2))
    with pytest.raises(ValueError, match="tiles of"):
        list(CalibrationBatches([np.zeros((1, 300, 300, 3), np.uint8), np.zeros((1, 200, 200, 3), np.uint8)], ssd_spec, batch_size=4))
    with pytest.raises(ValueError, match="batch_size"):
        CalibrationBatches([], ssd_spec, batch_size=0)
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not_an_image"):
        list(tile_batches_from_images([bad], TileGrid()))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), max_size=6), batch_size=st.integers(1, 7), max_batches=st.none() | st.integers(1, 4))
def test_calibration_batches_are_the_source_tiles_in_fixed_size_chunks(sizes, batch_size, max_batches):
    spec = load_spec("ssd_mobilenet_v2_coco")
    rng = np.random.default_rng(sum(sizes) * 31 + batch_size)
    source = [rng.integers(0, 256, (n, 300, 300, 3), dtype=np.uint8) for n in sizes]
    batches = list(CalibrationBatches(source, spec, batch_size, max_batches))
    total = sum(sizes) // batch_size
    expected_count = total if max_batches is None else min(total, max_batches)
    assert len(batches) == expected_count
    if batches:
        tiles = np.concatenate(source)[: expected_count * batch_size]
        np.testing.assert_array_equal(np.concatenate(batches), to_network_input(tiles, spec))


# -- calibrator protocol and cache -------------------------------------------------------------


class RecordingDevice:
    """Stands in for device memory: each upload gets a new address and keeps the bytes."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}

    def upload(self, batch: np.ndarray) -> int:
        address = 0x1000 * (len(self.memory) + 1)
        self.memory[address] = batch.copy()
        return address


def test_calibrator_serves_every_batch_once_then_ends(ssd_spec, coco_jpegs, tmp_path):
    source = list(tile_batches_from_images(coco_jpegs[:12], TileGrid()))
    batches = CalibrationBatches(source, ssd_spec, batch_size=4)
    device = RecordingDevice()
    core = CalibratorCore(batches, 4, CalibrationCache(tmp_path / "calib.cache"), device.upload)
    assert core.get_batch_size() == 4
    addresses = [core.get_batch(["Preprocessor/sub:0"]) for _ in range(3)]
    assert core.get_batch(["Preprocessor/sub:0"]) is None and core.get_batch(["Preprocessor/sub:0"]) is None
    assert core.batches_served == 3
    expected = list(batches)
    for (address,), batch in zip(addresses, expected):
        np.testing.assert_array_equal(device.memory[address], batch)
    with pytest.raises(ValueError, match="one input"):
        CalibratorCore(batches, 4, CalibrationCache(tmp_path / "c"), device.upload).get_batch(["a", "b"])
    with pytest.raises(ValueError, match="expected 8"):
        CalibratorCore(batches, 8, CalibrationCache(tmp_path / "c"), device.upload).get_batch(["a"])


def test_calibration_cache_round_trip_and_cache_only_core(tmp_path):
    cache = CalibrationCache(tmp_path / "sub" / "calibration.cache")
    core = CalibratorCore(None, 16, cache, lambda batch: pytest.fail("a cache-only calibrator must not upload"))
    assert core.read_calibration_cache() is None
    table = b"TRT-1003-EntropyCalibration2\nPreprocessor/sub:0: 3c010a14\n"
    core.write_calibration_cache(memoryview(table))
    assert cache.path.read_bytes() == table
    assert CalibratorCore(None, 16, CalibrationCache(cache.path), lambda b: 0).read_calibration_cache() == table
    assert core.get_batch(["Preprocessor/sub:0"]) is None
    cache.path.write_bytes(b"")
    assert cache.read() is None  # an empty file is no cache: TensorRT must calibrate again


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
