"""Scene table pieces that need no detector: border recall, configurations, the SAHI extra's absence."""

from __future__ import annotations

import sys

import pytest

from inspection.config import SecondLookConfig, StitchConfig
from inspection.detections import Detections
from inspection.tiling import TileGrid
from inspection.tools.scene_eval import border_recall, default_configurations, marked_subset


def _gt() -> dict:
    anns = [
        {"id": 1, "image_id": 1, "bbox": [250, 100, 100, 100], "category_id": 3, "iscrowd": 0, "crosses_border": True},
        {"id": 2, "image_id": 1, "bbox": [10, 10, 50, 50], "category_id": 3, "iscrowd": 0, "crosses_border": False},
        {"id": 3, "image_id": 2, "bbox": [580, 580, 60, 60], "category_id": 1, "iscrowd": 0, "crosses_border": True},
        {"id": 4, "image_id": 2, "bbox": [280, 280, 60, 60], "category_id": 1, "iscrowd": 1, "crosses_border": True},
    ]
    return {"images": [{"id": 1}, {"id": 2}], "annotations": anns, "categories": [{"id": 1}, {"id": 3}]}


def test_border_recall_counts_crossing_objects_found_at_the_operating_score():
    gt = _gt()
    hit = Detections([[252, 102, 348, 198]], [0.5], [3])
    assert border_recall(gt, {1: hit}) == 0.5  # 1 of the 2 non-crowd crossing objects
    assert border_recall(gt, {1: Detections([[252, 102, 348, 198]], [0.2], [3])}) == 0.0  # below 0.3
    assert border_recall(gt, {1: Detections([[252, 102, 348, 198]], [0.5], [1])}) == 0.0  # wrong class
    assert border_recall(gt, {1: Detections([[250, 100, 290, 200]], [0.5], [3])}) == 0.0  # a piece: IoU 0.4 < 0.5
    both = {1: hit, 2: Detections([[580, 580, 640, 640]], [0.9], [1])}
    assert border_recall(gt, both) == 1.0
    assert border_recall({"annotations": []}, {}) == -1.0


def test_table_rows_keep_the_old_rule_and_the_overlapping_grids():
    rows = default_configurations(TileGrid(), StitchConfig(), overlaps=(60, 30))
    names = [r.name for r in rows]
    assert any("pairwise" in n for n in names) and any(n.startswith("one call:") for n in names)
    pairwise = next(r for r in rows if "pairwise" in r.name)
    assert pairwise.stitch.border_rule == "pairwise" and not pairwise.grid.global_view
    default = next(r for r in rows if r.option == "one_call")
    assert default.grid.global_view and default.grid.num_slots == 64 and default.second_look is None
    overlap = [r for r in rows if r.grid.overlap and r.second_look is None]
    assert [r.grid.overlap for r in overlap] == [60, 30] and overlap[0].grid.num_chunks == 2


def test_every_grid_option_has_a_row_with_and_without_the_second_look():
    look = SecondLookConfig(enabled=False, max_crops=9)
    rows = default_configurations(TileGrid(), StitchConfig(), overlaps=(30, 60), second_look=look)
    options = {r.option: r for r in rows if r.option}
    assert set(options) == {
        "one_call",
        "second_look",
        "overlap_30",
        "overlap_30+second_look",
        "overlap_60",
        "overlap_60+second_look",
    }
    for key, row in options.items():
        assert (row.second_look is not None) == key.endswith("second_look")
        if row.second_look is not None:  # the site's settings, switched on for the row
            assert row.second_look.enabled and row.second_look.max_crops == 9
    assert options["overlap_60+second_look"].grid == options["overlap_60"].grid


def test_ap_by_border_marks_the_other_objects_crowd():
    gt = _gt()
    crossing = marked_subset(gt, crossing=True)
    inside = marked_subset(gt, crossing=False)
    assert [a["iscrowd"] for a in crossing["annotations"]] == [0, 1, 0, 1]
    assert [a["iscrowd"] for a in inside["annotations"]] == [1, 0, 1, 1]
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 0, 0, 1]  # the input is left as it was


def test_sahi_row_names_its_extra_when_sahi_is_missing(monkeypatch):
    from inspection.tools.sahi_adapter import SahiNotInstalled, make_sahi_model

    monkeypatch.setitem(sys.modules, "sahi", None)  # `import sahi` raises ImportError, as on a machine without it
    with pytest.raises(SahiNotInstalled, match=r"pip install -e '\.\[sahi\]'"):
        make_sahi_model(object(), 0.001, 300)
