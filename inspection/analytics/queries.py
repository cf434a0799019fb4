"""The SQL behind notebooks/results_analysis.ipynb: plain queries against the results database.

Every query runs unchanged on SQLite and PostgreSQL (tests/unit/test_deploy_files.py runs them
on a freshly migrated database of each). Portable on purpose:
- no date arithmetic in SQL: durations are the stored float seconds (`frames.latency_s`,
  `cars.lateness_s`); other differences of timestamps are taken in pandas;
- averages of integer columns are cast to DOUBLE PRECISION (PostgreSQL would return NUMERIC);
- timestamps come back as UTC text on SQLite and as `timestamptz` on PostgreSQL: `read_df`
  parses the columns a query lists in `time_columns` into UTC pandas datetimes;
- booleans come back as 0/1 on SQLite: `read_df` turns `bool_columns` into pandas booleans.

Tables (inspection/store/models.py): runs (one consumer process), cars (one per car; completion
and deadline verdict), frames (one per car × camera × shot: latency, detection_count, or an
error), detections (boxes in frame pixels), rejected_messages (Kafka records naming no frame).

Use from a notebook or a shell:
    >>> import queries
    >>> engine = queries.engine_from_env()          # $INSPECTION_DB, default sqlite:///inspection.db
    >>> cars = queries.read_df(engine, queries.CARS)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from sqlalchemy import Connection, Engine, create_engine, text

if TYPE_CHECKING:  # pandas is the analyst's dependency, not the package's
    import pandas as pd

DB_ENV = "INSPECTION_DB"
DEFAULT_DB_URL = "sqlite:///inspection.db"


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    sql: str
    time_columns: tuple[str, ...] = ()
    bool_columns: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # values of the :bind parameters


CARS = Query(
    "cars",
    "One row per car: frames done of expected, completion, deadline verdict (met / missed / "
    "incomplete), lateness (completed_at - deadline_at, s; negative = early), and per-car "
    "aggregates of its frames.",
    """
    SELECT c.car_id,
           c.frames_expected,
           c.frames_done,
           c.first_captured_at,
           c.deadline_at,
           c.completed_at,
           c.deadline_met,
           c.lateness_s,
           CASE WHEN c.completed_at IS NULL THEN 'incomplete'
                WHEN c.deadline_met THEN 'met'
                ELSE 'missed' END                 AS status,
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
    time_columns=("first_captured_at", "deadline_at", "completed_at", "last_processed_at"),
    bool_columns=("deadline_met",),
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
    "Per camera × shot over all cars: frames, boxes, mean boxes per frame, error frames "
    "(pivot for a heatmap).",
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

REJECTED_MESSAGES = Query(
    "rejected_messages",
    "Kafka records too broken to name a frame (no usable car/camera/shot headers), newest first.",
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
    """,
    time_columns=("received_at",),
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
    FRAME_LATENCY,
    DETECTIONS_PER_CLASS,
    CAMERA_SHOT_COUNTS,
    ERROR_FRAMES,
    REJECTED_MESSAGES,
    ERRORS_BY_KIND,
    RUNS,
)


def db_url(environ: Mapping[str, str] | None = None) -> str:
    """The results database to analyse: $INSPECTION_DB, else the demo's SQLite file."""
    return (os.environ if environ is None else environ).get(DB_ENV) or DEFAULT_DB_URL


def engine_from_env(environ: Mapping[str, str] | None = None) -> Engine:
    return create_engine(db_url(environ))


def run(conn: Connection, query: Query, **params: Any) -> list[Any]:
    """Execute `query` (bind parameters: its defaults, overridden by `params`); all rows."""
    return list(conn.execute(text(query.sql), {**query.defaults, **params}).all())


def read_df(engine: Engine, query: Query, **params: Any) -> "pd.DataFrame":
    """`query` as a DataFrame, time columns as UTC datetimes, boolean columns as pandas booleans."""
    import pandas as pd

    with engine.connect() as conn:
        df = pd.read_sql_query(text(query.sql), conn, params={**query.defaults, **params})
    for column in query.time_columns:
        df[column] = pd.to_datetime(df[column], utc=True, format="ISO8601")
    for column in query.bool_columns:
        df[column] = df[column].map(lambda v: pd.NA if v is None or pd.isna(v) else bool(v)).astype("boolean")
    return df
