"""The `inspection.rules` section of the config: defect classes, per-camera regions, the per-car rule.

    inspection:
      rules:
        defects:                      # which classes are defects, and how sure and how big a box must be
          - {class: scissors, min_score: 0.5, min_size_px: 20}
        cameras:                      # optional, per camera index: regions in frame pixels (closed polygons)
          0:
            include: [{name: door, points: [[0, 0], [1200, 0], [1200, 2100], [0, 2100], [0, 0]]}]
            ignore:  [{name: logo, points: [[100, 100], [300, 100], [300, 300], [100, 100]]}]
        car: {ng_on_any: true, counts: {scissors: 2}}

A box is a defect when its class is listed, its score >= min_score, its shorter side >= min_size_px,
its centre lies in an include region of its camera (when the camera has any) and in no ignore region.
A car is NG when it has any defect (`ng_on_any`) or a class reaches its count.

Checks that need the model and the frame (`check_against`): an unknown class name, a polygon outside
the frame. A polygon must be closed (last point = first) with at least 3 distinct corners.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RULE_NAME_MAX = 128  # frame_defects.rule


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DefectRule(_Section):
    class_name: str = Field(alias="class", min_length=1, description="a class name of the model")
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    min_size_px: float = Field(0.0, ge=0.0, description="the box's shorter side, frame pixels")

    @property
    def name(self) -> str:
        return f"{self.class_name}: score >= {self.min_score:g}, size >= {self.min_size_px:g} px"


class Region(_Section):
    name: str = Field(min_length=1, max_length=64)
    points: list[tuple[float, float]] = Field(description="closed polygon in frame pixels: the last point repeats the first")

    @field_validator("points")
    @classmethod
    def _closed(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(points) < 2 or tuple(points[0]) != tuple(points[-1]):
            raise ValueError("open polygon: its last point must repeat its first")
        if len(set(map(tuple, points[:-1]))) < 3:
            raise ValueError("a polygon needs at least 3 distinct corners")
        return points


class CameraRegions(_Section):
    include: list[Region] = Field(default_factory=list, description="defects count only inside these (none: everywhere)")
    ignore: list[Region] = Field(default_factory=list, description="defects inside these are removed")


class CarRule(_Section):
    ng_on_any: bool = Field(True, description="NG when the car has any defect")
    counts: dict[str, int] = Field(default_factory=dict, description="class -> defects of it that make the car NG")

    @field_validator("counts")
    @classmethod
    def _positive(cls, counts: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad:
            raise ValueError(f"counts must be >= 1, got {bad}")
        return counts


class RulesConfig(_Section):
    defects: list[DefectRule] = Field(default_factory=list)
    cameras: dict[int, CameraRegions] = Field(default_factory=dict)
    car: CarRule = CarRule()

    @model_validator(mode="after")
    def _consistent(self) -> RulesConfig:
        names = [d.class_name for d in self.defects]
        if len(set(names)) != len(names):
            raise ValueError(f"a class is listed twice in defects: {sorted({n for n in names if names.count(n) > 1})}")
        unlisted = sorted(set(self.car.counts) - set(names))
        if unlisted:
            raise ValueError(f"car.counts names {unlisted}, which are not in defects (list them there with their thresholds)")
        return self

    def digest(self) -> str:
        """sha256 of the rule set (canonical JSON): stored with each verdict as its rules version."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def check_against(self, class_names: Iterable[str], frame_width: int, frame_height: int, cameras: int) -> None:
        """Raise ValueError naming the first rule that the model or the frame cannot satisfy."""
        known = set(class_names)
        for rule in self.defects:
            if rule.class_name not in known:
                close = sorted(n for n in known if n[:3].lower() == rule.class_name[:3].lower())[:5]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"defects: class {rule.class_name!r} is not a class of the model{hint}")
        for camera, regions in self.cameras.items():
            if not 0 <= camera < cameras:
                raise ValueError(f"cameras.{camera}: the line has cameras 0..{cameras - 1}")
            for kind, region in [("include", r) for r in regions.include] + [("ignore", r) for r in regions.ignore]:
                for x, y in region.points:
                    if not (0 <= x <= frame_width and 0 <= y <= frame_height):
                        raise ValueError(
                            f"cameras.{camera}.{kind} {region.name!r}: point ({x:g}, {y:g}) is outside the "
                            f"{frame_width}×{frame_height} frame (grid.frame_width × grid.frame_height)"
                        )


class InspectionConfig(_Section):
    rules: RulesConfig = RulesConfig()
