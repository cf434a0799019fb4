"""The detections page (the filtered boxes, their counts per class, the CSV export) and the analysts' box statistics."""

from __future__ import annotations

from typing import Any

from .query import Query

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
