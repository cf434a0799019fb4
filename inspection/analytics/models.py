"""Typed results of the analyst read layer (pydantic: they double as the dashboard's OpenAPI schema).

Per-box data is a struct of arrays (`FrameBoxes`, `DetectionTable`): one list per column, never
one object per box. Times are timezone-aware UTC datetimes; durations are float seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["met", "missed", "overdue", "in_flight"]  # inspection.car_state.CarState
FrameState = Literal["stored", "error", "missing"]
InspectionVerdict = Literal["ok", "ng", "incomplete", "error"]  # car_verdicts.verdict


class CarRow(BaseModel):
    car_id: str
    verdict: Verdict
    inspection: InspectionVerdict | None = Field(None, description="the inspection verdict; None: not decided (yet)")
    inspection_reason: str | None = None
    first_captured_at: datetime
    deadline_at: datetime
    completed_at: datetime | None
    frames_expected: int
    frames_stored: int = Field(description="frame rows, error rows included")
    errors: int
    detections: int
    deadline_s: float = Field(description="time allowed: first capture -> deadline")
    car_latency_s: float | None = Field(description="first capture -> completion (or the last frame so far)")
    lateness_s: float | None = Field(description="completion - deadline; negative = early; None until complete")
    mean_frame_latency_s: float | None
    max_frame_latency_s: float | None
    deadline_met: bool | None = Field(None, description="None until complete")
    overdue_at: datetime | None = Field(None, description="found past its deadline with frames missing (kept once complete)")
    missing_frames: str | None = Field(None, description='what was missing then, e.g. "cam 1 shots 0-4"')

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


class CarStates(BaseModel):
    """Cars not complete yet: still within their deadline (+ grace), or overdue."""

    in_flight: int
    overdue: int


class TableCounts(BaseModel):
    runs: int
    cars: int
    cars_completed: int
    cars_late: int
    frames: int
    frame_errors: int
    detections: int
    rejected: int = Field(description="rows of rejected_messages")


class CarsPage(BaseModel):
    items: list[CarRow]
    page: int
    per_page: int
    total: int


class Headline(BaseModel):
    day_start: datetime = Field(description="00:00 UTC of today: 'today' counts cars first captured since")
    now: datetime
    cars_today: int
    completed_today: int
    missed_today: int
    overdue_today: int
    miss_rate_today: float | None = Field(description="(missed + overdue) / (completed + overdue); None before any")
    frames_per_s: float = Field(description="frames handled over the last `window_s` seconds")
    window_s: float
    parked_frames_today: int = Field(description="error frames processed today")
    rejected_today: int = Field(description="rejected messages received today")
    last_processed_at: datetime | None


class FrameCell(BaseModel):
    camera: int
    shot: int
    state: FrameState
    frame_id: int | None
    detections: int
    error_kind: str | None
    has_image: bool


class CarDetail(BaseModel):
    car: CarRow
    cameras: int
    shots: int
    cells: list[FrameCell] = Field(description="cameras × shots, camera-major; missing frames included")


class FrameDetail(BaseModel):
    frame_id: int
    car_id: str
    camera: int
    shot: int
    width: int | None
    height: int | None
    captured_at: datetime
    received_at: datetime
    processed_at: datetime
    latency_s: float
    detection_count: int
    error_kind: str | None
    error: str | None
    has_image: bool
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    consumer_id: str
    host: str
    model: str
    backend: str
    precision: str


class FrameBoxes(BaseModel):
    """A frame's stored boxes in frame pixels, highest score first, as parallel arrays."""

    frame_id: int
    xyxy: list[tuple[float, float, float, float]]
    score: list[float]
    class_id: list[int]
    class_name: list[str]
    tile_index: list[int]


class DetectionFilter(BaseModel):
    since: datetime | None = Field(None, description="captured at or after (UTC)")
    until: datetime | None = Field(None, description="captured at or before (UTC)")
    car_id: str | None = None
    camera: int | None = Field(None, ge=0)
    class_name: str | None = None
    min_score: float = Field(0.0, ge=0.0, le=1.0)


class ClassCount(BaseModel):
    class_id: int
    class_name: str
    boxes: int


class DetectionTable(BaseModel):
    """One page of detections (newest capture first) as parallel arrays."""

    id: list[int]
    frame_id: list[int]
    car_id: list[str]
    camera: list[int]
    shot: list[int]
    captured_at: list[datetime]
    class_name: list[str]
    score: list[float]
    xyxy: list[tuple[float, float, float, float]]


class DetectionsPage(BaseModel):
    filter: DetectionFilter
    counts: list[ClassCount]
    total: int = Field(description="boxes matching the filter (sum of the counts)")
    rows: DetectionTable
    page: int
    per_page: int
    has_next: bool


class ErrorFrame(BaseModel):
    frame_id: int
    car_id: str
    camera: int
    shot: int
    error_kind: str | None
    error: str | None
    processed_at: datetime
    kafka_topic: str | None
    kafka_partition: int | None
    kafka_offset: int | None


class Rejected(BaseModel):
    received_at: datetime
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    message_key: str | None
    error_kind: str
    error: str


class Problems(BaseModel):
    error_frames: list[ErrorFrame]
    rejected: list[Rejected]
    page: int
    per_page: int
    has_next: bool


class CarLatencySeries(BaseModel):
    """Newest cars, oldest first: car latency against its deadline."""

    car_id: list[str]
    first_captured_at: list[datetime]
    car_latency_s: list[float | None]
    deadline_s: list[float]
    verdict: list[Verdict]


class TimeBins(BaseModel):
    """Equal time bins over the charts' window: bin k covers [start + k·width_s, start + (k+1)·width_s)."""

    start: datetime | None
    width_s: float
    count: int


class ClassSeries(BaseModel):
    bins: TimeBins
    boxes: dict[str, list[int]] = Field(description="class name -> boxes per bin (frames captured in the bin)")


class LatencySeries(BaseModel):
    bins: TimeBins
    frames: list[int]
    p50_s: list[float | None]
    p99_s: list[float | None]


class LineCharts(BaseModel):
    cars: CarLatencySeries
    classes: ClassSeries
    latency: LatencySeries


class ChangeMark(BaseModel):
    """Changes whenever a consumer stores, replaces or parks anything."""

    mark: str


class FrameDefects(BaseModel):
    """The boxes the inspection rules looked at in one frame, as parallel arrays."""

    frame_id: int
    xyxy: list[tuple[float, float, float, float]]
    score: list[float]
    class_name: list[str]
    rule: list[str] = Field(description="the rule that kept the box, or the ignore region that removed it")
    kept: list[bool] = Field(description="true: a defect; false: removed by an ignore region")
