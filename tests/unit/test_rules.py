"""Inspection rules: config checks (one clear error) and properties of the vectorised evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from inspection.cli import app
from inspection.config import ConfigError, load_settings
from inspection.rules import RulesConfig, RuleSet
from inspection.rules.evaluate import points_in_polygon

NAMES = {1: "person", 2: "bicycle", 3: "car"}
W, H = 2700, 2100


def rules(**data: object) -> RulesConfig:
    return RulesConfig.model_validate({"defects": [{"class": "person", "min_score": 0.5, "min_size_px": 10}], **data})


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


coords = st.floats(0, 2000, allow_nan=False, width=32)
boxes = st.integers(0, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 2), min_size=n, max_size=n),  # camera
        st.lists(st.sampled_from([1, 2, 3, 7, -1]), min_size=n, max_size=n),  # class ids, some unknown
        st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n),
        st.lists(st.tuples(coords, coords, st.floats(0, 600, width=32), st.floats(0, 600, width=32)), min_size=n, max_size=n),
    )
)


def arrays(sample: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    camera, class_id, score, xywh = sample
    xywh = np.asarray(xywh, np.float64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return np.asarray(camera), np.asarray(class_id), np.asarray(score), xyxy


@settings(max_examples=60, deadline=None)
@given(boxes, st.floats(0, 1), st.floats(0, 1))
def test_a_higher_score_threshold_never_adds_a_defect(sample: tuple, low: float, high: float) -> None:
    low, high = sorted((low, high))
    cam, cls, score, xyxy = arrays(sample)
    lax = RuleSet.compile(RulesConfig.model_validate({"defects": [{"class": "person", "min_score": low}]}), NAMES)
    strict = RuleSet.compile(RulesConfig.model_validate({"defects": [{"class": "person", "min_score": high}]}), NAMES)
    lax_kept, strict_kept = lax.apply(cam, cls, score, xyxy).defect, strict.apply(cam, cls, score, xyxy).defect
    assert not (strict_kept & ~lax_kept).any()
    assert (lax_kept <= (cls == 1)).all()  # only the listed class, never an unknown id


@settings(max_examples=60, deadline=None)
@given(boxes)
def test_regions_covering_the_frame_change_nothing_and_an_ignore_of_it_removes_every_defect(sample: tuple) -> None:
    cam, cls, score, xyxy = arrays(sample)
    base = RuleSet.compile(rules(), NAMES).apply(cam, cls, score, xyxy)
    everywhere = square(0, 0, W, H)
    included = RuleSet.compile(rules(cameras={0: {"include": [{"name": "all", "points": everywhere}]}}), NAMES)
    inside = (xyxy[:, 0] + xyxy[:, 2]) / 2 < W  # centres inside the frame (the include region)
    inside &= (xyxy[:, 1] + xyxy[:, 3]) / 2 < H
    got = included.apply(cam, cls, score, xyxy)
    assert np.array_equal(got.defect, base.defect & ((cam != 0) | inside))
    ignored = RuleSet.compile(rules(cameras={1: {"ignore": [{"name": "all", "points": square(-1, -1, W, H)}]}}), NAMES)
    out = ignored.apply(cam, cls, score, xyxy)
    on_cam1 = base.defect & (cam == 1) & inside
    assert not (out.defect & on_cam1).any()
    assert np.array_equal(out.ignored, on_cam1)  # what the mask removed is marked, nothing else
    assert np.array_equal(out.defect, base.defect & ~on_cam1)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-50, 150), st.floats(-50, 150)), min_size=0, max_size=50),
    st.floats(0, 40),
    st.floats(0, 40),
    st.floats(1, 60),
    st.floats(1, 60),
)
def test_point_in_a_rectangle_polygon_matches_the_box_test(points, x0, y0, w, h) -> None:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    polygon = np.asarray(square(x0, y0, x0 + w, y0 + h), np.float64)
    strict = (pts[:, 0] > x0) & (pts[:, 0] < x0 + w) & (pts[:, 1] > y0) & (pts[:, 1] < y0 + h)
    outside = (pts[:, 0] < x0) | (pts[:, 0] > x0 + w) | (pts[:, 1] < y0) | (pts[:, 1] > y0 + h)
    got = points_in_polygon(pts, polygon)
    assert (got[strict]).all() and not (got[outside]).any()  # edges may go either way
    # the same polygon listed backwards (clockwise) answers the same
    assert np.array_equal(got, points_in_polygon(pts, polygon[::-1].copy()))


def test_empty_sets_decide_ok_and_counts_decide_ng() -> None:
    rs = RuleSet.compile(rules(), NAMES)
    empty = rs.apply(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 4)))
    assert rs.decide(empty).verdict == "ok" and rs.decide(empty).defects == 0
    xyxy = np.array([[0, 0, 50, 50], [100, 100, 150, 150], [0, 0, 5, 5]], np.float64)
    cls, score, cam = np.array([1, 1, 1]), np.array([0.9, 0.8, 0.9]), np.array([0, 0, 0])
    counted = RuleSet.compile(rules(car={"ng_on_any": False, "counts": {"person": 2}}), NAMES)
    decision = counted.decide(counted.apply(cam, cls, score, xyxy))
    assert (decision.verdict, decision.defects) == ("ng", 2) and "person 2 >= 2" in decision.reason  # 5 px box too small
    one = counted.decide(counted.apply(cam[:1], cls[:1], score[:1], xyxy[:1]))
    assert one.verdict == "ok" and one.defects == 1
    assert rs.decide(rs.apply(cam[:1], cls[:1], score[:1], xyxy[:1])).verdict == "ng"  # ng_on_any


@pytest.mark.parametrize(
    ("rules_yaml", "message"),
    [
        ({"defects": [{"class": "scisors"}]}, "class 'scisors' is not a class of the model (did you mean scissors?)"),
        (
            {"defects": [{"class": "person"}], "cameras": {0: {"ignore": [{"name": "a", "points": square(0, 0, 3000, 10)}]}}},
            "outside the 2700×2100 frame",
        ),
        (
            {
                "defects": [{"class": "person"}],
                "cameras": {0: {"include": [{"name": "a", "points": [[0, 0], [10, 0], [10, 10]]}]}},
            },
            "open polygon",
        ),
        ({"defects": [{"class": "person"}], "car": {"counts": {"car": 2}}}, "not in defects"),
    ],
)
def test_bad_rules_are_one_error_line_at_start(tmp_path, rules_yaml: dict, message: str) -> None:
    import yaml

    with pytest.raises(ConfigError, match="inspection.rules"):
        load_settings(overrides={"inspection.rules": rules_yaml})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"inspection": {"rules": rules_yaml}}))
    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"INSPECTION__STORE__URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in result.output.replace("\n", " "), result.output


def test_the_demo_ships_a_rule_set_for_the_coco_model() -> None:
    from inspection.detect.registry import load_spec
    from inspection.rules.load import example_rules, load_rules

    example = example_rules()
    assert {d.class_name for d in example.defects} == {"cell phone", "scissors", "person"}
    defaults = load_settings()
    rs = load_rules(__import__("pathlib").Path("configs/demo-rules.yaml"), defaults)  # the same rules, checked
    assert rs.digest == example.digest()
    compiled = RuleSet.compile(example, load_spec(defaults.model.name).class_names)
    phone = compiled.apply(
        np.array([0, 0]), np.array([77, 77]), np.array([0.9, 0.9]), np.array([[10, 10, 60, 60], [900, 900, 950, 950]])
    )
    assert phone.ignored.tolist() == [True, False] and phone.defect.tolist() == [False, True]  # the fixture corner on cam 0
    assert compiled.decide(phone).verdict == "ng"
