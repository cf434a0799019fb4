"""`AnalyticsReader`: typed answers to the analysts' and the line's questions, from queries.py.

Every statement is a named query of `queries` (the detection filters choose among its optional
conditions). The reader only reads; the dashboard gives it a read-only engine (`open_readonly_engine`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import Engine

from . import queries as q
from .models import (
    CarDetail,
    CarLatencySeries,
    CarRow,
    CarsPage,
    CarStates,
    ChangeMark,
    ClassCount,
    ClassSeries,
    DetectionFilter,
    DetectionsPage,
    DetectionTable,
    ErrorFrame,
    FrameBoxes,
    FrameCell,
    FrameDefects,
    FrameDetail,
    Headline,
    LatencySeries,
    LineCharts,
    Problems,
    Rejected,
    TableCounts,
    TimeBins,
)
from .rollup import MINUTE, MinuteClassRollup, is_minute_aligned, minute_of

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
CHART_BINS = 40
_NICE_BIN_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


class NotFoundError(LookupError):
    """No car / frame with that id (the message names it)."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AnalyticsReader:
    """Read API of the results database. `cameras` lays out a car's frame grid (config line.cameras)."""

    def __init__(
        self,
        engine: Engine,
        *,
        cameras: int = 5,
        clock: Callable[[], datetime] = _utc_now,
        rollup: MinuteClassRollup | None = None,
    ) -> None:
        self.engine = engine
        self.cameras = cameras
        self.clock = clock
        self.rollup = rollup if rollup is not None else MinuteClassRollup()

    # ----------------------------------------------------------------- helpers

    def _rows(self, query: q.Query, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return q.run(conn, query, **params)

    @staticmethod
    def _car(row: Any) -> CarRow:
        end = row.completed_at or row.last_processed_at
        return CarRow(
            car_id=row.car_id,
            verdict=row.status,
            inspection=row.inspection,
            inspection_reason=row.inspection_reason,
            first_captured_at=row.first_captured_at,
            deadline_at=row.deadline_at,
            completed_at=row.completed_at,
            frames_expected=row.frames_expected,
            frames_stored=int(row.frames_stored),
            errors=int(row.error_frames),
            detections=int(row.boxes),
            deadline_s=(row.deadline_at - row.first_captured_at).total_seconds(),
            car_latency_s=None if end is None else (end - row.first_captured_at).total_seconds(),
            lateness_s=row.lateness_s,
            mean_frame_latency_s=None if row.mean_latency_s is None else float(row.mean_latency_s),
            max_frame_latency_s=None if row.max_latency_s is None else float(row.max_latency_s),
            deadline_met=row.deadline_met,
            overdue_at=row.overdue_at,
            missing_frames=row.missing_frames,
        )

    # ----------------------------------------------------------------- line

    def cars(self, page: int = 1, per_page: int = 25, verdict: str | None = None) -> CarsPage:
        """NG cars first, then newest first, one page; only cars with inspection verdict `verdict` when given."""
        with self.engine.connect() as conn:
            page_of = {"limit": per_page, "offset": (page - 1) * per_page, "verdict": verdict}
            rows = q.run(conn, q.LATEST_CARS, **page_of, now=self.clock())
            total = q.run(conn, q.CAR_COUNT, verdict=verdict)[0].cars
        return CarsPage(items=[self._car(r) for r in rows], page=page, per_page=per_page, total=int(total))

    def headline(self, window_s: float = 60.0) -> Headline:
        now = self.clock()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self.engine.connect() as conn:
            by_verdict = {r.status: int(r.cars) for r in q.run(conn, q.CARS_SINCE, since=day_start, now=now)}
            recent = q.run(conn, q.FRAMES_PROCESSED_SINCE, since=now - timedelta(seconds=window_s))[0]
            parked = q.run(conn, q.PARKED_SINCE, since=day_start)[0]
            last = q.run(conn, q.CHANGE_MARK)[0].last_processed_at
        met, missed, overdue = by_verdict.get("met", 0), by_verdict.get("missed", 0), by_verdict.get("overdue", 0)
        judged = met + missed + overdue
        return Headline(
            day_start=day_start,
            now=now,
            cars_today=sum(by_verdict.values()),
            completed_today=met + missed,
            missed_today=missed,
            overdue_today=overdue,
            miss_rate_today=(missed + overdue) / judged if judged else None,
            frames_per_s=int(recent.frames) / window_s,
            window_s=window_s,
            parked_frames_today=int(parked.error_frames),
            rejected_today=int(parked.rejected),
            last_processed_at=last,
        )

    def latest_capture(self) -> datetime | None:
        """The newest capture time of any frame (None: no frame yet)."""
        return self._rows(q.LATEST_CAPTURE)[0].last_captured_at

    def change_mark(self) -> ChangeMark:
        row = self._rows(q.CHANGE_MARK)[0]
        stamp = row.last_processed_at.isoformat() if row.last_processed_at else "-"
        return ChangeMark(mark=f"{stamp}|{row.last_rejected_id or 0}|{row.cars}")

    def charts(self, window_s: float = 1800.0, cars: int = 100) -> LineCharts:
        """Car latency vs deadline for the newest `cars`; detections per class and frame latency
        p50/p99 in time bins over the last `window_s` seconds of captures (ending at the newest)."""
        with self.engine.connect() as conn:
            car_rows = q.run(conn, q.CAR_CHART, limit=cars, now=self.clock())
            until = q.run(conn, q.LATEST_CAPTURE)[0].last_captured_at
            bins = TimeBins(start=None, width_s=60.0, count=0)
            latency_rows: list[Any] = []
            class_rows: list[Any] = []
            if until is not None:
                since = until - timedelta(seconds=window_s)
                span = q.run(conn, q.CAPTURE_SPAN, since=since, until=until)[0]
                bins = _time_bins(span.first_captured_at, span.last_captured_at)
                assert bins.start is not None
                binning = {"since": bins.start, "until": until, "start_s": bins.start.timestamp(), "width_s": bins.width_s}
                latency_rows = q.run(conn, q.FRAME_LATENCY_BINNED, **binning)
                if bins.width_s % MINUTE == 0:  # whole minutes: from the rollup, only new minutes counted
                    class_rows = _rollup_bins(self.rollup.minutes(conn, minute_of(bins.start)), bins)
                else:
                    class_rows = q.run(conn, q.CLASS_COUNTS_BINNED, **binning)
        oldest_first = list(reversed(car_rows))
        ends = [r.completed_at or r.last_processed_at for r in oldest_first]
        series = CarLatencySeries(
            car_id=[r.car_id for r in oldest_first],
            first_captured_at=[r.first_captured_at for r in oldest_first],
            car_latency_s=[
                None if end is None else (end - r.first_captured_at).total_seconds() for r, end in zip(oldest_first, ends)
            ],
            deadline_s=[(r.deadline_at - r.first_captured_at).total_seconds() for r in oldest_first],
            verdict=[r.status for r in oldest_first],
        )
        return LineCharts(cars=series, classes=_class_series(bins, class_rows), latency=_latency_series(bins, latency_rows))

    # ----------------------------------------------------------------- car and frame

    def car_row(self, car_id: str, *, now: datetime | None = None, grace_s: float | None = None) -> CarRow:
        """One car: its frames, latency and deadline, and its state at `now` (default: the clock's)."""
        rows = self._rows(q.ONE_CAR, car_id=car_id, now=now or self.clock(), grace_s=grace_s)
        if not rows:
            raise NotFoundError(f"no car {car_id!r} in the results database")
        return self._car(rows[0])

    def car_states(self, *, now: datetime | None = None, grace_s: float | None = None) -> CarStates:
        """How many cars are incomplete at `now` (default: the clock's), by state: in flight and overdue."""
        counts = {r.status: int(r.cars) for r in self._rows(q.INCOMPLETE_CARS, now=now or self.clock(), grace_s=grace_s)}
        return CarStates(in_flight=counts.get("in_flight", 0), overdue=counts.get("overdue", 0))

    def counts(self) -> TableCounts:
        return TableCounts(**self._rows(q.TABLE_COUNTS)[0]._asdict())

    def car(self, car_id: str) -> CarDetail:
        car = self.car_row(car_id)
        frames = self._rows(q.CAR_FRAMES, car_id=car_id)
        cameras = max([self.cameras, *(f.camera + 1 for f in frames)])
        shots = max([math.ceil(car.frames_expected / cameras), *(f.shot + 1 for f in frames)])
        by_key = {(f.camera, f.shot): f for f in frames}
        cells = []
        for camera in range(cameras):
            for shot in range(shots):
                f = by_key.get((camera, shot))
                cells.append(
                    FrameCell(
                        camera=camera,
                        shot=shot,
                        state="missing"
                        if f is None
                        else ("error" if f.error_kind is not None or f.error is not None else "stored"),
                        frame_id=None if f is None else f.frame_id,
                        detections=0 if f is None else int(f.detection_count),
                        error_kind=None if f is None else f.error_kind,
                        has_image=False if f is None else bool(f.has_image),
                    )
                )
        return CarDetail(car=car, cameras=cameras, shots=shots, cells=cells)

    def frame(self, frame_id: int) -> FrameDetail:
        rows = self._rows(q.FRAME, frame_id=frame_id)
        if not rows:
            raise NotFoundError(f"no frame with id {frame_id} in the results database")
        r = rows[0]
        return FrameDetail(
            frame_id=r.frame_id,
            car_id=r.car_id,
            camera=r.camera,
            shot=r.shot,
            width=r.width,
            height=r.height,
            captured_at=r.captured_at,
            received_at=r.received_at,
            processed_at=r.processed_at,
            latency_s=r.latency_s,
            detection_count=r.detection_count,
            error_kind=r.error_kind,
            error=r.error,
            has_image=r.image_uri is not None,
            kafka_topic=r.kafka_topic,
            kafka_partition=r.kafka_partition,
            kafka_offset=r.kafka_offset,
            consumer_id=r.consumer_id,
            host=r.host,
            model=r.model,
            backend=r.backend,
            precision=r.precision,
        )

    def frame_image_uri(self, frame_id: int) -> str | None:
        """The image store URI of a frame (None: the store kept no image); NotFoundError if no such frame."""
        rows = self._rows(q.FRAME, frame_id=frame_id)
        if not rows:
            raise NotFoundError(f"no frame with id {frame_id} in the results database")
        return rows[0].image_uri

    def frame_boxes(self, frame_id: int) -> FrameBoxes:
        with self.engine.connect() as conn:
            if not q.run(conn, q.FRAME, frame_id=frame_id):
                raise NotFoundError(f"no frame with id {frame_id} in the results database")
            rows = q.run(conn, q.FRAME_DETECTIONS, frame_id=frame_id)
        columns = list(zip(*rows)) if rows else [()] * 8
        class_id, class_name, score, x1, y1, x2, y2, tile = columns
        return FrameBoxes(
            frame_id=frame_id,
            xyxy=list(zip(x1, y1, x2, y2)),
            score=list(score),
            class_id=list(class_id),
            class_name=list(class_name),
            tile_index=list(tile),
        )

    def frame_defects(self, frame_id: int) -> FrameDefects:
        """The boxes the inspection rules kept or an ignore region removed in one frame (empty: none, or not decided)."""
        with self.engine.connect() as conn:
            if not q.run(conn, q.FRAME, frame_id=frame_id):
                raise NotFoundError(f"no frame with id {frame_id} in the results database")
            rows = q.run(conn, q.FRAME_DEFECTS, frame_id=frame_id)
        class_name, score, x1, y1, x2, y2, rule, kept = list(zip(*rows)) if rows else [()] * 8
        return FrameDefects(
            frame_id=frame_id,
            xyxy=list(zip(x1, y1, x2, y2)),
            score=list(score),
            class_name=list(class_name),
            rule=list(rule),
            kept=[bool(k) for k in kept],
        )

    # ----------------------------------------------------------------- detections

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
        rows = self._rows(q.DETECTION_CLASS_COUNTS, **f.model_dump())
        return [ClassCount(class_id=r.class_id, class_name=r.class_name, boxes=r.boxes) for r in rows]

    def detections(self, f: DetectionFilter, page: int = 1, per_page: int = 50) -> DetectionsPage:
        counts = self.class_counts(f)
        rows = self._rows(q.DETECTION_PAGE, **f.model_dump(), limit=per_page + 1, offset=(page - 1) * per_page)
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

    # ----------------------------------------------------------------- problems

    def problems(self, page: int = 1, per_page: int = 50) -> Problems:
        offset = (page - 1) * per_page
        with self.engine.connect() as conn:
            errors = q.run(conn, q.LATEST_ERROR_FRAMES, limit=per_page + 1, offset=offset)
            rejected = q.run(conn, q.REJECTED_MESSAGES, limit=per_page + 1, offset=offset)
        has_next = len(errors) > per_page or len(rejected) > per_page
        return Problems(
            error_frames=[ErrorFrame(**r._asdict()) for r in errors[:per_page]],
            rejected=[Rejected(**{k: v for k, v in r._asdict().items() if k != "run_id"}) for r in rejected[:per_page]],
            page=page,
            per_page=per_page,
            has_next=has_next,
        )


# --------------------------------------------------------------------------- chart binning


def _time_bins(first: datetime | None, last: datetime | None, bins: int = CHART_BINS) -> TimeBins:
    """At most `bins` bins of a round width (1 s … 1 day) covering [first, last]."""
    if first is None or last is None:
        return TimeBins(start=None, width_s=60.0, count=0)
    span = max((last - first).total_seconds(), 1.0)
    width = next((w for w in _NICE_BIN_S if span / w <= bins), _NICE_BIN_S[-1])
    epoch = first.timestamp()
    start = datetime.fromtimestamp(epoch - epoch % width, tz=timezone.utc)
    count = int((last - start).total_seconds() // width) + 1
    return TimeBins(start=start, width_s=float(width), count=count)


@dataclass(frozen=True)
class _BinRow:
    bin: int
    class_id: int
    class_name: str
    boxes: int


def _rollup_bins(minutes: dict[int, dict[tuple[int, str], int]], bins: TimeBins) -> list[_BinRow]:
    """Rows like CLASS_COUNTS_BINNED's from the rollup's minutes (bins of whole minutes)."""
    assert bins.start is not None
    per_bin = int(bins.width_s // MINUTE)
    first = minute_of(bins.start)
    totals: dict[tuple[int, int, str], int] = {}
    for minute, per_class in minutes.items():
        k = (minute - first) // per_bin
        if 0 <= k < bins.count:
            for (class_id, name), boxes in per_class.items():
                totals[k, class_id, name] = totals.get((k, class_id, name), 0) + boxes
    return [_BinRow(k, c, n, b) for (k, c, n), b in totals.items()]


def _bin_array(bins: TimeBins, rows: list[Any]) -> np.ndarray:
    return np.clip(np.array([r.bin for r in rows], dtype=np.int64), 0, bins.count - 1)


def _class_series(bins: TimeBins, rows: list[Any]) -> ClassSeries:
    if not rows or bins.count == 0:
        return ClassSeries(bins=bins, boxes={})
    index = _bin_array(bins, rows)
    names = np.array([r.class_name for r in rows], dtype=object)
    boxes = np.array([r.boxes for r in rows], dtype=np.int64)
    totals = {str(n): int(boxes[names == n].sum()) for n in set(names.tolist())}
    series = {}
    for name in sorted(totals, key=lambda n: (-totals[n], n)):
        mask = names == name
        series[name] = np.bincount(index[mask], weights=boxes[mask], minlength=bins.count).astype(np.int64).tolist()
    return ClassSeries(bins=bins, boxes=series)


def _latency_series(bins: TimeBins, rows: list[Any]) -> LatencySeries:
    if not rows or bins.count == 0:
        return LatencySeries(bins=bins, frames=[0] * bins.count, p50_s=[None] * bins.count, p99_s=[None] * bins.count)
    table = np.asarray([tuple(r) for r in rows], dtype=np.float64).reshape(-1, 2)
    index = np.clip(table[:, 0].astype(np.int64), 0, bins.count - 1)
    latency = table[:, 1]
    order = np.lexsort((latency, index))  # by bin, then latency: each bin's latencies sorted
    index, latency = index[order], latency[order]
    bounds = np.searchsorted(index, np.arange(bins.count + 1))
    counts = np.diff(bounds)
    filled = counts > 0
    quantiles = {}
    for quantile in (0.5, 0.99):  # numpy's default (linear) quantile, for every bin at once
        position = bounds[:-1] + quantile * np.maximum(counts - 1, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, bounds[1:] - 1)
        low, high = np.minimum(low, len(latency) - 1), np.maximum(np.minimum(high, len(latency) - 1), 0)
        value = latency[low] + (latency[high] - latency[low]) * (position - np.floor(position))
        quantiles[quantile] = [float(v) if ok else None for v, ok in zip(value, filled)]
    return LatencySeries(bins=bins, frames=counts.tolist(), p50_s=quantiles[0.5], p99_s=quantiles[0.99])
