"""The rule set as arrays, applied to all boxes of a car at once (no object per box).

`RuleSet.compile(rules, class_names)` turns the validated config into lookup tables indexed by class
id (minimum score and size, which rule) and per-camera polygons; `RuleSet.apply` takes parallel
arrays of N boxes (camera, class id, score, xyxy) and returns a `BoxOutcome` of parallel arrays;
`RuleSet.decide` turns a car's outcome into its verdict with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .config import RulesConfig

Verdict = Literal["ok", "ng", "incomplete", "error"]


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of (N, 2) points against a closed (K, 2) polygon (last = first) -> (N,) bool.

    Points exactly on an edge may fall either way; the regions are drawn around areas, not on pixels.
    """
    if len(points) == 0:
        return np.zeros(0, bool)
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1, x2, y2 = polygon[:-1, 0], polygon[:-1, 1], polygon[1:, 0], polygon[1:, 1]
    crosses = (y1 > y) != (y2 > y)  # (N, K-1): the edge spans the point's row
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return np.count_nonzero(crosses & (x < x_at), axis=1) % 2 == 1


@dataclass(frozen=True)
class BoxOutcome:
    """Per box (parallel arrays of length N): kept as a defect, or removed by an ignore region.

    defect_rule: index into RuleSet.rule_names of the rule that kept the box, -1 if not a defect.
    ignored_by: index into RuleSet.region_names of the ignore region that removed it, -1 if none
        (only boxes that passed their class's thresholds are marked: what a mask took away).
    """

    defect_rule: np.ndarray
    ignored_by: np.ndarray

    @property
    def defect(self) -> np.ndarray:
        return self.defect_rule >= 0

    @property
    def ignored(self) -> np.ndarray:
        return self.ignored_by >= 0


@dataclass(frozen=True)
class CarDecision:
    verdict: Verdict
    reason: str
    defects: int


@dataclass(frozen=True)
class _Regions:
    include: tuple[np.ndarray, ...]
    ignore: tuple[tuple[int, np.ndarray], ...]  # (index into region_names, polygon)


@dataclass(frozen=True)
class RuleSet:
    digest: str
    rule_names: tuple[str, ...]  # one per defect rule, the text stored as frame_defects.rule
    region_names: tuple[str, ...]  # "ignore cam 0 logo"
    rule_classes: tuple[str, ...]  # class name of each defect rule
    min_score: np.ndarray  # (C,) by class id; inf where the class is no defect
    min_size: np.ndarray  # (C,)
    rule_of_class: np.ndarray  # (C,) index into rule_names, -1 where none
    regions: Mapping[int, _Regions]
    ng_on_any: bool
    counts: Mapping[int, int]  # rule index -> count that makes the car NG

    @classmethod
    def compile(cls, rules: RulesConfig, class_names: Mapping[int, str]) -> RuleSet:
        """Lookup arrays for `rules` over the model's classes (id -> name); names must be checked already."""
        ids_of = {name: class_id for class_id, name in class_names.items()}
        size = max(class_names, default=-1) + 1
        min_score = np.full(size, np.inf, np.float32)
        min_size = np.zeros(size, np.float32)
        rule_of_class = np.full(size, -1, np.int32)
        for index, rule in enumerate(rules.defects):
            class_id = ids_of[rule.class_name]
            min_score[class_id], min_size[class_id], rule_of_class[class_id] = rule.min_score, rule.min_size_px, index
        region_names: list[str] = []
        regions = {}
        for camera, config in rules.cameras.items():
            ignore = []
            for region in config.ignore:
                ignore.append((len(region_names), np.asarray(region.points, np.float64)))
                region_names.append(f"ignore cam {camera} {region.name}")
            include = tuple(np.asarray(r.points, np.float64) for r in config.include)
            regions[camera] = _Regions(include, tuple(ignore))
        rule_index = {rule.class_name: i for i, rule in enumerate(rules.defects)}
        return cls(
            digest=rules.digest(),
            rule_names=tuple(rule.name for rule in rules.defects),
            region_names=tuple(region_names),
            rule_classes=tuple(rule.class_name for rule in rules.defects),
            min_score=min_score,
            min_size=min_size,
            rule_of_class=rule_of_class,
            regions=regions,
            ng_on_any=rules.car.ng_on_any,
            counts={rule_index[name]: count for name, count in rules.car.counts.items()},
        )

    def apply(self, camera: np.ndarray, class_id: np.ndarray, score: np.ndarray, xyxy: np.ndarray) -> BoxOutcome:
        """Which of N boxes are defects (and by which rule), which an ignore region removed.

        camera, class_id: (N,) ints; score: (N,); xyxy: (N, 4) frame pixels.
        """
        n = len(class_id)
        camera = np.asarray(camera, np.int64).reshape(n)
        class_id = np.asarray(class_id, np.int64).reshape(n)
        xyxy = np.asarray(xyxy, np.float64).reshape(n, 4)
        known = (class_id >= 0) & (class_id < len(self.min_score))
        lookup = np.where(known, class_id, 0)
        shorter = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        passes = known & (np.asarray(score, np.float64).reshape(n) >= self.min_score[lookup]) & (shorter >= self.min_size[lookup])
        ignored_by = np.full(n, -1, np.int32)
        if self.regions and passes.any():
            centres = (xyxy[:, :2] + xyxy[:, 2:]) / 2
            for cam, regions in self.regions.items():
                here = passes & (camera == cam)
                if not here.any():
                    continue
                points = centres[here]
                inside = np.ones(len(points), bool)
                if regions.include:
                    inside = np.logical_or.reduce([points_in_polygon(points, p) for p in regions.include])
                removed = np.full(len(points), -1, np.int32)
                for index, polygon in reversed(regions.ignore):  # the first listed region wins
                    removed[inside & points_in_polygon(points, polygon)] = index
                keep = inside & (removed < 0)
                rows = np.flatnonzero(here)
                passes[rows[~keep]] = False
                ignored_by[rows] = removed
        return BoxOutcome(np.where(passes, self.rule_of_class[lookup], -1).astype(np.int32), ignored_by)

    def decide(self, outcome: BoxOutcome) -> CarDecision:
        """ok, or ng when any defect (ng_on_any) or a class reaching its count; the reason names which."""
        per_rule = np.bincount(outcome.defect_rule[outcome.defect], minlength=len(self.rule_names))
        total = int(per_rule.sum())
        found = ", ".join(f"{int(n)} {self.rule_classes[i]}" for i, n in enumerate(per_rule) if n)
        reached = [
            f"{self.rule_classes[i]} {int(per_rule[i])} >= {count}" for i, count in self.counts.items() if per_rule[i] >= count
        ]
        if reached:
            return CarDecision("ng", f"count reached: {', '.join(reached)}", total)
        if self.ng_on_any and total:
            return CarDecision("ng", f"defects: {found}", total)
        return CarDecision("ok", f"defects below the counts: {found}" if total else "no defects", total)
