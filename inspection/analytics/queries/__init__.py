"""The read layer's SQL: every statement the dashboard, the edge's gauges, the notebooks and scripts run,
one module per page (cars, frames, line health, detections, problems, review); `query.Query` is the statement type.

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

from .cars import (
    CAR_CHART,
    CAR_COUNT,
    CAR_FRAMES,
    CARS,
    CARS_SINCE,
    INCOMPLETE_CARS,
    LATEST_CARS,
    ONE_CAR,
)
from .detections import (
    CAMERA_SHOT_COUNTS,
    DETECTION_CLASS_COUNTS,
    DETECTION_EXPORT,
    DETECTION_PAGE,
    DETECTIONS_PER_CLASS,
)
from .frames import FRAME, FRAME_DEFECTS, FRAME_DETECTIONS
from .line import (
    CAPTURE_SPAN,
    CHANGE_MARK,
    CLASS_COUNTS_BINNED,
    DIRTY_MINUTES,
    FRAME_LATENCY,
    FRAME_LATENCY_BINNED,
    FRAMES_PROCESSED_SINCE,
    LAST_PROCESSED,
    LATEST_CAPTURE,
    MINUTE_CLASS_COUNTS,
    PARKED_SINCE,
    RUNS,
    TABLE_COUNTS,
)
from .problems import ERROR_FRAMES, ERRORS_BY_KIND, LATEST_ERROR_FRAMES, REJECTED_MESSAGES
from .query import VERDICT_SQL as VERDICT_SQL  # the helpers, re-exported: `queries.read_df(engine, queries.CARS)`
from .query import Query as Query
from .query import db_url as db_url
from .query import engine_from_env as engine_from_env
from .query import execute as execute
from .query import read_df as read_df
from .query import run as run
from .review import (
    CAR_VERDICTS,
    FRAME_CAPTURED_AT,
    KEPT_DEFECT_BOXES,
    LAST_REVIEW,
    NG_CARS,
    OK_CARS,
    QUEUE_NEAR,
    QUEUE_NG,
    QUEUE_OK_SAMPLE,
    REVIEW_DECISIONS,
    REVIEW_DRAWN_BOXES,
    REVIEW_FRAME,
    REVIEW_FRAME_BOXES,
    REVIEWED_DECISIONS,
    REVIEWED_DRAWN_BOXES,
    REVIEWED_HEADS,
    SHADOW_BOXES,
    SHADOW_MODELS,
    SHADOW_VERDICT_CHANGES,
)
from .review import sample_key as sample_key  # the OK sample's order of a frame, as the queue's SQL computes it

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
    CAR_VERDICTS,
    REVIEW_FRAME,
    REVIEW_FRAME_BOXES,
    LAST_REVIEW,
    REVIEW_DECISIONS,
    REVIEW_DRAWN_BOXES,
    FRAME_CAPTURED_AT,
    NG_CARS,
    OK_CARS,
    QUEUE_NG,
    QUEUE_NEAR,
    QUEUE_OK_SAMPLE,
    REVIEWED_HEADS,
    REVIEWED_DECISIONS,
    REVIEWED_DRAWN_BOXES,
    KEPT_DEFECT_BOXES,
    SHADOW_MODELS,
    SHADOW_BOXES,
    SHADOW_VERDICT_CHANGES,
)
