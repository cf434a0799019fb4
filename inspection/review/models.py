"""Typed values of the review API: what a reviewer sends, what the queue and a review frame show."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ..store.review_models import NOTE_MAX

# Why a box was rejected, or why a drawn box was missed: a closed list (the UI's select, the export's attribute).
REJECT_REASONS = ("false_positive", "wrong_class", "bad_box", "duplicate", "other")
MISSED_REASONS = ("missed", "too_small", "occluded", "cut_by_tile", "other")
QueueName = Literal["ng", "near", "ok_sample", "direct"]


class DecisionIn(BaseModel):
    detection_id: int
    decision: Literal["confirm", "reject"]
    reason_code: str | None = Field(None, description=f"for a reject: one of {', '.join(REJECT_REASONS)}")

    @model_validator(mode="after")
    def _reason(self) -> DecisionIn:
        if self.decision == "reject":
            if self.reason_code not in REJECT_REASONS:
                raise ValueError(f"a reject needs reason_code, one of {', '.join(REJECT_REASONS)}")
        elif self.reason_code is not None:
            raise ValueError("a confirm takes no reason_code")
        return self


class DrawnBoxIn(BaseModel):
    class_name: str = Field(min_length=1, max_length=64)
    xyxy: tuple[float, float, float, float] = Field(description="frame pixels")
    reason_code: str = Field("missed", description=f"one of {', '.join(MISSED_REASONS)}")

    @model_validator(mode="after")
    def _valid(self) -> DrawnBoxIn:
        x1, y1, x2, y2 = self.xyxy
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"box {self.xyxy}: x2 > x1 and y2 > y1 needed")
        if self.reason_code not in MISSED_REASONS:
            raise ValueError(f"reason_code {self.reason_code!r}: one of {', '.join(MISSED_REASONS)}")
        return self


class ReviewIn(BaseModel):
    """One frame's review: a decision for every stored detection, the boxes the model missed, a note."""

    decisions: list[DecisionIn] = Field(default_factory=list)
    missed: list[DrawnBoxIn] = Field(default_factory=list, max_length=500)
    note: str | None = Field(None, max_length=NOTE_MAX)
    queue: QueueName = "direct"


class ReviewOut(BaseModel):
    review_id: int
    frame_id: int
    reviewer: str
    reviewed_at: datetime
    model: str
    rules_version: str | None
    verdict_seen: str | None
    confirmed: int
    rejected: int
    missed: int


class ReviewBox(BaseModel):
    detection_id: int
    class_id: int
    class_name: str
    score: float
    xyxy: tuple[float, float, float, float]
    decision: Literal["confirm", "reject"] | None = None
    reason_code: str | None = None


class DrawnBox(BaseModel):
    class_name: str
    xyxy: tuple[float, float, float, float]
    reason_code: str


class LastReview(BaseModel):
    review_id: int
    reviewer: str
    reviewed_at: datetime
    note: str | None


class ReviewFrame(BaseModel):
    """A frame as the reviewer sees it: its boxes with ids, the latest review's decisions, the car's verdict."""

    frame_id: int
    car_id: str
    camera: int
    shot: int
    width: int
    height: int
    model: str
    score_threshold: float
    verdict: str | None
    rules_version: str | None
    boxes: list[ReviewBox]
    missed: list[DrawnBox]
    last_review: LastReview | None
    classes: list[str]
    reject_reasons: list[str] = list(REJECT_REASONS)
    missed_reasons: list[str] = list(MISSED_REASONS)


class QueueItem(BaseModel):
    frame_id: int
    car_id: str
    camera: int
    shot: int
    queue: QueueName
    detections: int
    verdict: str | None


class ReviewQueue(BaseModel):
    items: list[QueueItem]
    mix: dict[str, int] = Field(description="frames taken from each bucket")
