"""Scene composer: box transforms (hypothesis), exact ground truth, determinism, border crossing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inspection.tiling import TileGrid
from synthetic.coco import CocoDataset
from synthetic.scenes import (
    compose_scenes,
    crosses_grid_lines,
    scale_boxes,
    translate_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

GRID = TileGrid()

coords = st.floats(0, 3000, allow_nan=False, width=32)


@st.composite
def boxes(draw, n_max: int = 20) -> np.ndarray:
    n = draw(st.integers(0, n_max))
    corners = draw(arrays(np.float64, (n, 4), elements=coords))
    return np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], axis=1)


@settings(max_examples=80, deadline=None)
@given(b=boxes(), s=st.floats(0.25, 4.0), dx=st.floats(-500, 500), dy=st.floats(-500, 500))
def test_scale_and_translate_round_trip(b, s, dx, dy):
    placed = translate_boxes(scale_boxes(b, s), dx, dy)
    back = scale_boxes(translate_boxes(placed, -dx, -dy), 1 / s)
    np.testing.assert_allclose(back, b, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(b)), b, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(x=st.integers(0, 2600), y=st.integers(0, 2000), w=st.integers(1, 100), h=st.integers(1, 100))
def test_crossing_means_no_single_tile_holds_the_box(x, y, w, h):
    box = np.array([[x, y, min(x + w, 2700), min(y + h, 2100)]], np.float64)
    tx0, ty0 = (box[0, :2] // 300) * 300  # the tile holding the top-left corner
    one_tile = box[0, 2] <= tx0 + 300 and box[0, 3] <= ty0 + 300
    assert crosses_grid_lines(box, GRID)[0] == (not one_tile)


def _dataset(root: Path) -> CocoDataset:
    """Four 100×80 images, each with one box of its own class and a distinct colour inside it."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(4):
        pixels = np.zeros((80, 100, 3), np.uint8)
        pixels[20:50, 10:70] = (40 * (i + 1), 255 - 40 * i, 9)
        cv2.imwrite(str(root / "images" / f"{i}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 100, "height": 80})
        anns.append(
            {"id": i + 1, "image_id": i + 1, "bbox": [10, 20, 60, 30], "area": 1800.0, "category_id": i + 1, "iscrowd": 0}
        )
    cats = [{"id": i + 1, "name": f"c{i}"} for i in range(4)]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return CocoDataset.load(root / "images", root / "instances.json")


def test_ground_truth_box_is_where_the_pixels_are(tmp_path):
    grid = TileGrid(600, 450, 150, 0, 13)
    dataset = _dataset(tmp_path)
    scenes = compose_scenes(dataset, grid, 5, seed=4, scale_range=(1.5, 3.0), max_images=3)
    assert len(scenes) == 5 and scenes.num_objects > 0
    for fid in range(1, 6):
        frame = scenes.frame(fid - 1)
        for ann in (a for a in scenes.gt["annotations"] if a["image_id"] == fid):
            colour = np.array((40 * ann["category_id"], 255 - 40 * (ann["category_id"] - 1), 9))
            x, y, w, h = ann["bbox"]
            # the coloured pixels around the box (the same image may be placed twice elsewhere)
            x0, y0 = int(max(x - 4, 0)), int(max(y - 4, 0))
            window = frame[y0 : int(y + h + 4), x0 : int(x + w + 4)].astype(int)
            ys, xs = np.nonzero(np.all(np.abs(window - colour) <= 2, axis=2))
            xs, ys = xs + x0, ys + y0
            # linear resampling at ×1.5–3 blends up to ~2 px at the edge of the colour patch
            assert abs(xs.min() - x) <= 2.5 and abs(ys.min() - y) <= 2.5
            assert abs(xs.max() + 1 - (x + w)) <= 2.5 and abs(ys.max() + 1 - (y + h)) <= 2.5
            assert ann["crosses_border"] == bool(crosses_grid_lines(np.array([[x, y, x + w, y + h]]), grid)[0])


def test_scenes_are_deterministic_by_seed_and_independent_of_count(tmp_path):
    dataset = _dataset(tmp_path)
    grid = TileGrid(600, 450, 150, 0, 13)
    a = compose_scenes(dataset, grid, 4, seed=7)
    b = compose_scenes(dataset, grid, 6, seed=7)
    c = compose_scenes(dataset, grid, 4, seed=8)
    assert a.layouts == b.layouts[:4]
    assert a.layouts != c.layouts
    np.testing.assert_array_equal(a.frame(2), b.frame(2))
    assert 0.0 <= a.crossing_share <= 1.0 and a.summary()["objects"] == a.num_objects


def test_images_never_overlap(tmp_path):
    dataset = _dataset(tmp_path)
    scenes = compose_scenes(dataset, TileGrid(600, 450, 150, 0, 13), 10, seed=1, max_images=6)
    for layout in scenes.layouts:
        rects = [(p.x, p.y, p.x + p.width, p.y + p.height) for p in layout.placements]
        for i, r in enumerate(rects):
            for s in rects[i + 1 :]:
                assert not (r[0] < s[2] and s[0] < r[2] and r[1] < s[3] and s[1] < r[3])


def test_bad_arguments_are_clear(tmp_path):
    dataset = _dataset(tmp_path)
    with pytest.raises(ValueError, match="num_scenes must be positive"):
        compose_scenes(dataset, GRID, 0)
    with pytest.raises(ValueError, match="scale_range"):
        compose_scenes(dataset, GRID, 1, scale_range=(3.0, 1.0))
