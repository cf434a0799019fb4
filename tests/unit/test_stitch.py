import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.config import StitchConfig
from inspection.detections import Detections
from inspection.stitch import merge_border_cuts, merge_overlaps, stitch, to_frame
from inspection.tiling import TileGrid

GRID = TileGrid()


@settings(max_examples=100, deadline=None)
@given(tile=st.integers(0, 62), x=st.floats(0, 250), y=st.floats(0, 250), w=st.floats(1, 50), h=st.floats(1, 50))
def test_box_inside_a_tile_lands_at_its_frame_position(tile, x, y, w, h):
    d = Detections([[x, y, x + w, y + h]], [0.9], [1], [tile])
    frame = to_frame(d, GRID)
    row, col = divmod(tile, 9)
    np.testing.assert_allclose(frame.xyxy[0], [x + 300 * col, y + 300 * row, x + w + 300 * col, y + h + 300 * row], atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000))
def test_tile_then_stitch_recovers_frame_boxes(seed):
    """A box drawn in a frame, cut out with its tile and stitched back, is the same box."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((2100, 2700, 3), np.uint8)
    tile = rng.integers(0, 63)
    x0, y0 = GRID.origins[tile]
    bx, by = rng.integers(0, 250, 2)
    frame[y0 + by : y0 + by + 20, x0 + bx : x0 + bx + 30] = 255
    batch = GRID.tiles(frame)
    ys, xs = np.nonzero(batch[tile, :, :, 0])  # the "detector": the lit rectangle in tile pixels
    d = Detections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [1.0], [1], [tile])
    fy, fx = np.nonzero(frame[:, :, 0])
    np.testing.assert_array_equal(to_frame(d, GRID).xyxy[0], [fx.min(), fy.min(), fx.max() + 1, fy.max() + 1])


def test_blank_tile_detections_are_dropped_and_boxes_clipped():
    d = Detections([[10, 10, 20, 20], [290, 290, 310, 310]], [0.9, 0.8], [1, 1], [63, 62])
    out = to_frame(d, GRID)
    assert len(out) == 1
    assert out.xyxy[0].tolist() == [2690, 2090, 2700, 2100]


def test_object_cut_by_a_vertical_border_is_joined():
    d = Detections([[250, 100, 300, 200], [0, 104, 45, 196], [100, 100, 120, 120]], [0.9, 0.6, 0.5], [3, 3, 3], [0, 1, 1])
    out = stitch(d, GRID, StitchConfig())
    assert len(out) == 2
    assert out.xyxy[0].tolist() == [250, 100, 345, 200] and out.score[0] == np.float32(0.9)


def test_object_cut_by_a_horizontal_border_is_joined_but_other_class_is_not():
    top = [200, 250, 260, 300]  # tile 0 (row 0), ends on y=300
    bottom = [205, 0, 255, 30]  # tile 9 (row 1, col 0), starts on y=300 after stitching
    d = Detections([top, bottom, bottom], [0.8, 0.7, 0.6], [5, 5, 7], [0, 9, 9])
    out = stitch(d, GRID, StitchConfig())
    assert len(out) == 2
    joined = out[out.class_id == 5]
    assert joined.xyxy[0].tolist() == [200, 250, 260, 330]


def test_boxes_far_from_borders_are_untouched():
    d = Detections([[10, 10, 50, 50], [100, 100, 150, 150]], [0.9, 0.8], [1, 1], [0, 0])
    out = stitch(d, GRID, StitchConfig())
    np.testing.assert_array_equal(out.xyxy, to_frame(d, GRID).xyxy)


def test_border_merge_can_be_switched_off():
    d = Detections([[250, 100, 300, 200], [0, 104, 45, 196]], [0.9, 0.6], [3, 3], [0, 1])
    assert len(stitch(d, GRID, StitchConfig(border_merge=False))) == 2
    assert len(merge_border_cuts(to_frame(d, GRID), GRID, StitchConfig())) == 1


def test_overlap_duplicates_merge_with_nms_and_nmm():
    grid = TileGrid(540, 300, 300, 60, 4)  # two tiles, x0 = 0 and 240
    # The same object seen by both tiles, one copy a bit wider.
    d = Detections([[250, 50, 290, 100], [10, 50, 52, 100]], [0.9, 0.8], [2, 2], [0, 1])
    frame = to_frame(d, grid)
    nms = merge_overlaps(frame, StitchConfig(merge="nms"))
    assert len(nms) == 1 and nms.xyxy[0].tolist() == [250, 50, 290, 100]
    nmm = merge_overlaps(frame, StitchConfig(merge="nmm"))
    assert len(nmm) == 1 and nmm.xyxy[0].tolist() == [250, 50, 292, 100]
    assert len(merge_overlaps(frame, StitchConfig(merge="none"))) == 2


def test_ios_matches_a_small_copy_inside_a_large_one():
    grid = TileGrid(540, 300, 300, 60, 4)
    d = Detections([[250, 50, 290, 100], [20, 60, 40, 80]], [0.9, 0.8], [2, 2], [0, 1])  # copy 2 inside copy 1
    frame = to_frame(d, grid)
    assert len(merge_overlaps(frame, StitchConfig(merge="nms", match_metric="iou"))) == 2
    assert len(merge_overlaps(frame, StitchConfig(merge="nms", match_metric="ios"))) == 1


def test_same_tile_boxes_are_never_merged_by_overlap_merge():
    grid = TileGrid(540, 300, 300, 60, 4)
    d = Detections([[10, 10, 50, 50], [12, 12, 50, 50]], [0.9, 0.8], [2, 2], [0, 0])
    assert len(merge_overlaps(to_frame(d, grid), StitchConfig(merge="nms"))) == 2
