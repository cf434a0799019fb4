"""Inspection rules: which detections are defects, where on each camera they count, and when a car is NG.

config   the validated `inspection.rules` section (pydantic), checked against the model and frame
evaluate the rule set compiled to arrays and applied to a whole car's detections at once
verdict  the car's verdict written in the store transaction that decides it (+ its outbox row)
"""

from .config import CameraRegions, CarRule, DefectRule, InspectionConfig, Region, RulesConfig
from .evaluate import CarDecision, RuleSet

__all__ = ["CameraRegions", "CarDecision", "CarRule", "DefectRule", "InspectionConfig", "Region", "RuleSet", "RulesConfig"]
