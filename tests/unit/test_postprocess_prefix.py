"""The tile-prefix NMS (`nms_within_reach`) keeps exactly what NMS over every candidate keeps, capped per tile."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.boxes import batched_nms, top_k_per_group
from inspection.detect.postprocess import nms_within_reach


def _random_candidates(rng: np.random.Generator, tiles: int, per_tile: int, classes: int):
    n = tiles * per_tile
    tile = np.repeat(np.arange(tiles), per_tile)
    centre = rng.uniform(0, 300, (n, 2))
    size = rng.uniform(5, 120, (n, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], 1).astype(np.float32)
    score = rng.uniform(0.001, 1.0, n).astype(np.float32)
    column = rng.integers(0, classes, n)
    return boxes, score, tile * classes + column, tile


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_per_tile,first_prefix", [(10, 3), (10, 30), (100, 300), (5, 1)])
def test_prefix_rounds_equal_full_nms_then_cap(seed, max_per_tile, first_prefix):
    rng = np.random.default_rng(seed)
    boxes, score, groups, tile = _random_candidates(rng, tiles=7, per_tile=int(rng.integers(1, 400)), classes=3)
    full = batched_nms(boxes, score, groups, 0.5)
    want = full[top_k_per_group(score[full], tile[full], max_per_tile)]
    got = nms_within_reach(boxes, score, groups, tile, 0.5, max_per_tile, first_prefix)
    got = got[top_k_per_group(score[got], tile[got], max_per_tile)]
    assert sorted(got.tolist()) == sorted(want.tolist())


def test_no_candidates_keeps_nothing():
    empty = np.zeros((0,), np.int64)
    assert nms_within_reach(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), empty, empty, 0.5, 100, 300).size == 0
