import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.detections import Detections
from inspection.tiling import FrameSizeError, TileGrid, detect_in_chunks


def test_default_grid_is_9x7_plus_one_blank():
    grid = TileGrid()
    assert (grid.cols, grid.rows, grid.num_tiles, grid.num_slots) == (9, 7, 63, 64)  # one blank slot
    assert grid.origins[0].tolist() == [0, 0]
    assert grid.origins[8].tolist() == [2400, 0]
    assert grid.origins[9].tolist() == [0, 300]
    assert grid.origins[62].tolist() == [2400, 1800]


def test_tiles_cut_the_right_pixels_and_blank_tile_is_zero():
    grid = TileGrid()
    frame = np.random.default_rng(0).integers(0, 256, (2100, 2700, 3), dtype=np.uint8)
    batch = grid.tiles(frame)
    assert batch.shape == (64, 300, 300, 3) and batch.flags.c_contiguous
    for index in (0, 10, 62):
        x0, y0 = grid.origins[index]
        np.testing.assert_array_equal(batch[index], frame[y0 : y0 + 300, x0 : x0 + 300])
    assert not batch[63].any()


def test_tile_view_is_a_view_not_a_copy():
    grid = TileGrid()
    frame = np.zeros((2100, 2700, 3), np.uint8)
    view = grid.tile_view(frame)
    assert np.shares_memory(view, frame)
    frame[300, 600] = 7
    assert view[1, 2, 0, 0].tolist() == [7, 7, 7]


def test_reused_buffer_clears_blank_tiles():
    grid = TileGrid()
    out = grid.new_batch()
    out[63] = 255
    grid.tiles(np.ones((2100, 2700, 3), np.uint8), out=out)
    assert not out[63].any() and out[:63].all()


@settings(max_examples=25, deadline=None)
@given(cols=st.integers(1, 5), rows=st.integers(1, 5), tile=st.sampled_from([8, 16, 30]))
def test_tile_then_untile_is_identity(cols, rows, tile):
    grid = TileGrid(cols * tile, rows * tile, tile, 0, cols * rows + 1)
    frame = np.random.default_rng(cols * 7 + rows).integers(0, 256, (rows * tile, cols * tile, 3), dtype=np.uint8)
    np.testing.assert_array_equal(grid.untile(grid.tiles(frame)), frame)


@settings(max_examples=25, deadline=None)
@given(width=st.integers(40, 120), height=st.integers(40, 120), overlap=st.integers(0, 15))
def test_overlapping_grid_covers_frame_and_matches_slices(width, height, overlap):
    grid = TileGrid(width, height, 32, overlap, 64)
    frame = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    batch = grid.tiles(frame)
    covered = np.zeros((height, width), bool)
    for i, (x0, y0) in enumerate(grid.origins):
        np.testing.assert_array_equal(batch[i], frame[y0 : y0 + 32, x0 : x0 + 32])
        covered[y0 : y0 + 32, x0 : x0 + 32] = True
    assert covered.all()
    assert grid.x_starts[-1] + 32 == width and grid.y_starts[-1] + 32 == height


def test_wrong_frame_size_is_a_clear_error():
    with pytest.raises(FrameSizeError, match=r"1920×1080, grid expects 2700×2100 \(configs: grid.frame_width"):
        TileGrid().tiles(np.zeros((1080, 1920, 3), np.uint8))
    with pytest.raises(FrameSizeError, match="expected \\(H, W, 3\\)"):
        TileGrid().tiles(np.zeros((2100, 2700), np.uint8))


def test_grid_larger_than_batch_runs_in_chunks_padding_only_the_last():
    grid = TileGrid(overlap=60, global_view=True)  # 11 × 9 = 99 tiles + the global view
    assert (grid.num_tiles, grid.num_slots, grid.num_chunks, grid.global_index) == (99, 128, 2, 99)  # 28 blank
    assert grid.chunks() == [slice(0, 64), slice(64, 100)]  # the last call skips the 28 blank slots
    frame = np.random.default_rng(1).integers(0, 256, (2100, 2700, 3), dtype=np.uint8)
    batch = grid.tiles(frame)
    x0, y0 = grid.origins[98]
    np.testing.assert_array_equal(batch[98], frame[y0 : y0 + 300, x0 : x0 + 300])
    assert not batch[100:].any()
    calls = []

    def detect(chunk):
        calls.append(len(chunk))
        lit = np.flatnonzero(chunk.reshape(len(chunk), -1).any(axis=1))  # one box per non-blank slot
        return Detections(np.tile([1, 1, 5, 5], (len(lit), 1)), np.full(len(lit), 0.5), np.ones(len(lit)), lit)

    d = detect_in_chunks(detect, batch, grid)
    assert calls == [64, 36]
    assert sorted(d.tile_index.tolist()) == list(range(100))  # slots numbered across chunks


def test_global_view_slot_holds_the_downscaled_frame():
    grid = TileGrid(global_view=True)
    frame = np.zeros((2100, 2700, 3), np.uint8)
    frame[:, 1350:] = 200  # right half lit
    batch = grid.tiles(frame)
    assert grid.global_index == 63 and grid.num_slots == 64  # no blank slot
    view = batch[63, :, :, 0]
    assert view[:, :149].max() == 0 and view[:, 151:].min() == 200
    assert not TileGrid().tiles(frame)[63].any()  # without it the slot stays blank
