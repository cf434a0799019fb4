import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.config import StitchConfig
from inspection.detections import Detections
from inspection.stitch import box_pairs, interval_pairs, merge_border_cuts, merge_overlaps, stitch, to_frame
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
    out = stitch(d, GRID, StitchConfig(fusion_score="max"))
    assert len(out) == 2
    assert out.xyxy[0].tolist() == [250, 100, 345, 200] and out.score[0] == np.float32(0.9)
    # the default noisy-or: two pieces that agree make a surer object than either
    assert stitch(d, GRID, StitchConfig()).score[0] == pytest.approx(1 - 0.1 * 0.4)


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


# ----------------------------------------------------------------------------- cut rule, fusion, global view, sweep


def _random_tile_boxes(rng: np.random.Generator, n: int, margin: float) -> Detections:
    """n boxes inside tiles of GRID, each at least `margin` px away from its tile's edges, tile pixels."""
    tile = rng.integers(0, 63, n)
    x1 = rng.uniform(margin, 200, n)
    y1 = rng.uniform(margin, 200, n)
    w = rng.uniform(2, 300 - margin - x1)
    h = rng.uniform(2, 300 - margin - y1)
    return Detections(np.stack([x1, y1, x1 + w, y1 + h], 1), rng.uniform(0.001, 1, n), rng.integers(1, 4, n), tile)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 60))
def test_boxes_off_the_grid_lines_are_never_joined(seed, n):
    """Mosaic case: objects that do not reach a tile border (margin > tolerance) stay as they are."""
    d = to_frame(_random_tile_boxes(np.random.default_rng(seed), n, margin=5.0), GRID)
    for rule in ("cut", "pairwise"):
        out = merge_border_cuts(d, GRID, StitchConfig(border_rule=rule))
        assert len(out) == len(d)
        np.testing.assert_array_equal(np.sort(out.xyxy, axis=0), np.sort(d.xyxy, axis=0))


@st.composite
def cut_objects(draw):
    """Frame objects (some crossing borders) cut into their tile pieces, as a perfect detector would see them."""
    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    x1 = rng.uniform(0, 2500, n)
    y1 = rng.uniform(0, 1900, n)
    boxes = np.stack([x1, y1, x1 + rng.uniform(20, 700, n), y1 + rng.uniform(20, 700, n)], 1)
    boxes = np.minimum(boxes, [2700, 2100, 2700, 2100])
    pieces, scores, classes, tiles = [], [], [], []
    for k, b in enumerate(boxes):
        for t, (x0, y0) in enumerate(GRID.origins):
            piece = [max(b[0], x0), max(b[1], y0), min(b[2], x0 + 300), min(b[3], y0 + 300)]
            if piece[2] - piece[0] > 1 and piece[3] - piece[1] > 1:
                pieces.append([piece[0] - x0, piece[1] - y0, piece[2] - x0, piece[3] - y0])
                scores.append(0.9 - 0.01 * k)
                classes.append(k + 1)  # one class per object: pieces of different objects never match
                tiles.append(t)
    return boxes, Detections(pieces, scores, classes, tiles)


@settings(max_examples=60, deadline=None)
@given(case=cut_objects())
def test_cut_pieces_of_an_object_are_joined_back_and_joining_is_idempotent(case):
    boxes, pieces = case
    config = StitchConfig()  # perfect pieces on one line share their extent along it exactly
    out = stitch(pieces, GRID, config)
    assert len(out) == len(boxes)
    frame_pieces = to_frame(pieces, GRID)
    for k in range(len(boxes)):
        mine = frame_pieces.xyxy[frame_pieces.class_id == k + 1]  # slivers under a pixel are not pieces: the union of the rest
        np.testing.assert_allclose(out.xyxy[out.class_id == k + 1][0], [*mine[:, :2].min(0), *mine[:, 2:].max(0)], atol=1e-3)
    again = merge_border_cuts(out, GRID, config)
    np.testing.assert_array_equal(again.xyxy, out.xyxy)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 80))
def test_overlap_nms_is_idempotent(seed, n):
    grid = TileGrid(overlap=60, global_view=False)
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, grid.num_tiles, n)
    xy = rng.uniform(0, 250, (n, 2))
    d = to_frame(Detections(np.c_[xy, xy + rng.uniform(5, 50, (n, 2))], rng.uniform(0, 1, n), rng.integers(1, 3, n), tile), grid)
    once = merge_overlaps(d, StitchConfig(merge="nms"))
    twice = merge_overlaps(once, StitchConfig(merge="nms"))
    np.testing.assert_array_equal(once.xyxy, twice.xyxy)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 40))
def test_interval_pairs_equal_the_brute_force_pairs(seed, n):
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 100, n).round(0)  # ties and touching ends included
    hi = lo + rng.uniform(0, 20, n).round(0)
    group = rng.integers(0, 3, n)
    i, j = interval_pairs(lo, hi, group)
    got = {tuple(sorted(p)) for p in zip(i.tolist(), j.tolist())}
    want = {(a, b) for a in range(n) for b in range(a + 1, n) if group[a] == group[b] and lo[b] <= hi[a] and lo[a] <= hi[b]}
    assert got == want and len(i) == len(want)


def test_global_view_boxes_map_to_frame_pixels_and_fuse_with_pieces():
    grid = TileGrid(global_view=True)
    # an object of 600×400 frame px at (2300, 1700)... -> pieces in tiles (5, 7) and (5, 8), plus the global view's box
    pieces = [[200, 200, 300, 300], [0, 200, 300, 300]]  # tile-pixel pieces in tiles 52 (row 5, col 7) and 53 (col 8)
    glob = [2100 / 9, 1700 / 7, 2700 / 9, 1900 / 7]  # global-view pixels of frame box (2100, 1700, 2700, 1900)
    d = Detections([*pieces, glob], [0.4, 0.5, 0.6], [3, 3, 3], [52, 53, 63])
    frame = to_frame(d, grid)
    np.testing.assert_allclose(frame.xyxy[2], [2100, 1700, 2700, 1900], atol=1e-3)
    out = stitch(d, grid, StitchConfig())
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [2100, 1700, 2700, 1900], atol=1e-3)
    # without the global view the slot is blank padding: its boxes are dropped
    assert len(to_frame(d, TileGrid())) == 2


def test_small_global_boxes_are_dropped_and_whole_tile_objects_are_not_swallowed():
    grid = TileGrid(global_view=True)
    inside = [[100, 100, 160, 160]]  # a whole object inside tile 0, far from its edges
    big = [0, 0, 600 / 9, 600 / 7]  # a 600×600 global box around it
    tiny = [10, 10, 12, 12]  # 18×14 frame px: the tiles see such objects better
    d = Detections([*inside, big, tiny], [0.9, 0.5, 0.8], [1, 1, 1], [0, 63, 63])
    out = stitch(d, grid, StitchConfig(global_min_size_px=150))
    assert len(out) == 2  # the tile box and the big global box, not fused (IoS 1 but no cut piece); tiny dropped
    np.testing.assert_allclose(np.sort(out.xyxy[:, 2]), [160, 600], atol=1e-3)


def test_score_aware_fusion_does_not_widen_a_box_with_a_weak_match():
    grid = TileGrid(540, 300, 300, 60, 4)
    d = to_frame(Detections([[250, 50, 290, 100], [0, 40, 60, 110]], [0.9, 0.05], [2, 2], [0, 1]), grid)
    out = merge_overlaps(d, StitchConfig(merge="nmm", match_metric="ios", fusion_min_ratio=0.5))
    assert len(out) == 1 and out.xyxy[0].tolist() == [250, 50, 290, 100]
    widened = merge_overlaps(d, StitchConfig(merge="nmm", match_metric="ios", fusion_min_ratio=0.0))
    assert widened.xyxy[0].tolist() == [240, 40, 300, 110]
    noisy = merge_overlaps(d, StitchConfig(merge="nmm", match_metric="ios", fusion_min_ratio=0.0, fusion_score="noisy_or"))
    assert noisy.score[0] == pytest.approx(1 - 0.1 * 0.95, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 50), cell=st.sampled_from([7.0, 30.0, 300.0]))
def test_box_pairs_equal_the_brute_force_pairs(seed, n, cell):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 120, (n, 2)).round(0)
    xyxy = np.c_[xy, xy + rng.uniform(0, 40, (n, 2)).round(0)]  # touching and degenerate boxes included
    group = rng.integers(0, 2, n)
    i, j = box_pairs(xyxy, group, cell)
    got = [tuple(sorted(p)) for p in zip(i.tolist(), j.tolist())]
    want = {
        (a, b)
        for a in range(n)
        for b in range(a + 1, n)
        if group[a] == group[b]
        and xyxy[b, 0] <= xyxy[a, 2]
        and xyxy[a, 0] <= xyxy[b, 2]
        and xyxy[b, 1] <= xyxy[a, 3]
        and xyxy[a, 1] <= xyxy[b, 3]
    }
    assert set(got) == want and len(got) == len(want)
