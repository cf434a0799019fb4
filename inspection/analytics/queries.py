"""The analyst read layer's SQL: every statement the notebooks, the dashboard and scripts run.

Each `Query` is plain SQL with bind parameters (`:name`, never formatted-in values) that runs
unchanged on SQLite and PostgreSQL (tests run each on a freshly migrated database of both).
Portable on purpose:
- no date arithmetic in SQL: durations are the stored float seconds (`frames.latency_s`,
  `cars.lateness_s`); other differences of timestamps are taken in Python or pandas;
- averages of integer columns are cast to DOUBLE PRECISION (PostgreSQL would return NUMERIC);
- time parameters and time columns are typed (`time_params`, `time_columns`): SQLite stores UTC
  text and compares it as text, so a bound datetime must be rendered the way the store wrote it;
  results come back as timezone-aware UTC datetimes on both backends;
- booleans (`bool_columns`) come back as Python booleans on both backends.

The car's state is the one expression of inspection/car_state.py (`CAR_STATE_SQL`): met, missed,
overdue (marked, or past its deadline by more than the grace at `:now`), in_flight. Queries that
show it take `now` (default: the current time) and `grace_s` (default: overdue.grace_s's) and
bind `:overdue_before` = now - grace_s.

Tables (inspection/store/models.py): runs (one consumer process), cars (one per car; completion
and deadline verdict), frames (one per car × camera × shot: latency, detection_count, or an
error), detections (boxes in frame pixels), rejected_messages (Kafka records naming no frame).

Use from a notebook or a shell:
    >>> from inspection.analytics import queries
    >>> engine = queries.engine_from_env()          # store.url: $INSPECTION__STORE__URL, default sqlite:///inspection.db
    >>> cars = queries.read_df(engine, queries.CARS)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, CursorResult, Engine, TextClause, bindparam, text

from ..car_state import CAR_STATE_SQL, DEFAULT_GRACE_S, overdue_before
from ..config import load_settings
from ..extras import require
from ..store.db import create_engine_for
from ..store.models import UTCDateTime

if TYPE_CHECKING:  # pandas is the analyst's dependency, not the package's
    import pandas as pd

# The car's state (deadline verdict), defined once in car_state; `c` is the cars row.
VERDICT_SQL = CAR_STATE_SQL


def _binned(template: str, column: str) -> dict[str, str]:
    """`template` with {bin} = the 0-based time bin of `column` (:start_s, :width_s in whole Unix seconds)
    for each dialect: SQLite has no EXTRACT(EPOCH …) and (without its math extension) no FLOOR;
    strftime('%s') gives the whole seconds exactly (julianday's double would misplace times within
    ~50 µs of a bin edge) and its CAST to INTEGER truncates, which is the floor for times after 1970."""
    return {
        "postgresql": template.format(
            bin=f"CAST(FLOOR((CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION) - :start_s) / :width_s) AS INTEGER)"
        ),
        "sqlite": template.format(bin=f"CAST((CAST(strftime('%s', {column}) AS INTEGER) - :start_s) / :width_s AS INTEGER)"),
    }


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str
    time_columns: tuple[str, ...] = ()
    bool_columns: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # values of the :bind parameters
    time_params: tuple[str, ...] = ()  # bind parameters that are datetimes (":overdue_before" from now and grace_s)
    variants: Mapping[str, str] = field(default_factory=dict)  # dialect name -> its SQL, where `sql` cannot serve both
    # Optional conditions: bind parameter -> (slot, condition). Each `{slot}` of the SQL becomes the AND of
    # the conditions whose parameter is given (not None), `1 = 1` when none is: the text is one of a fixed
    # few, and values are always bound, never formatted in.
    filters: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def sql_for(self, dialect: str, params: Mapping[str, Any] | None = None) -> str:
        sql = self.variants.get(dialect) or self.sql
        if not self.filters:
            return sql
        slots: dict[str, list[str]] = {slot: [] for slot, _ in self.filters.values()}
        for name, (slot, condition) in self.filters.items():
            if (params or {}).get(name) is not None:
                slots[slot].append(condition)
        return sql.format(**{slot: " AND ".join(conditions) or "1 = 1" for slot, conditions in slots.items()})

    def statement(self, dialect: str = "postgresql", params: Mapping[str, Any] | None = None) -> Any:
        """The SQLAlchemy statement: typed datetime parameters, typed time and boolean result columns."""
        sql = self.sql_for(dialect, params)
        statement: TextClause = text(sql)
        bound = [p for p in self.time_params if re.search(rf":{p}\b", sql)]  # a filter left out binds nothing
        if bound:
            statement = statement.bindparams(*(bindparam(p, type_=UTCDateTime()) for p in bound))
        columns = {c: UTCDateTime() for c in self.time_columns} | {c: Boolean() for c in self.bool_columns}
        return statement.columns(**columns) if columns else statement

    def params(self, **params: Any) -> dict[str, Any]:
        values = {**self.defaults, **params}
        now = values.pop("now", None) or datetime.now(timezone.utc)
        grace_s = values.pop("grace_s", None)
        if "overdue_before" in self.time_params and values.get("overdue_before") is None:
            values["overdue_before"] = overdue_before(now, DEFAULT_GRACE_S if grace_s is None else grace_s)
        return values


_CAR_COLUMNS = f"""c.car_id,
           c.frames_expected,
           c.frames_done,
           c.first_captured_at,
           c.deadline_at,
           c.completed_at,
           c.deadline_met,
           c.lateness_s,
           c.overdue_at,
           c.missing_frames,
           {VERDICT_SQL} AS status,
           (SELECT v.verdict FROM car_verdicts AS v WHERE v.car_id = c.car_id) AS inspection,
           (SELECT v.reason FROM car_verdicts AS v WHERE v.car_id = c.car_id) AS inspection_reason"""

# The inspection verdict filter (:verdict; NULL = every car) and the order the line page lists cars in:
# NG cars first, then newest first.
_VERDICT_FILTER = "(CAST(:verdict AS VARCHAR(16)) IS NULL OR v.verdict = :verdict)"
_NG_FIRST = "CASE WHEN v.verdict = 'ng' THEN 0 ELSE 1 END"

_CAR_TIMES = ("first_captured_at", "deadline_at", "completed_at", "overdue_at", "last_processed_at")

CARS = Query(
    "cars",
    "One row per car, oldest first: frames done of expected, completion, verdict (met / missed / "
    "overdue / in_flight at :now), lateness (completed_at - deadline_at, s; negative = early), "
    "and per-car aggregates of its frames.",
    f"""
    SELECT {_CAR_COLUMNS},
           COALESCE(f.error_frames, 0)            AS error_frames,
           COALESCE(f.boxes, 0)                   AS boxes,
           f.mean_latency_s,
           f.max_latency_s,
           f.last_processed_at
    FROM cars AS c
    LEFT JOIN (
        SELECT car_id,
               COUNT(error)          AS error_frames,
               SUM(detection_count)  AS boxes,
               AVG(latency_s)        AS mean_latency_s,
               MAX(latency_s)        AS max_latency_s,
               MAX(processed_at)     AS last_processed_at
        FROM frames
        GROUP BY car_id
    ) AS f ON f.car_id = c.car_id
    ORDER BY c.first_captured_at, c.car_id
    """,
    time_columns=_CAR_TIMES,
    bool_columns=("deadline_met",),
    time_params=("overdue_before",),
)

# The newest cars, one page of them: the frames aggregate only touches the page's cars
# (ix_cars_first_captured_at_car_id orders them, uq_frames_car_id_camera_shot finds their frames).
_PAGE_OF_CARS = f"""SELECT c.car_id FROM cars AS c LEFT JOIN car_verdicts AS v ON v.car_id = c.car_id
        WHERE {_VERDICT_FILTER}
        ORDER BY {_NG_FIRST}, c.first_captured_at DESC, c.car_id DESC LIMIT :limit OFFSET :offset"""

LATEST_CARS = Query(
    "latest_cars",
    "A page of cars, NG first then newest first (:limit rows from :offset), only those whose inspection "
    "verdict is :verdict unless it is NULL: what CARS gives, plus frames stored (error rows included) and "
    "the car latency's end (completion, else the last frame processed).",
    f"""
    SELECT {_CAR_COLUMNS},
           COALESCE(f.frames, 0)                  AS frames_stored,
           COALESCE(f.error_frames, 0)            AS error_frames,
           COALESCE(f.boxes, 0)                   AS boxes,
           f.mean_latency_s,
           f.max_latency_s,
           f.last_processed_at
    FROM cars AS c
    LEFT JOIN (
        SELECT car_id,
               COUNT(*)              AS frames,
               COUNT(error)          AS error_frames,
               SUM(detection_count)  AS boxes,
               AVG(latency_s)        AS mean_latency_s,
               MAX(latency_s)        AS max_latency_s,
               MAX(processed_at)     AS last_processed_at
        FROM frames
        WHERE car_id IN ({_PAGE_OF_CARS})
        GROUP BY car_id
    ) AS f ON f.car_id = c.car_id
    LEFT JOIN car_verdicts AS v ON v.car_id = c.car_id
    WHERE c.car_id IN ({_PAGE_OF_CARS})
    ORDER BY {_NG_FIRST}, c.first_captured_at DESC, c.car_id DESC
    """,
    time_columns=_CAR_TIMES,
    bool_columns=("deadline_met",),
    defaults={"limit": 25, "offset": 0, "verdict": None},
    time_params=("overdue_before",),
)

ONE_CAR = Query(
    "one_car",
    "One car (:car_id) with the columns of LATEST_CARS.",
    f"""
    SELECT {_CAR_COLUMNS},
           COALESCE(f.frames, 0)                  AS frames_stored,
           COALESCE(f.error_frames, 0)            AS error_frames,
           COALESCE(f.boxes, 0)                   AS boxes,
           f.mean_latency_s,
           f.max_latency_s,
           f.last_processed_at
    FROM cars AS c
    LEFT JOIN (
        SELECT car_id,
               COUNT(*)              AS frames,
               COUNT(error)          AS error_frames,
               SUM(detection_count)  AS boxes,
               AVG(latency_s)        AS mean_latency_s,
               MAX(latency_s)        AS max_latency_s,
               MAX(processed_at)     AS last_processed_at
        FROM frames
        WHERE car_id = :car_id
        GROUP BY car_id
    ) AS f ON f.car_id = c.car_id
    WHERE c.car_id = :car_id
    """,
    time_columns=_CAR_TIMES,
    bool_columns=("deadline_met",),
    time_params=("overdue_before",),
)

CAR_CHART = Query(
    "car_chart",
    "The newest :limit cars for the car-latency chart: verdict at :now, completion, deadline, and "
    "for incomplete cars only the last frame processed so far (no aggregate over all frames).",
    f"""
    SELECT c.car_id,
           c.first_captured_at,
           c.deadline_at,
           c.completed_at,
           {VERDICT_SQL} AS status,
           CASE WHEN c.completed_at IS NULL
                THEN (SELECT MAX(f.processed_at) FROM frames AS f WHERE f.car_id = c.car_id) END AS last_processed_at
    FROM cars AS c
    ORDER BY c.first_captured_at DESC, c.car_id DESC
    LIMIT :limit
    """,
    time_columns=("first_captured_at", "deadline_at", "completed_at", "last_processed_at"),
    defaults={"limit": 100},
    time_params=("overdue_before",),
)

CAR_COUNT = Query(
    "car_count",
    "How many cars the database holds (only those whose inspection verdict is :verdict unless it is NULL).",
    f"SELECT COUNT(*) AS cars FROM cars AS c LEFT JOIN car_verdicts AS v ON v.car_id = c.car_id WHERE {_VERDICT_FILTER}",
    defaults={"verdict": None},
)

FRAME_DEFECTS = Query(
    "frame_defects",
    "The boxes of frame :frame_id the inspection rules looked at: kept as defects (kept, with the rule "
    "that kept them) or removed by an ignore region (not kept, with the region), highest score first.",
    """
    SELECT d.class_name, d.score, d.x1, d.y1, d.x2, d.y2, d.rule, d.kept
    FROM frame_defects AS d
    WHERE d.frame_id = :frame_id
    ORDER BY d.kept DESC, d.score DESC, d.id
    """,
    bool_columns=("kept",),
)

CARS_SINCE = Query(
    "cars_since",
    "Cars whose first frame was captured at or after :since, by verdict at :now (the line page's 'today' figures).",
    f"""
    SELECT {VERDICT_SQL} AS status, COUNT(*) AS cars
    FROM cars AS c
    WHERE c.first_captured_at >= :since
    GROUP BY 1
    """,
    time_params=("since", "overdue_before"),
)

INCOMPLETE_CARS = Query(
    "incomplete_cars",
    "Cars not complete yet, by state at :now (in_flight, overdue): the edge's inspection_cars gauge.",
    f"""
    SELECT {VERDICT_SQL} AS status, COUNT(*) AS cars
    FROM cars AS c
    WHERE c.completed_at IS NULL
    GROUP BY 1
    """,
    time_params=("overdue_before",),
)

TABLE_COUNTS = Query(
    "table_counts",
    "Rows of each table: runs, cars (completed, late), frames (errors), detections, rejected messages.",
    """
    SELECT (SELECT COUNT(*) FROM runs)                              AS runs,
           (SELECT COUNT(*) FROM cars)                              AS cars,
           (SELECT COUNT(completed_at) FROM cars)                   AS cars_completed,
           (SELECT COUNT(*) FROM cars WHERE NOT deadline_met)       AS cars_late,
           (SELECT COUNT(*) FROM frames)                            AS frames,
           (SELECT COUNT(error) FROM frames)                        AS frame_errors,
           (SELECT COUNT(*) FROM detections)                        AS detections,
           (SELECT COUNT(*) FROM rejected_messages)                 AS rejected
    """,
)

FRAMES_PROCESSED_SINCE = Query(
    "frames_processed_since",
    "Frames handled (stored or parked) at or after :since, and the newest processing time.",
    "SELECT COUNT(*) AS frames, MAX(processed_at) AS last_processed_at FROM frames WHERE processed_at >= :since",
    time_columns=("last_processed_at",),
    time_params=("since",),
)

PARKED_SINCE = Query(
    "parked_since",
    "Parked records at or after :since: error frames (by processing time) and rejected messages (by receiving time).",
    """
    SELECT (SELECT COUNT(*) FROM frames WHERE error IS NOT NULL AND processed_at >= :since) AS error_frames,
           (SELECT COUNT(*) FROM rejected_messages WHERE received_at >= :since)           AS rejected
    """,
    time_params=("since",),
)

LATEST_CAPTURE = Query(
    "latest_capture",
    "The newest capture time of any frame (the end of the charts' window); NULL on an empty database.",
    "SELECT MAX(captured_at) AS last_captured_at FROM frames",
    time_columns=("last_captured_at",),
)

CHANGE_MARK = Query(
    "change_mark",
    "What changes whenever a consumer stores, replaces or parks anything: the dashboard polls it.",
    """
    SELECT (SELECT MAX(processed_at) FROM frames)      AS last_processed_at,
           (SELECT MAX(id) FROM rejected_messages)      AS last_rejected_id,
           (SELECT COUNT(*) FROM cars)                  AS cars
    """,
    time_columns=("last_processed_at",),
)

CAR_FRAMES = Query(
    "car_frames",
    "The frames of one car (:car_id), by camera and shot: state, detection count, error.",
    """
    SELECT id AS frame_id, camera, shot, detection_count, error_kind, error, latency_s,
           image_uri IS NOT NULL AS has_image
    FROM frames
    WHERE car_id = :car_id
    ORDER BY camera, shot
    """,
    bool_columns=("has_image",),
)

FRAME = Query(
    "frame",
    "One frame (:frame_id) with the consumer that handled it.",
    """
    SELECT f.id AS frame_id, f.car_id, f.camera, f.shot, f.width, f.height,
           f.captured_at, f.received_at, f.processed_at, f.latency_s,
           f.detection_count, f.error_kind, f.error, f.image_uri,
           f.kafka_topic, f.kafka_partition, f.kafka_offset,
           r.consumer_id, r.host, r.model, r.backend, r.precision,
           c.frames_expected
    FROM frames AS f
    JOIN runs AS r ON r.id = f.run_id
    JOIN cars AS c ON c.car_id = f.car_id
    WHERE f.id = :frame_id
    """,
    time_columns=("captured_at", "received_at", "processed_at"),
)

FRAME_DETECTIONS = Query(
    "frame_detections",
    "The boxes of one frame (:frame_id) in frame pixels, highest score first.",
    """
    SELECT class_id, class_name, score, x1, y1, x2, y2, tile_index
    FROM detections
    WHERE frame_id = :frame_id
    ORDER BY score DESC, id
    """,
)

FRAME_LATENCY = Query(
    "frame_latency",
    "One row per handled frame: capture -> stored latency (s), its stage timestamps, which "
    "partition and which consumer handled it.",
    """
    SELECT f.car_id,
           f.camera,
           f.shot,
           f.latency_s,
           f.detection_count,
           f.error_kind,
           f.captured_at,
           f.received_at,
           f.processed_at,
           f.kafka_partition,
           f.run_id,
           r.consumer_id,
           r.backend,
           r.precision
    FROM frames AS f
    JOIN runs AS r ON r.id = f.run_id
    ORDER BY f.captured_at, f.car_id, f.camera, f.shot
    """,
    time_columns=("captured_at", "received_at", "processed_at"),
)

CAPTURE_SPAN = Query(
    "capture_span",
    "First and last capture time of the frames captured in [:since, :until] (the charts' time axis).",
    "SELECT MIN(captured_at) AS first_captured_at, MAX(captured_at) AS last_captured_at FROM frames "
    "WHERE captured_at >= :since AND captured_at <= :until",
    time_columns=("first_captured_at", "last_captured_at"),
    time_params=("since", "until"),
)

FRAME_LATENCY_BINNED = Query(
    "frame_latency_binned",
    "Latency of the frames stored without error, captured in [:since, :until], with their time bin "
    "(bin k = [:start_s + k·:width_s, … + :width_s) in Unix seconds); percentiles are taken in Python "
    "(SQLite has none).",
    "",
    variants=_binned(
        """
    SELECT {bin} AS bin, latency_s
    FROM frames
    WHERE captured_at >= :since AND captured_at <= :until AND error IS NULL
    """,
        "captured_at",
    ),
    time_params=("since", "until"),
)

CLASS_COUNTS_BINNED = Query(
    "class_counts_binned",
    "Boxes per time bin and class (id and name) for the frames captured in [:since, :until] (bins as in "
    "FRAME_LATENCY_BINNED). PostgreSQL reaches each frame's boxes through a LATERAL subquery that "
    "OFFSET 0 keeps unflattened: an index lookup per frame of the window, never a scan of all boxes.",
    "",
    variants={
        "postgresql": _binned(
            """
    SELECT f.bin, d.class_id, d.class_name, COUNT(*) AS boxes
    FROM (SELECT id, {bin} AS bin FROM frames WHERE captured_at >= :since AND captured_at <= :until) AS f
    CROSS JOIN LATERAL (SELECT class_id, class_name FROM detections WHERE frame_id = f.id OFFSET 0) AS d
    GROUP BY f.bin, d.class_id, d.class_name
    """,
            "captured_at",
        )["postgresql"],
        "sqlite": _binned(
            """
    SELECT f.bin, d.class_id, d.class_name, COUNT(*) AS boxes
    FROM (SELECT id, {bin} AS bin FROM frames WHERE captured_at >= :since AND captured_at <= :until) AS f
    JOIN detections AS d ON d.frame_id = f.id
    GROUP BY f.bin, d.class_id, d.class_name
    """,
            "captured_at",
        )["sqlite"],
    },
    time_params=("since", "until"),
)

MINUTE_CLASS_COUNTS = Query(
    "minute_class_counts",
    "Boxes per capture minute (Unix seconds // 60; :start_s = 0, :width_s = 60) and class for the "
    "frames captured in [:since, :until) — what the dashboard's in-memory rollup is made of.",
    "",
    variants={
        dialect: sql.replace("captured_at <= :until", "captured_at < :until")
        for dialect, sql in CLASS_COUNTS_BINNED.variants.items()
    },
    time_params=("since", "until"),
)

DIRTY_MINUTES = Query(
    "dirty_minutes",
    "Capture minutes (as in MINUTE_CLASS_COUNTS) of the frames stored or replaced since :since "
    "(processing time): the rollup's minutes to count again.",
    "",
    variants=_binned(
        """
    SELECT DISTINCT {bin} AS minute
    FROM frames
    WHERE processed_at >= :since
    """,
        "captured_at",
    ),
    time_params=("since",),
)

LAST_PROCESSED = Query(
    "last_processed",
    "The newest processing time of any frame (NULL on an empty database).",
    "SELECT MAX(processed_at) AS last_processed_at FROM frames",
    time_columns=("last_processed_at",),
)

# The detections page: boxes joined to their frames, filtered by the frames' capture time, car and camera
# and the boxes' class and score. The frame filters pick few frames out of many; each frame's boxes are
# then found through ix_detections_frame_id. SQLite's nested loops do that by themselves; on PostgreSQL a
# LATERAL subquery with OFFSET 0 (which the planner does not flatten) keeps it from hashing the whole
# detections table when its statistics lag behind a busy line.
_FILTERED_BOXES = {
    "postgresql": """frames AS f
    CROSS JOIN LATERAL (
        SELECT id, frame_id, class_id, class_name, score, x1, y1, x2, y2
        FROM detections AS d
        WHERE d.frame_id = f.id AND d.score >= :min_score AND {boxes}
        OFFSET 0
    ) AS d""",
    "sqlite": "frames AS f JOIN detections AS d ON d.frame_id = f.id AND d.score >= :min_score AND {boxes}",
}
_DETECTION_FILTERS = {
    "since": ("frames", "f.captured_at >= :since"),
    "until": ("frames", "f.captured_at <= :until"),
    "car_id": ("frames", "f.car_id = :car_id"),
    "camera": ("frames", "f.camera = :camera"),
    "class_name": ("boxes", "d.class_name = :class_name"),
}


def _filtered_boxes(name: str, description: str, template: str, **options: Any) -> Query:
    """A query over the filtered boxes: `template` with {source} = the dialect's FROM clause above."""
    return Query(
        name,
        description,
        "",
        variants={dialect: template.replace("{source}", source) for dialect, source in _FILTERED_BOXES.items()},
        filters=_DETECTION_FILTERS,
        time_params=("since", "until"),
        **options,
    )


_DETECTION_COLUMNS = """d.id, d.frame_id, f.car_id, f.camera, f.shot, f.captured_at,
           d.class_id, d.class_name, d.score, d.x1, d.y1, d.x2, d.y2"""

DETECTION_CLASS_COUNTS = _filtered_boxes(
    "detection_class_counts",
    "Boxes per class of the detections filter (:since, :until, :car_id, :camera, :class_name: each applied "
    "when given; score >= :min_score), most boxes first.",
    """
    SELECT d.class_id, d.class_name, COUNT(*) AS boxes
    FROM {source}
    WHERE {frames}
    GROUP BY d.class_id, d.class_name
    ORDER BY boxes DESC, d.class_id
    """,
    defaults={"min_score": 0.0},
)

DETECTION_PAGE = _filtered_boxes(
    "detection_page",
    "A page of the detections filter (as DETECTION_CLASS_COUNTS), newest capture first (:limit rows from "
    ":offset): walks ix_frames_captured_at backwards into each frame's boxes, stopping at the page.",
    f"""
    SELECT {_DETECTION_COLUMNS}
    FROM {{source}}
    WHERE {{frames}}
    ORDER BY f.captured_at DESC, d.id DESC
    LIMIT :limit OFFSET :offset
    """,
    time_columns=("captured_at",),
    defaults={"min_score": 0.0, "limit": 50, "offset": 0},
)

DETECTION_EXPORT = _filtered_boxes(
    "detection_export",
    "Every box of the detections filter (as DETECTION_CLASS_COUNTS) in id order: the CSV export.",
    f"""
    SELECT {_DETECTION_COLUMNS}
    FROM {{source}}
    WHERE {{frames}}
    ORDER BY d.id
    """,
    time_columns=("captured_at",),
    defaults={"min_score": 0.0},
)

DETECTIONS_PER_CLASS = Query(
    "detections_per_class",
    "Stored boxes per class with score >= :min_score: how many, in how many frames, score range.",
    """
    SELECT d.class_id,
           d.class_name,
           COUNT(*)                   AS boxes,
           COUNT(DISTINCT d.frame_id) AS frames,
           AVG(d.score)               AS mean_score,
           MIN(d.score)               AS min_score,
           MAX(d.score)               AS max_score
    FROM detections AS d
    WHERE d.score >= :min_score
    GROUP BY d.class_id, d.class_name
    ORDER BY boxes DESC, d.class_id
    """,
    defaults={"min_score": 0.0},
)

CAMERA_SHOT_COUNTS = Query(
    "camera_shot_counts",
    "Per camera × shot over all cars: frames, boxes, mean boxes per frame, error frames (pivot for a heatmap).",
    """
    SELECT camera,
           shot,
           COUNT(*)                                          AS frames,
           COALESCE(SUM(detection_count), 0)                 AS boxes,
           AVG(CAST(detection_count AS DOUBLE PRECISION))    AS mean_boxes,
           COUNT(error)                                      AS error_frames
    FROM frames
    GROUP BY camera, shot
    ORDER BY camera, shot
    """,
)

ERROR_FRAMES = Query(
    "error_frames",
    "Frames stored as errors (undecodable, wrong size, ...; also sent to the dead-letter topic), "
    "oldest first, with where they came from.",
    """
    SELECT f.car_id,
           f.camera,
           f.shot,
           f.error_kind,
           f.error,
           f.processed_at,
           f.kafka_topic,
           f.kafka_partition,
           f.kafka_offset,
           r.consumer_id
    FROM frames AS f
    JOIN runs AS r ON r.id = f.run_id
    WHERE f.error IS NOT NULL
    ORDER BY f.processed_at, f.car_id, f.camera, f.shot
    """,
    time_columns=("processed_at",),
)

LATEST_ERROR_FRAMES = Query(
    "latest_error_frames",
    "A page of error frames, newest first (:limit rows from :offset), with their frame id.",
    """
    SELECT f.id AS frame_id,
           f.car_id,
           f.camera,
           f.shot,
           f.error_kind,
           f.error,
           f.processed_at,
           f.kafka_topic,
           f.kafka_partition,
           f.kafka_offset
    FROM frames AS f
    WHERE f.error IS NOT NULL
    ORDER BY f.processed_at DESC, f.id DESC
    LIMIT :limit OFFSET :offset
    """,
    time_columns=("processed_at",),
    defaults={"limit": 50, "offset": 0},
)

REJECTED_MESSAGES = Query(
    "rejected_messages",
    "Kafka records too broken to name a frame (no usable car/camera/shot headers), newest first (:limit rows from :offset).",
    """
    SELECT received_at,
           kafka_topic,
           kafka_partition,
           kafka_offset,
           message_key,
           error_kind,
           error,
           run_id
    FROM rejected_messages
    ORDER BY received_at DESC, id DESC
    LIMIT :limit OFFSET :offset
    """,
    time_columns=("received_at",),
    defaults={"limit": 1000, "offset": 0},
)

ERRORS_BY_KIND = Query(
    "errors_by_kind",
    "Error counts by kind: error frames ('frame') and rejected messages ('rejected').",
    """
    SELECT 'frame' AS source, error_kind, COUNT(*) AS messages
    FROM frames
    WHERE error IS NOT NULL
    GROUP BY error_kind
    UNION ALL
    SELECT 'rejected' AS source, error_kind, COUNT(*) AS messages
    FROM rejected_messages
    GROUP BY error_kind
    ORDER BY source, messages DESC, error_kind
    """,
)

RUNS = Query(
    "runs",
    "One row per consumer process: model/backend/precision, frames it stored, mean latency, "
    "first and last frame it processed (throughput = frames / span, in pandas).",
    """
    SELECT r.id                AS run_id,
           r.started_at,
           r.host,
           r.consumer_id,
           r.model,
           r.backend,
           r.precision,
           r.config_hash,
           COUNT(f.id)         AS frames,
           AVG(f.latency_s)    AS mean_latency_s,
           MIN(f.processed_at) AS first_processed_at,
           MAX(f.processed_at) AS last_processed_at
    FROM runs AS r
    LEFT JOIN frames AS f ON f.run_id = r.id
    GROUP BY r.id, r.started_at, r.host, r.consumer_id, r.model, r.backend, r.precision, r.config_hash
    ORDER BY r.started_at, r.id
    """,
    time_columns=("started_at", "first_processed_at", "last_processed_at"),
)

ALL_QUERIES: tuple[Query, ...] = (
    CARS,
    LATEST_CARS,
    ONE_CAR,
    CAR_CHART,
    CAR_COUNT,
    FRAME_DEFECTS,
    CARS_SINCE,
    INCOMPLETE_CARS,
    TABLE_COUNTS,
    FRAMES_PROCESSED_SINCE,
    PARKED_SINCE,
    LATEST_CAPTURE,
    CHANGE_MARK,
    CAR_FRAMES,
    FRAME,
    FRAME_DETECTIONS,
    FRAME_LATENCY,
    CAPTURE_SPAN,
    FRAME_LATENCY_BINNED,
    CLASS_COUNTS_BINNED,
    MINUTE_CLASS_COUNTS,
    DIRTY_MINUTES,
    LAST_PROCESSED,
    DETECTION_CLASS_COUNTS,
    DETECTION_PAGE,
    DETECTION_EXPORT,
    DETECTIONS_PER_CLASS,
    CAMERA_SHOT_COUNTS,
    ERROR_FRAMES,
    LATEST_ERROR_FRAMES,
    REJECTED_MESSAGES,
    ERRORS_BY_KIND,
    RUNS,
)


def db_url(environ: Mapping[str, str] | None = None, config: str | Path | None = None) -> str:
    """The results database to analyse: the settings' store.url (INSPECTION__STORE__URL, or `config`'s; default
    the demo's SQLite file)."""
    return load_settings(config, environ=None if environ is None else dict(environ)).store.url


def engine_from_env(environ: Mapping[str, str] | None = None, config: str | Path | None = None) -> Engine:
    return create_engine_for(db_url(environ, config))


def execute(conn: Connection, query: Query, **params: Any) -> CursorResult[Any]:
    """Execute `query` (bind parameters: its defaults, overridden by `params`)."""
    values = query.params(**params)
    return conn.execute(query.statement(conn.dialect.name, values), values)


def run(conn: Connection, query: Query, **params: Any) -> list[Any]:
    """Execute `query` (as `execute`); all rows."""
    return list(execute(conn, query, **params).all())


def read_df(engine: Engine, query: Query, **params: Any) -> pd.DataFrame:
    """`query` as a DataFrame, time columns as UTC datetimes, boolean columns as pandas booleans."""
    pd = require("pandas", "analysis", "a DataFrame of the results")

    with engine.connect() as conn:
        result = execute(conn, query, **params)
        columns = list(result.keys())
        df = pd.DataFrame([tuple(r) for r in result.all()], columns=columns)
    for column in query.time_columns:
        df[column] = pd.to_datetime(df[column], utc=True)
    for column in query.bool_columns:
        df[column] = df[column].map(lambda v: pd.NA if v is None or pd.isna(v) else bool(v)).astype("boolean")
    return df
