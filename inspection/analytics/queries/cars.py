"""The line page's and the car page's cars: one row per car with its frames' aggregates, its state, the
inspection verdict; counts by state; a car's frames."""

from __future__ import annotations

from .query import VERDICT_SQL, Query

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


def _cars_with_frames(frames_of: str, rest: str) -> str:
    """Cars `c` with their state, verdict and the aggregates of their frames `f` (only frames WHERE
    `frames_of`, the cars' own filter: a page or one car needs no aggregate over every frame); `rest`
    follows the FROM clause (joins, WHERE, ORDER BY)."""
    return f"""
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
        WHERE {frames_of}
        GROUP BY car_id
    ) AS f ON f.car_id = c.car_id
    {rest}
    """


CARS = Query(
    "cars",
    "One row per car, oldest first: frames done of expected, completion, verdict (met / missed / "
    "overdue / in_flight at :now), lateness (completed_at - deadline_at, s; negative = early), "
    "and per-car aggregates of its frames (frames stored, error rows included; boxes; latency).",
    _cars_with_frames("1 = 1", "ORDER BY c.first_captured_at, c.car_id"),
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
    "verdict is :verdict unless it is NULL, with the columns of CARS.",
    _cars_with_frames(
        f"car_id IN ({_PAGE_OF_CARS})",
        f"""LEFT JOIN car_verdicts AS v ON v.car_id = c.car_id
    WHERE c.car_id IN ({_PAGE_OF_CARS})
    ORDER BY {_NG_FIRST}, c.first_captured_at DESC, c.car_id DESC""",
    ),
    time_columns=_CAR_TIMES,
    bool_columns=("deadline_met",),
    defaults={"limit": 25, "offset": 0, "verdict": None},
    time_params=("overdue_before",),
)

ONE_CAR = Query(
    "one_car",
    "One car (:car_id) with the columns of CARS.",
    _cars_with_frames("car_id = :car_id", "WHERE c.car_id = :car_id"),
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
