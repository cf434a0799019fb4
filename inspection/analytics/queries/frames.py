"""The frame viewer: one frame, its boxes, what the inspection rules made of them."""

from __future__ import annotations

from .query import Query

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
