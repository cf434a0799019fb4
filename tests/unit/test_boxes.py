import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.boxes import batched_nms, box_area, box_intersection, box_iou, group_pairs, paired_overlap, top_k_per_group


def box_ios(a, b):
    """(N, 4), (M, 4) -> (N, M) intersection over the smaller area (SAHI's IoS), all pairs: the reference."""
    inter = box_intersection(a, b)
    smaller = np.minimum(box_area(a)[:, None], box_area(b)[None, :])
    return np.divide(inter, smaller, out=np.zeros(inter.shape, np.float64), where=smaller > 0)


def brute_force_nms(xyxy, scores, groups, threshold, metric="iou"):
    """Textbook greedy NMS, one box at a time: the reference."""
    overlap = box_iou if metric == "iou" else box_ios
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(groups[k] != groups[i] or overlap(xyxy[[k]], xyxy[[i]])[0, 0] <= threshold for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng, n, extent=100.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(1, extent / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 60),
    n_groups=st.integers(1, 4),
    threshold=st.sampled_from([0.3, 0.5, 0.6]),
    metric=st.sampled_from(["iou", "ios"]),
)
def test_batched_nms_matches_brute_force(seed, n, n_groups, threshold, metric):
    rng = np.random.default_rng(seed)
    xyxy = random_boxes(rng, n, extent=60.0)  # dense, so many boxes overlap
    scores = rng.permutation(n).astype(np.float32) / max(n, 1)  # distinct scores: one right answer
    groups = rng.integers(0, n_groups, n)
    kept = batched_nms(xyxy, scores, groups, threshold, metric)
    assert kept.tolist() == brute_force_nms(xyxy, scores, groups, threshold, metric)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 50))
def test_nms_is_idempotent(seed, n):
    rng = np.random.default_rng(seed)
    xyxy, scores, groups = random_boxes(rng, n), rng.random(n).astype(np.float32), rng.integers(0, 3, n)
    kept = batched_nms(xyxy, scores, groups, 0.5)
    again = batched_nms(xyxy[kept], scores[kept], groups[kept], 0.5)
    assert again.tolist() == list(range(len(kept)))


def test_nms_never_suppresses_across_groups():
    box = np.array([[0, 0, 10, 10]] * 3, np.float32)
    kept = batched_nms(box, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 0]), 0.5)
    assert kept.tolist() == [0, 1]


def test_group_pairs_lists_every_pair_inside_runs():
    first, second = group_pairs(np.array([0, 0, 0, 1, 2, 2]))
    assert sorted(zip(first.tolist(), second.tolist())) == [(0, 1), (0, 2), (1, 2), (4, 5)]


def test_top_k_per_group():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    groups = np.array([0, 0, 0, 1, 1])
    assert top_k_per_group(scores, groups, 2).tolist() == [1, 2, 3, 4]


def test_iou_and_ios():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 25 / 100]])
    np.testing.assert_allclose(box_ios(a, b), [[0.5, 1.0]])
    np.testing.assert_allclose(paired_overlap(a[[0, 0]], b, "ios"), [0.5, 1.0])  # what NMS and stitching use
    np.testing.assert_allclose(paired_overlap(a[[0, 0]], b, "iou"), [50 / 150, 25 / 100])


@settings(max_examples=50, deadline=None)
@given(groups=st.lists(st.integers(0, 5), min_size=0, max_size=60), k=st.integers(1, 5), data=st.data())
def test_top_k_per_group_keeps_each_groups_best(groups, k, data):
    group = np.asarray(groups, np.int64)
    score = np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=len(groups), max_size=len(groups))), np.float64)
    keep = np.zeros(len(group), bool)
    keep[top_k_per_group(score, group, k)] = True
    for g in np.unique(group):
        mine = group == g
        assert keep[mine].sum() == min(k, mine.sum())
        if (~keep & mine).any():
            assert score[keep & mine].min() >= score[~keep & mine].max()
