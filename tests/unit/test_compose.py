"""Mosaic composer, COCO reader and photo source: geometry, ground truth, determinism."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspection.tiling import TileGrid
from synthetic.coco import CocoDataset, DatasetError
from synthetic.compose import MIN_BOX_SIDE_PX, MosaicFrameSource, compose_mosaics
from synthetic.photos import PhotoFrameSource, available_photos

GRID = TileGrid()
SHARED = Path(os.environ.get("INSPECTION_SHARED", Path(__file__).parents[2] / "../shared"))
COCO_TINY = SHARED / "data" / "coco_tiny"


def coco_tiny() -> CocoDataset:
    if not (COCO_TINY / "annotations" / "instances_val2017.json").is_file():
        pytest.skip(f"coco_tiny not found at {COCO_TINY} (set INSPECTION_SHARED to the shared folder)")
    return CocoDataset.load(COCO_TINY / "val2017", COCO_TINY / "annotations" / "instances_val2017.json")


def write_dataset(root: Path, images: list[dict], annotations: list[dict], pixels: dict[int, np.ndarray]) -> CocoDataset:
    """A COCO dataset on disk: `pixels[id]` RGB arrays saved as PNG, plus the JSON."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for im in images:
        cv2.imwrite(str(root / "images" / im["file_name"]), cv2.cvtColor(pixels[im["id"]], cv2.COLOR_RGB2BGR))
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}]}
    (root / "instances.json").write_text(json.dumps(data))
    return CocoDataset.load(root / "images", root / "instances.json")


def random_dataset(root: Path, n: int, seed: int = 0) -> CocoDataset:
    """n images of random sizes, each with a random box; ids deliberately not 0..n-1."""
    rng = np.random.default_rng(seed)
    images, anns, pixels = [], [], {}
    for i in range(n):
        image_id = 1000 + 7 * i
        w, h = (int(v) for v in rng.integers(40, 200, size=2))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": w, "height": h})
        pixels[image_id] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        anns.append(
            {
                "id": i + 1,
                "image_id": image_id,
                "bbox": [2.0, 3.0, w / 2, h / 3],
                "area": w * h / 6.0,
                "category_id": 1,
                "iscrowd": 0,
            }
        )
    return write_dataset(root, images, anns, pixels)


def test_compose_is_deterministic_for_a_seed_and_uses_each_image_once(tmp_path: Path) -> None:
    dataset = random_dataset(tmp_path, 70)
    a = compose_mosaics(dataset, GRID, seed=3)
    b = compose_mosaics(dataset, GRID, seed=3)
    c = compose_mosaics(dataset, GRID, seed=4)
    assert a.num_frames == 2 and a.source_image_ids.shape == (2, 63)
    np.testing.assert_array_equal(a.source_image_ids, b.source_image_ids)
    assert a.frame_gt == b.frame_gt and a.tile_gt == b.tile_gt
    np.testing.assert_array_equal(a.frames[1], b.frames[1])
    assert not np.array_equal(a.source_image_ids, c.source_image_ids)
    used = a.source_image_ids[a.source_image_ids >= 0]
    assert sorted(used.tolist()) == sorted(dataset.image_ids.tolist())  # each image exactly once
    assert (a.source_image_ids[1, 7:] == -1).all()  # blank fill at the end of the last frame
    assert np.all(a.frames[1][300:, :] == 0)  # blank slots are zero pixels (row 1 onwards of frame 2)
    assert len(a.tile_gt["images"]) == 2 * 63 and len(a.frame_gt["images"]) == 2


def test_limit_takes_the_first_images_of_the_permutation(tmp_path: Path) -> None:
    dataset = random_dataset(tmp_path, 70)
    full = compose_mosaics(dataset, GRID, seed=5)
    part = compose_mosaics(dataset, GRID, seed=5, limit=10)
    assert part.num_frames == 1 and part.num_images == 10
    np.testing.assert_array_equal(part.source_image_ids[0, :10], full.source_image_ids[0, :10])
    assert {a["source_id"] for a in part.frame_gt["annotations"]} == {
        a["source_id"] for a in full.tile_gt["annotations"] if a["image_id"] in full.tile_image_ids[0, :10]
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 63),
    pick=st.integers(0, 62),
    size=st.tuples(st.integers(20, 1200), st.integers(20, 1200)),
    frac=st.tuples(st.floats(0, 0.7), st.floats(0, 0.7), st.floats(0.1, 1), st.floats(0.1, 1)),
    letterbox=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gt_box_lands_where_its_pixels_are(n, pick, size, frac, letterbox, seed) -> None:
    w, h = size
    x0, y0 = int(frac[0] * w), int(frac[1] * h)
    bw = max(1, int(frac[2] * (w - x0)))
    bh = max(1, int(frac[3] * (h - y0)))
    target = 10 + pick % n  # one of the n images carries the box
    colour = np.array([250, 20, 120], np.uint8)
    pixels, images = {}, []
    for image_id in range(10, 10 + n):
        iw, ih = (w, h) if image_id == target else (8, 8)
        pixels[image_id] = np.full((ih, iw, 3), 60, np.uint8)
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": iw, "height": ih})
    pixels[target][y0 : y0 + bh, x0 : x0 + bw] = colour
    ann = {"id": 5, "image_id": target, "bbox": [x0, y0, bw, bh], "area": float(bw * bh), "category_id": 7, "iscrowd": 0}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp), images, [ann], pixels)
        mosaics = compose_mosaics(dataset, GRID, seed=seed, letterbox=letterbox)
        frame = mosaics.frames[0]

    slot = int(np.flatnonzero(mosaics.source_image_ids[0] == target)[0])
    row, col = divmod(slot, 9)
    if letterbox:
        s = 300 / max(w, h)
        nw, nh = int(np.floor(w * s + 0.5)), int(np.floor(h * s + 0.5))
    else:
        nw, nh = 300, 300
    ox, oy = (300 - nw) // 2, (300 - nh) // 2
    sx, sy = nw / w, nh / h
    expect_tile = np.array([x0 * sx + ox, y0 * sy + oy, bw * sx, bh * sy])
    kept = expect_tile[2] >= MIN_BOX_SIDE_PX and expect_tile[3] >= MIN_BOX_SIDE_PX
    assert len(mosaics.frame_gt["annotations"]) == int(kept) == len(mosaics.tile_gt["annotations"])
    if not kept:
        return
    fa, ta = mosaics.frame_gt["annotations"][0], mosaics.tile_gt["annotations"][0]
    np.testing.assert_allclose(ta["bbox"], expect_tile, atol=1e-3)
    np.testing.assert_allclose(fa["bbox"], expect_tile + [300 * col, 300 * row, 0, 0], atol=1e-3)
    assert ta["image_id"] == mosaics.tile_image_ids[mosaics.frame_index(1), slot]
    assert fa["category_id"] == 7 and fa["iscrowd"] == 0
    np.testing.assert_allclose(fa["area"], bw * bh * sx * sy, rtol=1e-6)
    # the pixels agree with the box: its centre shows the drawn colour when the box is a few
    # pixels wide in both images (INTER_LINEAR blends a 1-pixel source box with its neighbours)
    if expect_tile[2] >= 6 and expect_tile[3] >= 6 and bw >= 3 and bh >= 3:
        cx, cy = fa["bbox"][0] + fa["bbox"][2] / 2, fa["bbox"][1] + fa["bbox"][3] / 2
        np.testing.assert_allclose(frame[int(cy), int(cx)], colour, atol=1)


def test_degenerate_boxes_are_dropped_by_the_one_pixel_rule(tmp_path: Path) -> None:
    # 3000×150 image: x scale 0.1, y scale 2
    images = [{"id": 1, "file_name": "1.png", "width": 3000, "height": 150}]
    boxes = {11: [0, 0, 5, 50], 12: [0, 0, 10, 50], 13: [100, 10, 200, 0.4], 14: [100, 10, 200, 0.5], 15: [10, 10, 9.99, 20]}
    anns = [{"id": k, "image_id": 1, "bbox": b, "area": b[2] * b[3], "category_id": 1, "iscrowd": 0} for k, b in boxes.items()]
    dataset = write_dataset(tmp_path, images, anns, {1: np.zeros((150, 3000, 3), np.uint8)})
    mosaics = compose_mosaics(dataset, GRID, seed=0)
    kept = sorted(a["source_id"] for a in mosaics.frame_gt["annotations"])
    assert kept == [12, 14]  # 0.5 px and 0.999 px wide, 0.8 px high: dropped; 1.0 px kept
    assert mosaics.dropped_annotations == 3 == mosaics.frame_gt["info"]["dropped_annotations"]


def test_letterbox_keeps_aspect_and_centres(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "1.png", "width": 600, "height": 300}]
    ann = {"id": 1, "image_id": 1, "bbox": [100, 50, 200, 100], "area": 15000.0, "category_id": 1, "iscrowd": 1}
    dataset = write_dataset(tmp_path, images, [ann], {1: np.full((300, 600, 3), 200, np.uint8)})
    plain = compose_mosaics(dataset, GRID, seed=0)
    boxed = compose_mosaics(dataset, GRID, seed=0, letterbox=True)
    assert plain.tile_gt["annotations"][0]["bbox"] == pytest.approx([50, 50, 100, 100])
    assert boxed.tile_gt["annotations"][0]["bbox"] == pytest.approx([50, 100, 100, 50])
    assert boxed.tile_gt["annotations"][0]["area"] == pytest.approx(15000 * 0.25)
    assert boxed.tile_gt["annotations"][0]["iscrowd"] == 1  # crowd regions are kept, flagged
    tile = boxed.frames[0][:300, :300]
    assert np.all(tile[:75] == 0) and np.all(tile[225:] == 0)  # 75 px padding above and below
    assert np.all(tile[75:225] == 200)
    assert np.all(plain.frames[0][:300, :300] == 200)


def test_grid_with_overlap_is_rejected_with_the_config_key(tmp_path: Path) -> None:
    dataset = random_dataset(tmp_path, 2)
    with pytest.raises(ValueError, match="grid.overlap"):
        compose_mosaics(dataset, TileGrid(overlap=20, batch_size=128), seed=0)
    with pytest.raises(ValueError, match="multiples of grid.tile_size"):
        MosaicFrameSource(dataset, TileGrid(frame_width=2650))


def test_coco_tiny_ground_truth_scales_area_and_keeps_crowds() -> None:
    dataset = coco_tiny()
    mosaics = compose_mosaics(dataset, GRID, seed=0)
    assert mosaics.num_frames == 2 and mosaics.num_images == 80
    anns = mosaics.frame_gt["annotations"]
    assert len(anns) + mosaics.dropped_annotations == 815
    assert sum(a["iscrowd"] for a in anns) == 11
    source = {int(i): a for a in (dataset.annotations_for(im.id) for im in dataset.images) for i in a.ann_id}
    sizes = {im.id: (im.width, im.height) for im in dataset.images}
    tile_src = {t["id"]: t["source_image_id"] for t in mosaics.tile_gt["images"]}
    for a in mosaics.tile_gt["annotations"][:50]:
        src = source[a["source_id"]]
        k = int(np.flatnonzero(src.ann_id == a["source_id"])[0])
        w, h = sizes[tile_src[a["image_id"]]]
        assert a["area"] == pytest.approx(float(src.area[k]) * 300 / w * 300 / h, rel=1e-5)
    frame = mosaics.frames[0]
    assert frame.shape == (2100, 2700, 3) and frame.dtype == np.uint8


def test_mosaic_frame_source_is_deterministic_and_cycles(tmp_path: Path) -> None:
    dataset = random_dataset(tmp_path, 70)
    source = MosaicFrameSource(dataset, GRID, seed=3, cache_tiles=8)
    first = source(0, 0, 0)
    assert first.shape == (2100, 2700, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, compose_mosaics(dataset, GRID, seed=3).frames[0])
    np.testing.assert_array_equal(source(2, 4, 18), MosaicFrameSource(dataset, GRID, seed=3)(2, 4, 18))
    both = np.concatenate([source.source_image_ids(0, 0, 0), source.source_image_ids(0, 0, 1)])
    assert set(both.tolist()) == set(dataset.image_ids.tolist())  # 126 slots cycle over 70 images
    with pytest.raises(ValueError, match="camera=5"):
        source(0, 5, 0)


def test_dataset_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        CocoDataset.load(tmp_path, tmp_path / "missing.json")
    images = [{"id": 1, "file_name": "1.png", "width": 50, "height": 40}]
    dataset = write_dataset(tmp_path, images, [], {1: np.zeros((40, 60, 3), np.uint8)})
    with pytest.raises(DatasetError, match="60×40 but the annotations say 50×40"):
        dataset.load_image(1)
    bad = {"images": images, "annotations": [{"id": 1, "image_id": 2, "bbox": [0, 0, 1, 1], "category_id": 1}], "categories": []}
    with pytest.raises(DatasetError, match="missing from `images`"):
        CocoDataset.from_dict(bad, tmp_path)


def test_photo_source_makes_frames_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the photo source tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(available_photos())
    source = PhotoFrameSource(GRID, seed=1)
    frame = source(3, 2, 7)
    assert frame.shape == (2100, 2700, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, PhotoFrameSource(GRID, seed=1)(3, 2, 7))
    assert not np.array_equal(frame, source(3, 2, 8))
    assert frame.std() > 20  # real picture content, not a blank frame
