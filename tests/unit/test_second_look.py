"""The second look's geometry and replacement as properties (hypothesis), and its whole path on a lit-rectangle detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from inspection.boxes import box_iou
from inspection.config import ConfigError, SecondLookConfig, StitchConfig, load_settings
from inspection.detections import Detections
from inspection.second_look import (
    choose_windows,
    contained_in_a_tile,
    crops_to_frame,
    cut_boxes,
    cut_by_window,
    frame_to_crops,
    gather_crops,
    inside_windows,
    place_windows,
    replace_pieces,
    second_look,
    window_sides,
)
from inspection.stitch import stitch
from inspection.tiling import TileGrid

GRID = TileGrid(global_view=True)
FRAME = (GRID.frame_width, GRID.frame_height)


@st.composite
def frame_boxes(draw, max_side: float = 700.0):
    w, h = FRAME
    x0 = draw(st.floats(0, w - 1, allow_nan=False))
    y0 = draw(st.floats(0, h - 1, allow_nan=False))
    bw = draw(st.floats(0.5, max_side, allow_nan=False))
    bh = draw(st.floats(0.5, max_side, allow_nan=False))
    return [x0, y0, min(x0 + bw, w), min(y0 + bh, h)]


@settings(max_examples=300, deadline=None)
@given(box=frame_boxes(), side=st.sampled_from([300, 320, 416]))
def test_window_lies_in_the_frame_and_holds_the_object_when_it_fits(box, side):
    corner = place_windows(np.array([box]), FRAME, side)[0]
    assert 0 <= corner[0] <= FRAME[0] - side and 0 <= corner[1] <= FRAME[1] - side
    fits = np.ceil(box[2]) - np.floor(box[0]) <= side and np.ceil(box[3]) - np.floor(box[1]) <= side
    if fits:
        assert inside_windows(np.array([box]), corner[None], side)[0, 0]
    else:  # a longer object: the window still covers its centre
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        assert corner[0] <= cx <= corner[0] + side + 1 and corner[1] <= cy <= corner[1] + side + 1


@settings(max_examples=200, deadline=None)
@given(
    boxes=st.lists(frame_boxes(max_side=299.0), min_size=1, max_size=6),
    corners=st.lists(st.tuples(st.integers(0, 2400), st.integers(0, 1800)), min_size=1, max_size=4),
    data=st.data(),
)
def test_crop_to_frame_to_crop_is_the_identity(boxes, corners, data):
    window = np.array([data.draw(st.integers(0, len(corners) - 1)) for _ in boxes])
    crop_boxes = np.array(boxes, np.float32) % 300
    frame = crops_to_frame(crop_boxes, np.array(corners), window)
    np.testing.assert_allclose(frame_to_crops(frame, np.array(corners), window), crop_boxes, atol=1e-3)
    np.testing.assert_allclose(frame - crop_boxes, np.array(corners, np.float32)[window][:, [0, 1, 0, 1]], atol=1e-3)
    # zoom-out windows: a crop pixel is `scale` frame pixels, measured from the window's corner
    scale = np.array([data.draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])) for _ in corners], np.float32)
    zoomed = crops_to_frame(crop_boxes, np.array(corners), window, scale)
    np.testing.assert_allclose(frame_to_crops(zoomed, np.array(corners), window, scale), crop_boxes, atol=1e-2)
    np.testing.assert_allclose(
        zoomed - np.array(corners, np.float32)[window][:, [0, 1, 0, 1]], crop_boxes * scale[window][:, None], atol=1e-2
    )


@settings(max_examples=25, deadline=None)
@given(
    overlap=st.sampled_from([0, 30, 60]),
    corners=st.lists(st.tuples(st.integers(0, 2400), st.integers(0, 1800)), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_crops_read_from_the_tile_batch_equal_the_frame_pixels(overlap, corners, seed):
    grid = TileGrid(overlap=overlap, global_view=True)
    frame = np.random.default_rng(seed).integers(0, 256, (FRAME[1], FRAME[0], 3), np.uint8)
    crops = gather_crops(grid.tiles(frame), grid, np.array(corners))
    for crop, (x, y) in zip(crops, corners, strict=True):
        np.testing.assert_array_equal(crop, frame[y : y + 300, x : x + 300])
    # zoom-out windows: the frame's pixels of the larger window, downscaled to a tile by area
    sides = np.random.default_rng(seed).choice([300, 450, 600, 900], len(corners))
    big = np.array([[min(x, FRAME[0] - s), min(y, FRAME[1] - s)] for (x, y), s in zip(corners, sides, strict=True)])
    zoomed = gather_crops(grid.tiles(frame), grid, big, sides)
    for crop, (x, y), s in zip(zoomed, big, sides, strict=True):
        expected = cv2.resize(frame[y : y + s, x : x + s], (300, 300), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(crop, expected)


@settings(max_examples=200, deadline=None)
@given(
    boxes=st.lists(frame_boxes(max_side=400.0), min_size=1, max_size=40),
    max_windows=st.integers(1, 16),
    seed=st.integers(0, 1000),
)
def test_windows_one_per_object_best_first_at_most_the_limit(boxes, max_windows, seed):
    xyxy = np.array(boxes)
    score = np.random.default_rng(seed).random(len(xyxy))
    corners, sides = choose_windows(xyxy, score, FRAME, 300, max_windows)  # no zoom: tile-sized windows only
    assert sides.tolist() == [300] * len(corners)
    assert len(corners) <= max_windows
    assert np.all((corners >= 0) & (corners <= np.array(FRAME) - 300))
    fits = np.all(np.ceil(xyxy[:, 2:]) - np.floor(xyxy[:, :2]) <= 300, axis=1)
    inside = inside_windows(xyxy, corners, 300)
    if len(corners) < max_windows:  # the limit was not reached: every box that fits is in a window
        assert np.all(inside.any(axis=1)[fits])
    if fits.any():  # the best box that fits always gets a window
        best = np.flatnonzero(fits)[np.argmax(score[fits])]
        assert inside[best].any()
    # de-duplicated: no window was placed for a box that an earlier window already held
    # (each window is the first window holding some box: its own box was in no earlier window)
    held = inside[fits]
    if not len(corners):
        assert not fits.any()
        return
    first_window = np.where(held.any(axis=1), held.argmax(axis=1), len(corners))
    assert set(first_window[first_window < len(corners)].tolist()) == set(range(len(corners)))


@settings(max_examples=200, deadline=None)
@given(
    boxes=st.lists(frame_boxes(max_side=1000.0), min_size=1, max_size=30),
    max_windows=st.integers(1, 16),
    max_zoom=st.sampled_from([1.0, 2.0, 3.0]),
    seed=st.integers(0, 1000),
)
def test_zoom_out_windows_hold_objects_longer_than_a_tile_up_to_the_zoom(boxes, max_windows, max_zoom, seed):
    xyxy = np.array(boxes)
    score = np.random.default_rng(seed).random(len(xyxy))
    corners, sides = choose_windows(xyxy, score, FRAME, 300, max_windows, max_zoom, 1.2)
    assert len(corners) == len(sides) <= max_windows
    assert np.all((sides >= 300) & (sides <= 300 * max_zoom))
    assert np.all((corners >= 0) & (corners + sides[:, None] <= np.array(FRAME)))  # inside the frame
    wanted = window_sides(xyxy, FRAME, 300, max_zoom, 1.2)
    extent = np.max(np.ceil(xyxy[:, 2:]) - np.floor(xyxy[:, :2]), axis=1)
    assert np.all((wanted == 300) == (extent <= 300))  # a tile for what fits one
    assert np.all(wanted[extent > 300] >= np.minimum(np.ceil(1.2 * extent[extent > 300]), 1e9) * (wanted[extent > 300] > 0))
    inside = inside_windows(xyxy, corners, sides)
    if len(corners) < max_windows:  # every box with a window side lies in some window
        assert np.all(inside.any(axis=1)[wanted > 0])
    served = wanted > 0
    if served.any():  # the best box with a window side gets one
        assert inside[np.flatnonzero(served)[np.argmax(score[served])]].any()


def test_cut_boxes_are_pieces_on_a_tile_edge_or_boxes_no_tile_holds():
    boxes = np.array(
        [
            [100, 100, 200, 200],  # inside tile 0
            [250, 100, 300, 200],  # a piece ending on x = 300
            [250, 100, 350, 200],  # joined across x = 300
            [0, 0, 2700, 2100],  # the whole frame (global view)
            [2650, 2050, 2700, 2100],  # on the frame's edge only: not cut
        ],
        np.float32,
    )
    assert cut_boxes(boxes, GRID, 6.0).tolist() == [False, True, True, True, False]
    assert contained_in_a_tile(boxes, TileGrid(overlap=60)).tolist() == [True, True, True, False, True]


def test_boxes_the_crop_cut_are_found_but_not_on_the_frame_edge():
    corners = np.array([[100, 0]])
    boxes = np.array([[101, 50, 150, 80], [200, 0, 250, 40], [200, 100, 399, 150], [150, 150, 250, 250]], np.float32)
    assert cut_by_window(boxes, corners, np.zeros(4, int), 300, FRAME, 2.0).tolist() == [True, False, True, False]
    # a 600-px zoom-out window beside a 300-px one: each box is judged against its own window's edges
    corners = np.array([[100, 0], [1000, 500]])
    boxes = np.array([[200, 100, 399, 150], [1100, 600, 1599, 700], [1100, 600, 1400, 1099], [1500, 900, 1550, 950]])
    window = np.array([0, 1, 1, 1])
    assert cut_by_window(boxes, corners, window, np.array([300, 600]), FRAME, 2.0).tolist() == [True, True, True, False]


@st.composite
def views(draw):
    """First-call boxes and crop boxes on a small canvas so that they overlap often; distinct coordinates."""
    n = draw(st.integers(0, 12))
    m = draw(st.integers(0, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    xy = rng.uniform(0, 400, (n + m, 2))
    wh = rng.uniform(5, 150, (n + m, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    score = rng.uniform(0.001, 1.0, n + m).astype(np.float32)
    cls = rng.integers(1, 3, n + m)
    first = Detections(xyxy[:n], score[:n], cls[:n], rng.integers(-1, 63, n))
    crops = Detections(xyxy[n:], score[n:], cls[n:], rng.integers(0, 4, m))
    replaceable = rng.random(n) < 0.5
    return first, crops, replaceable


def _source(out: Detections, first: Detections, crops: Detections) -> np.ndarray:
    """Which input each output box is (index into first, or len(first) + index into crops)."""
    both = np.concatenate([first.xyxy, crops.xyxy])
    same = np.all(np.isclose(out.xyxy[:, None, :], both[None, :, :]), axis=2)
    assert np.all(same.sum(axis=1) >= 1)
    return same.argmax(axis=1)


@settings(max_examples=300, deadline=None)
@given(case=views(), ratio=st.sampled_from([0.0, 0.5, 1.0]))
def test_replacement_never_duplicates_and_removes_what_a_better_crop_box_covers(case, ratio):
    first, crops, replaceable = case
    assume(len(crops) > 0)  # without crop boxes the first call's set is returned as it is (test below)
    config = SecondLookConfig(replace_min_ratio=ratio)
    out = replace_pieces(first, crops, replaceable, config)
    src = _source(out, first, crops)
    n = len(first)
    view = np.where(src < n, -1, crops.tile_index[np.clip(src - n, 0, None)])
    # no two boxes of one class from different views are one object (IoU > nms_iou)
    iou = box_iou(out.xyxy.astype(np.float64), out.xyxy.astype(np.float64))
    same = (out.class_id[:, None] == out.class_id[None, :]) & (view[:, None] != view[None, :])
    assert not np.any((iou > config.nms_iou) & same)
    assert len(set(src.tolist())) == len(src)  # nothing output twice
    # a cut piece that a crop box of its class covers, scoring high enough, is gone
    for p in np.flatnonzero(replaceable):
        box = first.xyxy[p].astype(np.float64)
        c = crops.xyxy.astype(np.float64)
        inter = np.clip(np.minimum(box[2:], c[:, 2:]) - np.maximum(box[:2], c[:, :2]), 0, None).prod(axis=1)
        area = np.prod(box[2:] - box[:2])
        covering = (
            (crops.class_id == first.class_id[p])
            & (inter / area >= config.cover_threshold)
            & (crops.score >= ratio * first.score[p])
        )
        if covering.any():
            assert p not in src
    # crop boxes leave as no tile's box
    assert np.all(out.tile_index[src >= n] == -1)
    assert np.all(np.diff(out.score) <= 0)


def test_no_crop_boxes_leave_the_first_call_as_it_was():
    first = Detections([[0, 0, 10, 10]], [0.5], [1], [3])
    out = replace_pieces(first, Detections.empty(), np.array([True]), SecondLookConfig())
    assert out is first


class LitRectangles:
    """A 'detector' that reports the lit pixels of each slot as one box of class 1, score 0.9
    (0.6 when the box touches the slot's edge: a cut object looks less sure)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, batch: np.ndarray) -> Detections:
        self.calls.append(len(batch))
        boxes, scores, slots = [], [], []
        for k, tile in enumerate(batch):
            ys, xs = np.nonzero(tile[:, :, 0] > 0)
            if len(xs):
                box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                touches = box[0] == 0 or box[1] == 0 or box[2] == tile.shape[1] or box[3] == tile.shape[0]
                boxes.append(box)
                scores.append(0.6 if touches else 0.9)
                slots.append(k)
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, [1] * len(boxes), slots)


@pytest.mark.parametrize("rect", [(1150, 250, 1290, 390), (570, 570, 640, 640), (2580, 1990, 2700, 2100)])
def test_an_object_cut_by_tile_borders_comes_back_whole_from_one_crop(rect):
    """A rectangle over tile borders: the first call sees pieces; the second look sees it whole."""
    grid = TileGrid(global_view=False)
    frame = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
    x0, y0, x1, y1 = rect
    frame[y0:y1, x0:x1] = 255
    detect = LitRectangles()
    batch = grid.tiles(frame)
    first = stitch(detect(batch), grid, StitchConfig(border_merge=False))
    assert len(first) > 1 or not cut_boxes(first.xyxy, grid, 6.0).any()
    out = second_look(first, batch, grid, detect, SecondLookConfig(), 6.0)
    if cut_boxes(first.xyxy, grid, 6.0).any():
        assert detect.calls == [64, 1]  # the first call, then one crop
        assert len(out) == 1 and out.xyxy[0].tolist() == [x0, y0, x1, y1] and out.score[0] == pytest.approx(0.9)
    else:  # nothing cut (a corner tile holds it): no second call
        assert detect.calls == [64] and out is first


def test_an_object_longer_than_a_tile_cut_by_borders_comes_back_whole_from_a_zoom_out_window():
    """A 500-px rectangle over four tiles, joined from its pieces by the stitch: no tile-sized crop holds it; a
    zoom-out window (600 px shown at 300) does, and its box maps back to the frame at the window's scale."""
    grid = TileGrid(global_view=False)
    frame = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
    x0, y0, x1, y1 = 1000, 400, 1500, 700
    frame[y0:y1, x0:x1] = 255
    batch = grid.tiles(frame)
    first = stitch(LitRectangles()(batch), grid, StitchConfig())
    assert len(first) == 1 and cut_boxes(first.xyxy, grid, 6.0).all()  # one joined box no tile holds
    no_zoom = LitRectangles()
    assert second_look(first, batch, grid, no_zoom, SecondLookConfig(max_zoom=1.0), 6.0) is first
    assert no_zoom.calls == []  # no tile-sized window holds it: no second call
    corners, sides = choose_windows(first.xyxy, first.score, FRAME, 300, 12, 3.0, 1.2)
    assert sides.tolist() == [600]  # 1.2 x 500
    found = LitRectangles()(gather_crops(batch, grid, corners, sides))
    assert len(found) == 1 and found.score[0] == pytest.approx(0.9)  # whole in the window: not touching its edge
    mapped = crops_to_frame(found.xyxy, corners, found.tile_index, sides / 300)
    np.testing.assert_allclose(mapped[0], [x0, y0, x1, y1], atol=2.0)  # 600 px shown at 300: within 2 frame px
    detect = LitRectangles()
    out = second_look(first, batch, grid, detect, SecondLookConfig(max_zoom=3.0, zoom_margin=1.2), 6.0)
    assert detect.calls == [1]  # the zoom-out window, one call
    assert len(out) == 1  # one object: the window's box and the joined box are de-duplicated
    np.testing.assert_allclose(out.xyxy[0], [x0, y0, x1, y1], atol=2.0)


def test_disabled_or_nothing_cut_means_no_second_call():
    grid = TileGrid(global_view=False)
    frame = np.zeros((FRAME[1], FRAME[0], 3), np.uint8)
    frame[290:310, 100:150] = 255
    detect = LitRectangles()
    batch = grid.tiles(frame)
    first = stitch(detect(batch), grid, StitchConfig())
    assert second_look(first, batch, grid, detect, SecondLookConfig(enabled=False), 6.0) is first
    assert second_look(first, batch, grid, detect, SecondLookConfig(min_score=0.95), 6.0) is first
    assert detect.calls == [64]


def test_settings_validate_the_second_look():
    assert load_settings().grid.second_look.max_crops == SecondLookConfig().max_crops
    with pytest.raises(ConfigError, match="grid.second_look.max_crops"):
        load_settings(overrides={"grid.second_look.max_crops": 0})
    with pytest.raises(ConfigError, match="grid.second_look.bogus"):
        load_settings(overrides={"grid.second_look.bogus": 1})


def test_crops_from_a_torch_batch_stay_tensors_and_equal_the_frame_pixels():
    torch = pytest.importorskip("torch")  # the GPU path's batch is a tensor; the gather is the same on the CPU
    frame = np.random.default_rng(3).integers(0, 256, (FRAME[1], FRAME[0], 3), np.uint8)
    corners = np.array([[5, 7], [2400, 1800], [1190, 290]])
    crops = gather_crops(torch.from_numpy(GRID.tiles(frame)), GRID, corners)
    assert isinstance(crops, torch.Tensor) and tuple(crops.shape) == (3, 300, 300, 3)
    for crop, (x, y) in zip(crops.numpy(), corners, strict=True):
        np.testing.assert_array_equal(crop, frame[y : y + 300, x : x + 300])
    # a zoom-out window downscaled on the tensor's device: torch's area mean, OpenCV's on the host agree
    zoomed = gather_crops(torch.from_numpy(GRID.tiles(frame)), GRID, np.array([[1190, 290], [2100, 1500]]), np.array([600, 600]))
    assert isinstance(zoomed, torch.Tensor) and zoomed.dtype == torch.uint8
    for crop, (x, y) in zip(zoomed.numpy(), [(1190, 290), (2100, 1500)], strict=True):
        expected = cv2.resize(frame[y : y + 600, x : x + 600], (300, 300), interpolation=cv2.INTER_AREA)
        assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1  # rounding of the 2x2 means
