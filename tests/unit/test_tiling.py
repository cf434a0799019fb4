import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.tiling import FrameSizeError, TileGrid


def test_default_grid_is_9x7_plus_one_blank():
    grid = TileGrid()
    assert (grid.cols, grid.rows, grid.num_tiles, grid.num_blank) == (9, 7, 63, 1)
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


def test_grid_larger_than_batch_is_rejected():
    with pytest.raises(ValueError, match="does not fit a batch of 64"):
        TileGrid(overlap=60)
