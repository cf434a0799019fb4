"""The reviewed set: each reviewed frame's latest review as arrays (what export and eval read).

Per frame: the stored detections with the reviewer's decision (1 confirm, 0 reject), and the boxes
drawn as missed. Read in batches of frames, so memory stays flat however many frames were reviewed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from ..analytics import queries

BATCH_FRAMES = 500


@dataclass(frozen=True)
class ReviewedFrame:
    """One frame's latest review. Box arrays are xyxy float32 (N,4), frame pixels."""

    frame_id: int
    car_id: str
    camera: int
    shot: int
    width: int
    height: int
    image_uri: str | None
    image_dir: str | None
    model: str
    reviewer: str
    reviewed_at: datetime
    score_threshold: float
    verdict_seen: str | None
    det_xyxy: np.ndarray
    det_score: np.ndarray
    det_class: np.ndarray  # class ids (int32)
    det_confirmed: np.ndarray  # bool: True confirmed, False rejected
    det_names: tuple[str, ...]  # class name per detection
    missed_xyxy: np.ndarray
    missed_class: np.ndarray
    missed_names: tuple[str, ...]

    @property
    def label_xyxy(self) -> np.ndarray:
        """The corrected boxes: confirmed detections, then the drawn ones."""
        return np.concatenate([self.det_xyxy[self.det_confirmed], self.missed_xyxy])

    @property
    def label_class(self) -> np.ndarray:
        return np.concatenate([self.det_class[self.det_confirmed], self.missed_class])

    @property
    def label_names(self) -> tuple[str, ...]:
        kept = tuple(n for n, ok in zip(self.det_names, self.det_confirmed, strict=True) if ok)
        return kept + self.missed_names


def _boxes(rows: list, *, with_score: bool) -> tuple[np.ndarray, ...]:
    if not rows:
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
        return empty
    xyxy = np.array([(r.x1, r.y1, r.x2, r.y2) for r in rows], np.float32)
    score = np.array([r.score for r in rows], np.float32) if with_score else np.zeros(len(rows), np.float32)
    return xyxy, score, np.array([r.class_id for r in rows], np.int32)


def reviewed_frames(
    conn: Connection, *, since: datetime | None = None, default_size: tuple[int, int] = (2700, 2100)
) -> Iterator[ReviewedFrame]:
    """Every reviewed frame (its latest review), oldest review first; reviews at or after `since` only."""
    heads = queries.run(conn, queries.REVIEWED_HEADS, since=since)
    for start in range(0, len(heads), BATCH_FRAMES):
        batch = heads[start : start + BATCH_FRAMES]
        ids = [h.review_id for h in batch]
        decisions: dict[int, list] = {i: [] for i in ids}
        for row in queries.run(conn, queries.REVIEWED_DECISIONS, review_ids=ids):
            decisions[row.review_id].append(row)
        drawn: dict[int, list] = {i: [] for i in ids}
        for row in queries.run(conn, queries.REVIEWED_DRAWN_BOXES, review_ids=ids):
            drawn[row.review_id].append(row)
        for h in batch:
            dets, missed = decisions[h.review_id], drawn[h.review_id]
            det_xyxy, det_score, det_class = _boxes(dets, with_score=True)
            missed_xyxy, _, missed_class = _boxes(missed, with_score=False)
            yield ReviewedFrame(
                frame_id=h.frame_id,
                car_id=h.car_id,
                camera=h.camera,
                shot=h.shot,
                width=h.width or default_size[0],
                height=h.height or default_size[1],
                image_uri=h.image_uri,
                image_dir=h.image_dir,
                model=h.model,
                reviewer=h.reviewer,
                reviewed_at=h.reviewed_at,
                score_threshold=h.score_threshold,
                verdict_seen=h.verdict_seen,
                det_xyxy=det_xyxy,
                det_score=det_score,
                det_class=det_class,
                det_confirmed=np.array([d.decision == "confirm" for d in dets], bool),
                det_names=tuple(d.class_name for d in dets),
                missed_xyxy=missed_xyxy,
                missed_class=missed_class,
                missed_names=tuple(b.class_name for b in missed),
            )
