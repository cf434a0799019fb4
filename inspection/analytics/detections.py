"""The detections page's reads: the filtered boxes, their counts per class, the CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy import Engine

from . import queries as q
from .models import ClassCount, DetectionFilter, DetectionsPage, DetectionTable
from .rollup import MinuteClassRollup, is_minute_aligned, minute_of

CSV_COLUMNS = (
    "detection_id",
    "frame_id",
    "car_id",
    "camera",
    "shot",
    "captured_at",
    "class_id",
    "class_name",
    "score",
    "x1",
    "y1",
    "x2",
    "y2",
)


class DetectionReads:
    """A part of `AnalyticsReader` (which sets `engine` and `rollup`)."""

    engine: Engine
    rollup: MinuteClassRollup

    def class_counts(self, f: DetectionFilter) -> list[ClassCount]:
        if (
            f.since is not None
            and is_minute_aligned(f.since)
            and f.until is None
            and f.min_score <= 0
            and f.car_id is None
            and f.camera is None
        ):
            # every box of whole capture minutes: the rollup has them
            with self.engine.connect() as conn:
                minutes = self.rollup.minutes(conn, minute_of(f.since))
            totals: dict[tuple[int, str], int] = {}
            for per_class in minutes.values():
                for key, boxes in per_class.items():
                    if f.class_name is None or key[1] == f.class_name:
                        totals[key] = totals.get(key, 0) + boxes
            return [
                ClassCount(class_id=k[0], class_name=k[1], boxes=n)
                for k, n in sorted(totals.items(), key=lambda item: (-item[1], item[0][0]))
            ]
        with self.engine.connect() as conn:
            rows = q.run(conn, q.DETECTION_CLASS_COUNTS, **f.model_dump())
        return [ClassCount(class_id=r.class_id, class_name=r.class_name, boxes=r.boxes) for r in rows]

    def detections(self, f: DetectionFilter, page: int = 1, per_page: int = 50) -> DetectionsPage:
        counts = self.class_counts(f)
        with self.engine.connect() as conn:
            rows = q.run(conn, q.DETECTION_PAGE, **f.model_dump(), limit=per_page + 1, offset=(page - 1) * per_page)
        has_next = len(rows) > per_page
        rows = rows[:per_page]
        table = DetectionTable(
            id=[r.id for r in rows],
            frame_id=[r.frame_id for r in rows],
            car_id=[r.car_id for r in rows],
            camera=[r.camera for r in rows],
            shot=[r.shot for r in rows],
            captured_at=[r.captured_at for r in rows],
            class_name=[r.class_name for r in rows],
            score=[r.score for r in rows],
            xyxy=[(r.x1, r.y1, r.x2, r.y2) for r in rows],
        )
        return DetectionsPage(
            filter=f,
            counts=counts,
            total=sum(c.boxes for c in counts),
            rows=table,
            page=page,
            per_page=per_page,
            has_next=has_next,
        )

    def detections_csv(self, f: DetectionFilter, *, batch_rows: int = 5000) -> Iterator[str]:
        """The filtered detections as CSV text chunks (header first), streamed from a server-side
        cursor `batch_rows` at a time: memory stays bounded whatever the row count."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        yield buffer.getvalue()
        with self.engine.connect() as conn:
            streaming = conn.execution_options(stream_results=True, yield_per=batch_rows)
            for partition in q.execute(streaming, q.DETECTION_EXPORT, **f.model_dump()).partitions():
                buffer.seek(0)
                buffer.truncate()
                writer.writerows(
                    (
                        r.id,
                        r.frame_id,
                        r.car_id,
                        r.camera,
                        r.shot,
                        r.captured_at.isoformat(),
                        r.class_id,
                        r.class_name,
                        f"{r.score:.4f}",
                        f"{r.x1:.1f}",
                        f"{r.y1:.1f}",
                        f"{r.x2:.1f}",
                        f"{r.y2:.1f}",
                    )
                    for r in partition
                )
                yield buffer.getvalue()
