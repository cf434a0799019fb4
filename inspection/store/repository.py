"""Write and read API of the results database (`ResultStore`).

Delivery is at-least-once from Kafka and exactly-once here: a frame is upserted by
(car_id, camera, shot) and a redelivered frame replaces its own detections, in one
transaction per frame. The same transaction counts the car's frames and, when the count
reaches the expected number, records completion (completed_at, deadline_met, lateness_s)
exactly once, whichever consumer stored the last frame:

- PostgreSQL: the car row is locked (`SELECT … FOR NO KEY UPDATE`) after the frame and its
  detections are written and before counting. Under READ COMMITTED the COUNT that follows
  the lock sees every frame committed by the transaction that held it, so of two consumers
  storing a car's last two frames, the second to get the lock counts them all and completes
  the car; the first does not. NO KEY UPDATE (not plain FOR UPDATE) because inserting a
  frame takes a KEY SHARE lock on its car (foreign key): FOR UPDATE would conflict with it
  and two such transactions would deadlock.
- SQLite: a store transaction starts with BEGIN IMMEDIATE, so writers run one at a time.

Frames with an error (undecodable, wrong size, …) are stored as rows with `error` set and
no detections, and count toward completion: the frame was handled (and dead-lettered), so
waiting for it would leave the car incomplete for ever. `CarSummary.errors` says how many
of a car's frames are such rows. An error never replaces a successful result of the same
frame (a redelivery failing where the first delivery succeeded keeps the success).

Messages too broken to name a frame (no usable car/camera/shot headers) cannot have a frame
row; `store_rejected` records them in `rejected_messages`, once per (topic, partition, offset).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, not_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from ..config import StoreConfig
from ..deadline import CarDeadline, car_deadline_from_row, evaluate_car
from ..detections import Detections
from ..messages.frame_id import FrameId
from .db import SQLITE_IMMEDIATE, create_engine_for, mask_url, wait_for_database
from .errors import RecordRefused, store_errors
from .images import ImageStore
from .migrations import upgrade_database
from .models import (
    ERROR_KIND_MAX,
    IMAGE_DIR_MAX,
    KAFKA_TOPIC_MAX,
    MESSAGE_KEY_MAX,
    Car,
    Detection,
    Frame,
    RejectedMessageRow,
    Run,
)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
INT32_MAX = 2**31 - 1  # INTEGER columns (camera, shot, frames_expected) on PostgreSQL
INT64_MAX = 2**63 - 1  # BIGINT; also the largest nanosecond time a datetime column takes here
MAX_ERROR_TEXT = 8000  # characters of an error kept on a frame or rejected-message row


def datetime_from_ns(ns: int) -> datetime:
    """UTC datetime of a Unix time in nanoseconds (truncated to microseconds, exact otherwise)."""
    return _EPOCH + timedelta(microseconds=int(ns) // 1000)


class CarNotFoundError(KeyError):
    """No car with that id in the results database."""


class FrameNotFoundError(KeyError):
    """No frame with that (car_id, camera, shot) in the results database."""


@dataclass(frozen=True)
class FrameRecord:
    """Everything the store needs about one handled frame (from the Kafka message and the pipeline).

    Times are Unix nanoseconds: captured/deadline from the message headers, received when
    the consumer polled it, processed when its detections (or its error) were final.
    `frame_id` (validated on construction) says which frame; its `shots_per_car` is the number
    of frames expected for the whole car (cameras × shots).
    Give the encoded image as `image` (kept if the store has an ImageStore) or a ready
    `image_uri`, or neither.
    """

    frame_id: FrameId
    captured_at_ns: int
    deadline_at_ns: int
    received_at_ns: int
    processed_at_ns: int
    run_id: int
    width: int | None = None
    height: int | None = None
    image: bytes | None = None
    image_uri: str | None = None
    kafka_topic: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None

    def __post_init__(self) -> None:
        """Refuse (RecordRefused, a ValueError) what the columns cannot hold, before any SQL."""
        where = f"frame {self.label}"
        if not isinstance(self.frame_id, FrameId):
            raise RecordRefused(f"frame_id is {type(self.frame_id).__name__}, expected FrameId")
        for name in ("captured_at_ns", "deadline_at_ns", "received_at_ns", "processed_at_ns"):
            if not 0 <= getattr(self, name) <= INT64_MAX:
                raise RecordRefused(f"{where}: {name} must be Unix time in nanoseconds (0..2^63-1), got {getattr(self, name)}")
        if self.image is not None and self.image_uri is not None:
            raise RecordRefused(f"{where}: give either image bytes or an image_uri, not both")

    @property
    def latency_s(self) -> float:
        return (self.processed_at_ns - self.captured_at_ns) / 1e9

    @property
    def label(self) -> str:
        return self.frame_id.label


@dataclass(frozen=True)
class StoredFrame:
    """What one store call did. `completed` is set only for the call that completed the car."""

    row_id: int  # the frames row
    frame: FrameId
    detections: int
    replaced: bool  # a row for this frame existed (a redelivery); informational under races
    error_kind: str | None
    car_frames_done: int
    car_frames_expected: int
    completed: CarDeadline | None


@dataclass(frozen=True)
class CarSummary:
    car_id: str
    frames: int  # frame rows, error rows included
    frames_expected: int
    errors: int
    detections: int
    mean_frame_latency_s: float | None
    max_frame_latency_s: float | None
    car_latency_s: float | None  # first captured -> last processed (so far, if not complete)
    first_captured_at: datetime
    deadline_at: datetime
    deadline_s: float  # time allowed: first captured -> deadline
    completed_at: datetime | None
    deadline_met: bool | None
    lateness_s: float | None
    overdue_at: datetime | None = None  # found past its deadline with frames missing (kept once complete)
    missing_frames: str | None = None  # what was missing then, e.g. "cam 1 shots 0-4"

    @property
    def complete(self) -> bool:
        return self.completed_at is not None

    @property
    def state(self) -> str:
        """met | missed (complete) | overdue (deadline passed, frames missing) | in_flight."""
        if self.completed_at is not None:
            return "met" if self.deadline_met else "missed"
        return "overdue" if self.overdue_at is not None else "in_flight"


@dataclass(frozen=True)
class RejectedMessage:
    """A dead-lettered Kafka message that named no frame, as stored (latest delivery's error and time)."""

    id: int
    received_at: datetime
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int
    message_key: str | None
    error_kind: str
    error: str
    run_id: int | None


@dataclass(frozen=True)
class OverdueCar:
    """A car the calling consumer just marked overdue (no other consumer marks it again)."""

    car_id: str
    deadline_at: datetime
    overdue_at: datetime
    frames_done: int
    frames_expected: int
    missing: tuple[tuple[int, int], ...]  # (camera, shot) pairs of the line geometry with no row
    missing_text: str


@dataclass(frozen=True)
class CarStates:
    """Cars not complete yet: still within their deadline (+ grace), or marked overdue."""

    in_flight: int
    overdue: int


@dataclass(frozen=True)
class PruneCounts:
    """What `ResultStore.prune` deletes (or, in a dry run, would delete) from the database."""

    cars: int
    frames: int
    detections: int
    rejected: int
    images_cleared: int  # frames kept whose image_uri is cleared (their image is older than the images cutoff)
    # (image directory or None when the run recorded none, uri) of images no kept frame references any more
    image_files: tuple[tuple[str | None, str], ...]


@dataclass(frozen=True)
class StoreCounts:
    runs: int
    cars: int
    cars_completed: int
    cars_late: int
    frames: int
    frame_errors: int
    detections: int
    rejected: int  # rows of rejected_messages


class ResultStore:
    """The results database: one `store_frame` / `store_error` transaction per frame, read API for analysts."""

    def __init__(self, target: Engine | str | URL, image_store: ImageStore | None = None) -> None:
        self._owns_engine = not isinstance(target, Engine)
        self.engine: Engine = create_engine_for(target) if self._owns_engine else target  # type: ignore[arg-type]
        self.image_store = image_store
        self._writer = self.engine.execution_options(**{SQLITE_IMMEDIATE: True})
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    @classmethod
    def open(cls, config: StoreConfig, *, migrate: bool = True) -> ResultStore:
        """Engine for `config.url`, wait until it answers, bring the schema to head, attach the image store."""
        engine = create_engine_for(
            config.url, connect_timeout_s=config.connect_timeout_s, busy_timeout_s=config.sqlite_busy_timeout_s
        )
        try:
            wait_for_database(engine, config.connect_retries, config.connect_backoff_s)
            if migrate:
                upgrade_database(engine)
        except BaseException:
            engine.dispose()
            raise
        store = cls(engine, ImageStore(config.image_dir) if config.image_dir is not None else None)
        store._owns_engine = True
        return store

    @property
    def where(self) -> str:
        """The database URL with any password masked, for messages."""
        return mask_url(self.engine.url)

    def ping(self) -> None:
        """`SELECT 1`; raises StoreUnavailable when the database does not answer."""
        with store_errors(f"pinging {self.where}"), self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    def start_run(
        self,
        model: str,
        backend: str,
        precision: str,
        config_hash: str,
        *,
        host: str | None = None,
        consumer_id: str | None = None,
        started_at: datetime | None = None,
        image_dir: str | None = None,
    ) -> int:
        """Record a run (one consumer process); frames written by it carry the returned id.

        `image_dir` (default: the image store's root) is recorded as the absolute directory the
        run's `frames.image_uri` are relative to.
        """
        host = host or socket.gethostname()
        if image_dir is None and self.image_store is not None:
            image_dir = str(self.image_store.root)
        if image_dir is not None and len(image_dir) > IMAGE_DIR_MAX:
            raise RecordRefused(f"image directory {image_dir[:80]}… is longer than {IMAGE_DIR_MAX} characters")
        values = {
            "started_at": started_at or datetime.now(timezone.utc),
            "model": model,
            "backend": backend,
            "precision": precision,
            "config_hash": config_hash,
            "host": host,
            "consumer_id": consumer_id or f"{host}:{os.getpid()}",
            "image_dir": image_dir,
        }
        with store_errors(f"recording a run in {mask_url(self.engine.url)}"), self._writer.begin() as conn:
            return int(conn.execute(insert(Run).values(values).returning(Run.id)).scalar_one())

    def store_frame(
        self,
        record: FrameRecord,
        detections: Detections,
        class_names: Mapping[int, str] | Sequence[str],
    ) -> StoredFrame:
        """Upsert the frame and replace its detections (frame pixels), update the car; one transaction.

        Raises RecordRefused when the content cannot be stored (NaN boxes, values the columns
        cannot hold, a car registered with another frame count), StoreUnavailable when the
        database cannot take the write.
        """
        where = f"storing frame {record.label}"
        if not (np.isfinite(detections.xyxy).all() and np.isfinite(detections.score).all()):
            raise RecordRefused(f"{where}: detections hold NaN or infinite boxes/scores; refusing to store them")
        with store_errors(where):
            image_uri = record.image_uri
            if record.image is not None and self.image_store is not None:
                # Outside the transaction: content-addressed and idempotent, at worst an unreferenced file.
                image_uri = self.image_store.put(record.image, image_suffix(record.image))
            rows = _detection_rows(detections, class_names)
            return self._store(record, image_uri, rows, error_kind=None, error=None)

    def store_frames(
        self, items: Sequence[tuple[FrameRecord, Detections]], class_names: Mapping[int, str] | Sequence[str]
    ) -> list[StoredFrame]:
        """`store_frame` for several frames in ONE transaction (in car order, so concurrent writers lock
        cars in the same order); all or nothing. RecordRefused when any frame's content cannot be
        stored: the caller then stores them one by one to park only that one."""
        for record, detections in items:
            if not (np.isfinite(detections.xyxy).all() and np.isfinite(detections.score).all()):
                raise RecordRefused(
                    f"storing frame {record.label}: detections hold NaN or infinite boxes/scores; refusing to store them"
                )
        order = sorted(
            range(len(items)), key=lambda i: (items[i][0].frame_id.car_id, items[i][0].frame_id.camera, items[i][0].frame_id.shot)
        )
        stored: list[StoredFrame | None] = [None] * len(items)
        with store_errors(f"storing {len(items)} frames"):
            uris = [
                self.image_store.put(record.image, image_suffix(record.image))
                if record.image is not None and self.image_store is not None
                else record.image_uri
                for record, _ in items
            ]
            with self._writer.begin() as conn:
                for i in order:
                    record, detections = items[i]
                    rows = _detection_rows(detections, class_names)
                    stored[i] = self._store_in(conn, record, uris[i], rows, error_kind=None, error=None)
        return [s for s in stored if s is not None]

    def store_error(self, record: FrameRecord, error_kind: str, message: str) -> StoredFrame:
        """Record a frame that could not be processed (error set, no detections); it counts toward completion.

        The message is stored as text any backend holds (NUL replaced, cut to MAX_ERROR_TEXT).
        """
        if not error_kind or len(error_kind) > ERROR_KIND_MAX:
            raise RecordRefused(f"error_kind must be a short non-empty label (<= {ERROR_KIND_MAX} chars), got {error_kind!r}")
        with store_errors(f"storing the error row of frame {record.label}"):
            image_uri = record.image_uri
            if record.image is not None and self.image_store is not None:
                image_uri = self.image_store.put(record.image, image_suffix(record.image))
            return self._store(record, image_uri, [], error_kind=error_kind, error=error_text(message))

    def store_rejected(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | str | None,
        error_kind: str,
        message: str,
        received_at_ns: int,
        run_id: int | None = None,
    ) -> int:
        """Record a message too broken to name a frame (it goes to the dead-letter topic); returns the row id.

        One transaction. A redelivery of the same (topic, partition, offset) updates the row's
        error, error_kind, received_at (and run_id, when given) instead of adding a row.
        """
        where = f"rejected message {_short(topic)}[{partition}]@{offset}"
        if not isinstance(topic, str) or not topic or len(topic) > KAFKA_TOPIC_MAX:
            raise RecordRefused(f"{where}: topic must be a non-empty string of at most {KAFKA_TOPIC_MAX} characters")
        if not (0 <= partition <= INT32_MAX and 0 <= offset <= INT64_MAX):
            raise RecordRefused(f"{where}: partition and offset are Kafka positions and must be >= 0")
        if not error_kind or len(error_kind) > ERROR_KIND_MAX:
            raise RecordRefused(
                f"{where}: error_kind must be a short non-empty label (<= {ERROR_KIND_MAX} chars), got {error_kind!r}"
            )
        if not 0 <= received_at_ns <= INT64_MAX:
            raise RecordRefused(f"{where}: received_at_ns must be Unix time in nanoseconds (>= 0), got {received_at_ns}")
        latest = {
            "received_at": datetime_from_ns(received_at_ns),
            "error_kind": error_kind,
            "error": error_text(message),
        }
        upsert = self._insert(RejectedMessageRow).values(
            kafka_topic=topic,
            kafka_partition=int(partition),
            kafka_offset=int(offset),
            message_key=message_key_text(key),
            run_id=run_id,
            **latest,
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[RejectedMessageRow.kafka_topic, RejectedMessageRow.kafka_partition, RejectedMessageRow.kafka_offset],
            set_={**latest, "run_id": func.coalesce(upsert.excluded.run_id, RejectedMessageRow.run_id)},
        )
        with store_errors(f"storing {where}"), self._writer.begin() as conn:
            return int(conn.execute(upsert.returning(RejectedMessageRow.id)).scalar_one())

    def _store(
        self,
        record: FrameRecord,
        image_uri: str | None,
        detection_rows: list[tuple[Any, ...]],
        *,
        error_kind: str | None,
        error: str | None,
    ) -> StoredFrame:
        with self._writer.begin() as conn:
            return self._store_in(conn, record, image_uri, detection_rows, error_kind=error_kind, error=error)

    def _store_in(
        self,
        conn: Connection,
        record: FrameRecord,
        image_uri: str | None,
        detection_rows: list[tuple[Any, ...]],
        *,
        error_kind: str | None,
        error: str | None,
    ) -> StoredFrame:
        """One frame's writes inside the caller's transaction (see `_store`)."""
        captured_at = datetime_from_ns(record.captured_at_ns)
        frame_key = (
            Frame.car_id == record.frame_id.car_id,
            Frame.camera == record.frame_id.camera,
            Frame.shot == record.frame_id.shot,
        )
        frame_values = {
            "width": record.width,
            "height": record.height,
            "captured_at": captured_at,
            "received_at": datetime_from_ns(record.received_at_ns),
            "processed_at": datetime_from_ns(record.processed_at_ns),
            "latency_s": record.latency_s,
            "image_uri": image_uri,
            "error": error,
            "error_kind": error_kind,
            "run_id": record.run_id,
            "kafka_topic": record.kafka_topic,
            "kafka_partition": record.kafka_partition,
            "kafka_offset": record.kafka_offset,
            "detection_count": len(detection_rows),
        }
        conn.execute(
            self._insert(Car)
            .values(
                car_id=record.frame_id.car_id,
                frames_expected=record.frame_id.shots_per_car,
                frames_done=0,
                first_captured_at=captured_at,
                deadline_at=datetime_from_ns(record.deadline_at_ns),
            )
            .on_conflict_do_nothing(index_elements=[Car.car_id])
        )
        replaced = conn.execute(select(Frame.id).where(*frame_key)).first() is not None
        upsert = self._insert(Frame).values(
            car_id=record.frame_id.car_id, camera=record.frame_id.camera, shot=record.frame_id.shot, **frame_values
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[Frame.car_id, Frame.camera, Frame.shot],
            set_=frame_values,
            # an error never overwrites a successful result of the same frame
            where=Frame.error.is_not(None) if error is not None else None,
        )
        frame_id = conn.execute(upsert.returning(Frame.id)).scalar()
        kept_success = frame_id is None
        if kept_success:
            frame_id = conn.execute(select(Frame.id).where(*frame_key)).scalar_one()
            detection_count = conn.execute(select(Frame.detection_count).where(Frame.id == frame_id)).scalar_one()
            log.info("frame %s: keeping its stored result, not the later error %s", record.label, error_kind)
        else:
            detection_count = len(detection_rows)
            # Unconditional: a concurrent redelivery may have written the row since `replaced` was read.
            conn.execute(delete(Detection).where(Detection.frame_id == frame_id))
            self._insert_detections(conn, int(frame_id), detection_rows)
        car_done, car_expected, completed = self._update_car(conn, record, captured_at)
        return StoredFrame(
            row_id=int(frame_id),
            frame=record.frame_id,
            detections=int(detection_count),
            replaced=replaced,
            error_kind=None if kept_success else error_kind,
            car_frames_done=car_done,
            car_frames_expected=car_expected,
            completed=completed,
        )

    @staticmethod
    def _insert_detections(conn: Connection, frame_id: int, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if conn.dialect.name == "postgresql":
            # COPY: one stream for all boxes, in the same transaction; an executemany or a
            # multi-row VALUES costs ~50 µs a box in parameter handling, COPY a few.
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor, cursor.copy(f"COPY detections (frame_id, {', '.join(DETECTION_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((frame_id, *row))
            return
        conn.execute(
            insert(Detection),
            [dict(zip(DETECTION_COLUMNS, row), frame_id=frame_id) for row in rows],
        )

    def _update_car(self, conn: Connection, record: FrameRecord, captured_at: datetime) -> tuple[int, int, CarDeadline | None]:
        car = conn.execute(
            select(Car.frames_expected, Car.first_captured_at, Car.deadline_at, Car.completed_at)
            .where(Car.car_id == record.frame_id.car_id)
            .with_for_update(key_share=True)
        ).one()
        # A new statement after the lock: under READ COMMITTED it sees frames committed meanwhile.
        done, last_processed = conn.execute(
            select(func.count(Frame.id), func.max(Frame.processed_at)).where(Frame.car_id == record.frame_id.car_id)
        ).one()
        if record.frame_id.shots_per_car != car.frames_expected:
            # A car's frame count is fixed when it is registered; a frame that disagrees is not
            # one of its frames (the whole transaction rolls back, the caller parks the record).
            raise RecordRefused(
                f"frame {record.label} says {record.frame_id.shots_per_car} frames per car; the car was registered "
                f"with {car.frames_expected} (configs: line.cameras × line.shots_per_camera must agree on every producer and consumer)"
            )
        values: dict[str, Any] = {"frames_done": done}
        if captured_at < car.first_captured_at:
            values["first_captured_at"] = captured_at
        completed = None
        if car.completed_at is None and done >= car.frames_expected:
            completed = evaluate_car(
                record.frame_id.car_id, last_processed, car.deadline_at, values.get("first_captured_at", car.first_captured_at)
            )
            values.update(
                completed_at=completed.completed_at,
                deadline_met=completed.met,
                lateness_s=completed.lateness_s,
            )
        conn.execute(update(Car).where(Car.car_id == record.frame_id.car_id).values(values))
        return int(done), int(car.frames_expected), completed

    def prune(self, rows_before: datetime | None, images_before: datetime | None, *, dry_run: bool = True) -> PruneCounts:
        """Delete cars first captured before `rows_before` (with their frames and detections) and
        rejected messages received before it; clear `image_uri` of kept frames captured before
        `images_before`. One transaction, rolled back in a dry run. Returns the counts and the
        image files nobody references afterwards (the caller deletes them, see retention.py)."""
        never = datetime(1, 1, 1, tzinfo=timezone.utc)
        rows_cut, images_cut = rows_before or never, images_before or never
        old_cars = select(Car.car_id).where(Car.first_captured_at < rows_cut)
        frame_gone = Frame.car_id.in_(old_cars)
        image_gone = and_(Frame.image_uri.is_not(None), or_(frame_gone, Frame.captured_at < images_cut))
        with store_errors("pruning old results"), self._writer.connect() as conn, conn.begin() as transaction:
            cars = conn.execute(select(func.count()).select_from(old_cars.subquery())).scalar_one()
            frames = conn.execute(select(func.count(Frame.id)).where(frame_gone)).scalar_one()
            detections = conn.execute(
                select(func.count(Detection.id)).where(Detection.frame_id.in_(select(Frame.id).where(frame_gone)))
            ).scalar_one()
            rejected = conn.execute(
                select(func.count(RejectedMessageRow.id)).where(RejectedMessageRow.received_at < rows_cut)
            ).scalar_one()
            cleared = conn.execute(select(func.count(Frame.id)).where(image_gone, not_(frame_gone))).scalar_one()
            candidates = set(
                conn.execute(
                    select(Run.image_dir, Frame.image_uri).join(Run, Run.id == Frame.run_id).where(image_gone).distinct()
                ).all()
            )
            kept = (
                set(
                    conn.execute(
                        select(Run.image_dir, Frame.image_uri)
                        .join(Run, Run.id == Frame.run_id)
                        .where(Frame.image_uri.in_([uri for _, uri in candidates]), not_(image_gone))
                        .distinct()
                    ).all()
                )
                if candidates
                else set()
            )
            files = tuple(sorted(((d, u) for d, u in candidates - kept), key=lambda item: (item[0] or "", item[1])))
            if not dry_run:
                conn.execute(update(Frame).where(image_gone, not_(frame_gone)).values(image_uri=None))
                conn.execute(delete(Detection).where(Detection.frame_id.in_(select(Frame.id).where(frame_gone))))
                conn.execute(delete(Frame).where(frame_gone))
                conn.execute(delete(Car).where(Car.first_captured_at < rows_cut))
                conn.execute(delete(RejectedMessageRow).where(RejectedMessageRow.received_at < rows_cut))
            else:
                transaction.rollback()
        return PruneCounts(int(cars), int(frames), int(detections), int(rejected), int(cleared), files)

    # ------------------------------------------------------------------ reads

    def _summary_select(self) -> Any:
        per_frame = (
            select(
                Frame.car_id.label("car_id"),
                func.count(Frame.id).label("frames"),
                func.count(Frame.error).label("errors"),
                func.coalesce(func.sum(Frame.detection_count), 0).label("detections"),
                func.avg(Frame.latency_s).label("mean_latency"),
                func.max(Frame.latency_s).label("max_latency"),
                func.max(Frame.processed_at).label("last_processed"),
            )
            .group_by(Frame.car_id)
            .subquery()
        )
        return (
            select(
                Car,
                per_frame.c.frames,
                per_frame.c.errors,
                per_frame.c.detections,
                per_frame.c.mean_latency,
                per_frame.c.max_latency,
                per_frame.c.last_processed,
            )
            .outerjoin(per_frame, per_frame.c.car_id == Car.car_id)
            .order_by(Car.first_captured_at, Car.car_id)
        )

    @staticmethod
    def _summary(row: Any) -> CarSummary:
        car: Car = row[0]
        last = car.completed_at or row.last_processed
        return CarSummary(
            car_id=car.car_id,
            frames=int(row.frames or 0),
            frames_expected=car.frames_expected,
            errors=int(row.errors or 0),
            detections=int(row.detections or 0),
            mean_frame_latency_s=None if row.mean_latency is None else float(row.mean_latency),
            max_frame_latency_s=None if row.max_latency is None else float(row.max_latency),
            car_latency_s=None if last is None else (last - car.first_captured_at).total_seconds(),
            first_captured_at=car.first_captured_at,
            deadline_at=car.deadline_at,
            deadline_s=(car.deadline_at - car.first_captured_at).total_seconds(),
            completed_at=car.completed_at,
            deadline_met=car.deadline_met,
            lateness_s=car.lateness_s,
            overdue_at=car.overdue_at,
            missing_frames=car.missing_frames,
        )

    def _read(self, statement: Any) -> list[Any]:
        with Session(self.engine) as session:
            return list(session.execute(statement).all())

    def car_summary(self, car_id: str) -> CarSummary:
        rows = self._read(self._summary_select().where(Car.car_id == car_id))
        if not rows:
            raise CarNotFoundError(f"no car {car_id!r} in the results database")
        return self._summary(rows[0])

    def overdue_cars(self, now: datetime | None = None, *, marked_only: bool = False) -> list[CarSummary]:
        """Cars still incomplete after their deadline (frames lost or stuck), oldest first.

        `marked_only`: only those an edge consumer has marked overdue (`overdue_at` set, with the
        frames missing then in `missing_frames`); otherwise every incomplete car whose deadline
        is before `now`, marked yet or not.
        """
        now = now or datetime.now(timezone.utc)
        statement = self._summary_select().where(Car.completed_at.is_(None))
        if marked_only:
            statement = statement.where(Car.overdue_at.is_not(None))
        else:
            statement = statement.where(Car.deadline_at < now)
        return [self._summary(row) for row in self._read(statement)]

    def mark_overdue(
        self, now: datetime, grace_s: float, cameras: int, shots_per_camera: int, *, limit: int = 500
    ) -> list[OverdueCar]:
        """Mark incomplete cars whose deadline passed more than `grace_s` ago as overdue; return those
        this call marked, with the (camera, shot) pairs of the line's geometry that have no frame row.

        Exactly once across consumers: the UPDATE only takes rows with `overdue_at IS NULL`; on
        PostgreSQL the candidates are locked first (`FOR UPDATE SKIP LOCKED`, in car order), so two
        consumers checking at once neither deadlock nor both mark a car, and a car whose last frame
        is being stored (its row locked) is left for the next check; SQLite runs writers one at a time.
        """
        cutoff = now - timedelta(seconds=grace_s)
        with store_errors("marking overdue cars"), self._writer.begin() as conn:
            candidates = (
                select(Car.car_id)
                .where(Car.completed_at.is_(None), Car.overdue_at.is_(None), Car.deadline_at < cutoff)
                .order_by(Car.car_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(conn.execute(candidates).scalars())
            if not ids:
                return []
            marked = conn.execute(
                update(Car)
                .where(Car.car_id.in_(ids), Car.completed_at.is_(None), Car.overdue_at.is_(None))
                .values(overdue_at=now)
                .returning(Car.car_id, Car.deadline_at, Car.frames_done, Car.frames_expected)
            ).all()
            if not marked:
                return []
            present: dict[str, set[tuple[int, int]]] = {row.car_id: set() for row in marked}
            for car_id, camera, shot in conn.execute(
                select(Frame.car_id, Frame.camera, Frame.shot).where(Frame.car_id.in_(list(present)))
            ):
                present[car_id].add((camera, shot))
            out = []
            for row in sorted(marked, key=lambda r: r.car_id):
                missing = tuple(
                    (c, s) for c in range(cameras) for s in range(shots_per_camera) if (c, s) not in present[row.car_id]
                )
                text = describe_missing(missing, shots_per_camera)
                conn.execute(update(Car).where(Car.car_id == row.car_id).values(missing_frames=text))
                out.append(
                    OverdueCar(row.car_id, row.deadline_at, now, int(row.frames_done), int(row.frames_expected), missing, text)
                )
        return out

    def car_states(self) -> CarStates:
        """How many cars are incomplete: in flight (not marked overdue) and overdue."""
        with self.engine.connect() as conn:
            in_flight, overdue = conn.execute(
                select(
                    func.coalesce(func.sum(case((Car.overdue_at.is_(None), 1), else_=0)), 0),
                    func.coalesce(func.sum(case((Car.overdue_at.is_not(None), 1), else_=0)), 0),
                ).where(Car.completed_at.is_(None))
            ).one()
        return CarStates(int(in_flight), int(overdue))

    def car_deadline(self, car_id: str) -> CarDeadline | None:
        """The car's deadline verdict, None while it is incomplete."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    Car.car_id, Car.completed_at, Car.deadline_at, Car.deadline_met, Car.lateness_s, Car.first_captured_at
                ).where(Car.car_id == car_id)
            ).first()
        if row is None:
            raise CarNotFoundError(f"no car {car_id!r} in the results database")
        return car_deadline_from_row(row)

    def frame_detections(self, car_id: str, camera: int, shot: int) -> Detections:
        """The stored detections of one frame (frame pixels), highest score first."""
        with self.engine.connect() as conn:
            frame_id = conn.execute(
                select(Frame.id).where(Frame.car_id == car_id, Frame.camera == camera, Frame.shot == shot)
            ).scalar()
            if frame_id is None:
                raise FrameNotFoundError(f"no frame car={car_id!r} cam={camera} shot={shot} in the results database")
            rows = conn.execute(
                select(
                    Detection.x1,
                    Detection.y1,
                    Detection.x2,
                    Detection.y2,
                    Detection.score,
                    Detection.class_id,
                    Detection.tile_index,
                )
                .where(Detection.frame_id == frame_id)
                .order_by(Detection.score.desc(), Detection.id)
            ).all()
        if not rows:
            return Detections.empty()
        table = np.asarray(rows, dtype=np.float64)
        return Detections(table[:, :4], table[:, 4], table[:, 5].astype(np.int32), table[:, 6].astype(np.int32))

    def rejected_messages(self, limit: int | None = None) -> list[RejectedMessage]:
        """Rejected (frameless, dead-lettered) messages, most recently received first."""
        statement = select(RejectedMessageRow).order_by(RejectedMessageRow.received_at.desc(), RejectedMessageRow.id.desc())
        if limit is not None:
            statement = statement.limit(limit)
        return [
            RejectedMessage(
                id=row.id,
                received_at=row.received_at,
                kafka_topic=row.kafka_topic,
                kafka_partition=row.kafka_partition,
                kafka_offset=row.kafka_offset,
                message_key=row.message_key,
                error_kind=row.error_kind,
                error=row.error,
                run_id=row.run_id,
            )
            for (row,) in self._read(statement)
        ]

    def counts(self) -> StoreCounts:
        with self.engine.connect() as conn:
            runs = conn.execute(select(func.count(Run.id))).scalar_one()
            cars, completed, late = conn.execute(
                select(
                    func.count(Car.car_id),
                    func.count(Car.completed_at),
                    func.coalesce(func.sum(case((Car.deadline_met.is_(False), 1), else_=0)), 0),
                )
            ).one()
            frames, errors = conn.execute(select(func.count(Frame.id), func.count(Frame.error))).one()
            detections = conn.execute(select(func.count(Detection.id))).scalar_one()
            rejected = conn.execute(select(func.count(RejectedMessageRow.id))).scalar_one()
        return StoreCounts(
            int(runs), int(cars), int(completed), int(late), int(frames), int(errors), int(detections), int(rejected)
        )


def _sql_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL characters (SQLite can): replace them, as undecodable bytes are."""
    return text.replace("\x00", "\ufffd")


def error_text(message: str) -> str:
    """An error message as text every backend holds: NUL replaced, cut to MAX_ERROR_TEXT characters."""
    text = _sql_text(str(message))
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "\u2026"


def image_suffix(data: bytes) -> str:
    """The file suffix of an encoded frame: .png for PNG bytes, else .jpg (the contract's two types)."""
    return ".png" if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" else ".jpg"


def describe_missing(missing: Sequence[tuple[int, int]], shots_per_camera: int) -> str:
    """(camera, shot) pairs as text by camera with shot ranges: "cam 1 shots 0-4, 7; cam 3 all 19 shots"."""
    if not missing:
        return "none"
    by_camera: dict[int, list[int]] = {}
    for camera, shot in sorted(missing):
        by_camera.setdefault(camera, []).append(shot)
    parts = []
    for camera, shots in by_camera.items():
        if len(shots) == shots_per_camera > 1:
            parts.append(f"cam {camera} all {shots_per_camera} shots")
            continue
        ranges: list[str] = []
        start = prev = shots[0]
        for shot in [*shots[1:], None]:
            if shot is not None and shot == prev + 1:
                prev = shot
                continue
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            if shot is not None:
                start = prev = shot
        parts.append(f"cam {camera} shot{'s' if len(shots) > 1 else ''} {', '.join(ranges)}")
    return "; ".join(parts)


def _short(value: object, limit: int = 40) -> str:
    """A value for an error message: as is when short and printable, else a cut repr."""
    if isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def message_key_text(key: bytes | str | None) -> str | None:
    """A Kafka key as storable text: UTF-8 with undecodable bytes (and NUL) replaced by U+FFFD,
    cut to MESSAGE_KEY_MAX characters (the last one an ellipsis when cut)."""
    if key is None:
        return None
    text = _sql_text(key if isinstance(key, str) else bytes(key).decode("utf-8", errors="replace"))
    return text if len(text) <= MESSAGE_KEY_MAX else text[: MESSAGE_KEY_MAX - 1] + "\u2026"


DETECTION_COLUMNS = ("class_id", "class_name", "score", "x1", "y1", "x2", "y2", "tile_index")


def _detection_rows(detections: Detections, class_names: Mapping[int, str] | Sequence[str]) -> list[tuple[Any, ...]]:
    """One tuple per box in DETECTION_COLUMNS order, made column by column from the arrays
    (tolist), never through per-box objects: the DB-API takes rows of Python values."""
    if not len(detections):
        return []
    lookup = class_names if isinstance(class_names, Mapping) else dict(enumerate(class_names))
    ids = detections.class_id.tolist()
    names_of = {c: str(lookup.get(c, f"class_{c}")) for c in set(ids)}
    x1, y1, x2, y2 = detections.xyxy.astype(np.float64).T.tolist()
    return list(
        zip(
            ids,
            [names_of[c] for c in ids],
            detections.score.astype(np.float64).tolist(),
            x1,
            y1,
            x2,
            y2,
            detections.tile_index.tolist(),
        )
    )
