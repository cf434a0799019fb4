"""The problems page: error frames and rejected messages (everything sent to the dead-letter topic)."""

from __future__ import annotations

from .query import Query

_ERROR_FRAME_COLUMNS = """f.car_id, f.camera, f.shot, f.error_kind, f.error, f.processed_at,
           f.kafka_topic, f.kafka_partition, f.kafka_offset"""

ERROR_FRAMES = Query(
    "error_frames",
    "Frames stored as errors (undecodable, wrong size, ...; also sent to the dead-letter topic), "
    "oldest first, with where they came from.",
    f"""
    SELECT {_ERROR_FRAME_COLUMNS}, r.consumer_id
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
    f"""
    SELECT f.id AS frame_id, {_ERROR_FRAME_COLUMNS}
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
