"""`AnalyticsReader`: typed answers to the analysts' and the line's questions, from the `queries` package.

Every statement is a named query of `queries` (the detection filters choose among its optional
conditions). The reader only reads; the dashboard gives it a read-only engine (`open_readonly_engine`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Engine

from . import queries as q
from .binning import class_series, latency_series, rollup_bins, time_bins
from .detections import DetectionReads
from .models import (
    CarDetail,
    CarLatencySeries,
    CarRow,
    CarsPage,
    CarStates,
    ChangeMark,
    ErrorFrame,
    FrameBoxes,
    FrameCell,
    FrameDefects,
    FrameDetail,
    Headline,
    LineCharts,
    Problems,
    Rejected,
    TableCounts,
    TimeBins,
)
from .rollup import MINUTE, MinuteClassRollup, minute_of


class NotFoundError(LookupError):
    """No car / frame with that id (the message names it)."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AnalyticsReader(DetectionReads):
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
                bins = time_bins(span.first_captured_at, span.last_captured_at)
                assert bins.start is not None
                binning = {"since": bins.start, "until": until, "start_s": bins.start.timestamp(), "width_s": bins.width_s}
                latency_rows = q.run(conn, q.FRAME_LATENCY_BINNED, **binning)
                if bins.width_s % MINUTE == 0:  # whole minutes: from the rollup, only new minutes counted
                    class_rows = rollup_bins(self.rollup.minutes(conn, minute_of(bins.start)), bins)
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
        return LineCharts(cars=series, classes=class_series(bins, class_rows), latency=latency_series(bins, latency_rows))

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

    @staticmethod
    def _frame(conn: Connection, frame_id: int) -> Any:
        rows = q.run(conn, q.FRAME, frame_id=frame_id)
        if not rows:
            raise NotFoundError(f"no frame with id {frame_id} in the results database")
        return rows[0]

    def frame(self, frame_id: int) -> FrameDetail:
        with self.engine.connect() as conn:
            row = self._frame(conn, frame_id)
        return FrameDetail(**row._asdict(), has_image=row.image_uri is not None)

    def frame_image_uri(self, frame_id: int) -> str | None:
        """The image store URI of a frame (None: the store kept no image); NotFoundError if no such frame."""
        with self.engine.connect() as conn:
            return self._frame(conn, frame_id).image_uri

    def frame_boxes(self, frame_id: int) -> FrameBoxes:
        with self.engine.connect() as conn:
            self._frame(conn, frame_id)
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
            self._frame(conn, frame_id)
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
