"""Line health: throughput, parked records, the charts' time bins, what changed, per-run and per-table counts."""

from __future__ import annotations

from .query import Query, binned

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
    variants=binned(
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
        "postgresql": binned(
            """
    SELECT f.bin, d.class_id, d.class_name, COUNT(*) AS boxes
    FROM (SELECT id, {bin} AS bin FROM frames WHERE captured_at >= :since AND captured_at <= :until) AS f
    CROSS JOIN LATERAL (SELECT class_id, class_name FROM detections WHERE frame_id = f.id OFFSET 0) AS d
    GROUP BY f.bin, d.class_id, d.class_name
    """,
            "captured_at",
        )["postgresql"],
        "sqlite": binned(
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
    variants=binned(
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
