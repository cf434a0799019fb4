"""The review loop's reads (inspection/review/): the frame under review and its last review, the review
queue's buckets and `next_frame`'s keyset, the reviewed set (export, eval) and the shadow comparison.

The reads of a write transaction stay SQLAlchemy Core beside their write (review/store.py `submit_review`,
review/shadow.py's `ShadowStore`). Lists (car ids, frame ids, review ids) are expanding parameters
(`list_params`): `IN :car_ids` becomes one bound parameter per value.
"""

from __future__ import annotations

from .query import Query

# Knuth's multiplicative hash: a stable pseudo-random order of frame ids that SQLite and PostgreSQL compute
# alike (the OK sample is the same on every page load, so "next" is well defined); `sample_key` is the same in
# Python. `:sample_seed` picks the order (review.sample_seed).
SAMPLE_HASH_MUL = 2654435761
SAMPLE_HASH_MOD = 4294967291
_SAMPLE_ORDER = f"(f.id * ({SAMPLE_HASH_MUL} * :sample_seed)) % {SAMPLE_HASH_MOD}"


def sample_key(frame_id: int, sample_seed: int) -> int:
    """The OK sample's order of one frame, as the SQL computes it."""
    return (frame_id * SAMPLE_HASH_MUL * sample_seed) % SAMPLE_HASH_MOD


CAR_VERDICTS = Query(
    "car_verdicts",
    "The verdict (ok / ng / incomplete / error) and rules hash of those of the cars :car_ids that have one.",
    """
    SELECT car_id, verdict, rules_hash
    FROM car_verdicts
    WHERE car_id IN :car_ids
    """,
    list_params=("car_ids",),
)

REVIEW_FRAME = Query(
    "review_frame",
    "Frame :frame_id as the review page shows it: its place, size, error and the model that saw it.",
    """
    SELECT f.id, f.car_id, f.camera, f.shot, f.width, f.height, f.error, r.model
    FROM frames AS f
    JOIN runs AS r ON r.id = f.run_id
    WHERE f.id = :frame_id
    """,
)

REVIEW_FRAME_BOXES = Query(
    "review_frame_boxes",
    "The stored boxes of frame :frame_id with their ids (what a review decides), highest score first.",
    """
    SELECT id, class_id, class_name, score, x1, y1, x2, y2
    FROM detections
    WHERE frame_id = :frame_id
    ORDER BY score DESC, id
    """,
)

LAST_REVIEW = Query(
    "last_review",
    "The latest review of frame :frame_id (the highest review id): who, when, the note; no row when none.",
    """
    SELECT id, reviewer, reviewed_at, note
    FROM reviews
    WHERE id = (SELECT MAX(id) FROM reviews WHERE frame_id = :frame_id)
    """,
    time_columns=("reviewed_at",),
)

REVIEW_DECISIONS = Query(
    "review_decisions",
    "Review :review_id's decision (confirm / reject) and reason code per stored detection.",
    """
    SELECT detection_id, decision, reason_code
    FROM review_decisions
    WHERE review_id = :review_id
    """,
)

REVIEW_DRAWN_BOXES = Query(
    "review_drawn_boxes",
    "The boxes review :review_id drew as missed, in drawing order.",
    """
    SELECT class_name, reason_code, x1, y1, x2, y2
    FROM review_boxes
    WHERE review_id = :review_id
    ORDER BY id
    """,
)

FRAME_CAPTURED_AT = Query(
    "frame_captured_at",
    "When frame :frame_id was captured (`next_frame`'s place in a bucket's order); no row when no such frame.",
    "SELECT captured_at FROM frames WHERE id = :frame_id",
    time_columns=("captured_at",),
)

NG_CARS = Query(
    "ng_cars",
    "The newest :limit cars with an NG verdict (the review queue's NG bucket).",
    """
    SELECT car_id
    FROM car_verdicts
    WHERE verdict = 'ng'
    ORDER BY decided_at DESC
    LIMIT :limit
    """,
    defaults={"limit": 1000},
)

OK_CARS = Query(
    "ok_cars",
    "Every car with an OK verdict (the review queue samples its OK bucket's cars from these).",
    "SELECT car_id FROM car_verdicts WHERE verdict = 'ok'",
)

# The review queue: unreviewed frames (no error, no review: an anti-join on `reviews`, and not :exclude) of
# one bucket in the bucket's order, :limit of them; with :after_captured_at / :after_key, only the frames after
# frame :exclude in that order (`next_frame`'s keyset: the `<=` / `>=` alone bounds the order's index range,
# the OR then drops the frame's equals up to it).
_QUEUE = """
    SELECT f.id, f.car_id, f.camera, f.shot, f.detection_count
    FROM frames AS f
    WHERE f.error IS NULL
      AND NOT EXISTS (SELECT 1 FROM reviews AS r WHERE r.frame_id = f.id)
      AND f.id <> :exclude
      AND ({bucket})
      AND {{after}}
    ORDER BY {order}
    LIMIT :limit
    """
_NEWEST_FIRST = "f.captured_at DESC, f.id"
_AFTER_CAPTURED = {
    "after_captured_at": (
        "after",
        "f.captured_at <= :after_captured_at AND (f.captured_at < :after_captured_at OR f.id > :exclude)",
    )
}
_QUEUE_DEFAULTS = {"exclude": -1, "limit": 50}

QUEUE_NG = Query(
    "queue_ng",
    "The review queue's NG bucket: unreviewed frames of the cars :car_ids (the newest NG cars), newest capture "
    "first; after frame :exclude (captured :after_captured_at) when that is given.",
    _QUEUE.format(bucket="f.car_id IN :car_ids", order=_NEWEST_FIRST),
    list_params=("car_ids",),
    time_params=("after_captured_at",),
    filters=_AFTER_CAPTURED,
    defaults=_QUEUE_DEFAULTS,
)

QUEUE_NEAR = Query(
    "queue_near",
    "The review queue's near bucket: unreviewed frames with a box scored below :near_below (threshold + near "
    "band), newest capture first; after frame :exclude (captured :after_captured_at) when that is given.",
    _QUEUE.format(
        bucket="EXISTS (SELECT 1 FROM detections AS d WHERE d.frame_id = f.id AND d.score < :near_below)",
        order=_NEWEST_FIRST,
    ),
    time_params=("after_captured_at",),
    filters=_AFTER_CAPTURED,
    defaults=_QUEUE_DEFAULTS,
)

QUEUE_OK_SAMPLE = Query(
    "queue_ok_sample",
    "The review queue's OK sample: unreviewed frames of the sampled OK cars :car_ids in the stable pseudo-random "
    "order of :sample_seed (then id); after frame :exclude (order key :after_key, `sample_key`) when that is given.",
    _QUEUE.format(bucket="f.car_id IN :car_ids", order=f"{_SAMPLE_ORDER}, f.id"),
    list_params=("car_ids",),
    filters={
        "after_key": (
            "after",
            f"{_SAMPLE_ORDER} >= :after_key AND ({_SAMPLE_ORDER} > :after_key OR f.id > :exclude)",
        )
    },
    defaults={**_QUEUE_DEFAULTS, "sample_seed": 1},
)

REVIEWED_HEADS = Query(
    "reviewed_heads",
    "Every reviewed frame's latest review with the frame's place, size and image, oldest review first; reviews "
    "at or after :since only, when given.",
    """
    SELECT r.id AS review_id, r.frame_id, r.car_id, r.reviewer, r.reviewed_at,
           r.model, r.score_threshold, r.verdict_seen,
           f.camera, f.shot, f.width, f.height, f.image_uri, u.image_dir
    FROM reviews AS r
    JOIN (SELECT MAX(id) AS id FROM reviews GROUP BY frame_id) AS latest ON latest.id = r.id
    JOIN frames AS f ON f.id = r.frame_id
    JOIN runs AS u ON u.id = f.run_id
    WHERE {reviews}
    ORDER BY r.reviewed_at, r.id
    """,
    time_columns=("reviewed_at",),
    time_params=("since",),
    filters={"since": ("reviews", "r.reviewed_at >= :since")},
)

REVIEWED_DECISIONS = Query(
    "reviewed_decisions",
    "The decided detections of the reviews :review_ids (the box as stored, with the decision), in id order.",
    """
    SELECT review_id, detection_id, decision, reason_code, class_id, class_name, score, x1, y1, x2, y2
    FROM review_decisions
    WHERE review_id IN :review_ids
    ORDER BY id
    """,
    list_params=("review_ids",),
)

REVIEWED_DRAWN_BOXES = Query(
    "reviewed_drawn_boxes",
    "The boxes drawn as missed in the reviews :review_ids, in id order.",
    """
    SELECT review_id, class_id, class_name, reason_code, x1, y1, x2, y2
    FROM review_boxes
    WHERE review_id IN :review_ids
    ORDER BY id
    """,
    list_params=("review_ids",),
)

KEPT_DEFECT_BOXES = Query(
    "kept_defect_boxes",
    "The boxes of the frames :frame_ids that the inspection rules kept as defects (class and xyxy).",
    """
    SELECT frame_id, class_id, x1, y1, x2, y2
    FROM frame_defects
    WHERE frame_id IN :frame_ids AND kept = :kept
    """,
    list_params=("frame_ids",),
    defaults={"kept": True},
)

SHADOW_MODELS = Query(
    "shadow_models",
    "The candidate models the shadow consumer stored results of, by name.",
    "SELECT DISTINCT model FROM shadow_frames ORDER BY model",
)

SHADOW_BOXES = Query(
    "shadow_boxes",
    "Candidate :model's frames of the cars :car_ids with their boxes (a frame without boxes: one row of NULLs).",
    """
    SELECT sf.car_id, sf.camera, sf.shot, sf.error, sd.class_id, sd.score, sd.x1, sd.y1, sd.x2, sd.y2
    FROM shadow_frames AS sf
    LEFT JOIN shadow_detections AS sd ON sd.shadow_frame_id = sf.id
    WHERE sf.model = :model AND sf.car_id IN :car_ids
    """,
    list_params=("car_ids",),
)

SHADOW_VERDICT_CHANGES = Query(
    "shadow_verdict_changes",
    "Candidate :model's verdict beside the deployed one, per car both decided, by car id.",
    """
    SELECT sv.car_id, sv.verdict, cv.verdict AS deployed
    FROM shadow_verdicts AS sv
    JOIN car_verdicts AS cv ON cv.car_id = sv.car_id
    WHERE sv.model = :model
    ORDER BY sv.car_id
    """,
)
