"""The write side: one transaction per frame (frame upsert, detections, the car's count and completion) or per batch of frames (`store_frames`, the edge's group commit), the run row, rejected messages.

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
waiting for it would leave the car incomplete for ever. The read layer's car rows (`errors`) say how many
of a car's frames are such rows. An error never replaces a successful result of the same
frame (a redelivery failing where the first delivery succeeded keeps the success).

Messages too broken to name a frame (no usable car/camera/shot headers) cannot have a frame
row; `store_rejected` records them in `rejected_messages`, once per (topic, partition, offset)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..deadline import CarDeadline, evaluate_car
from ..detections import Detections
from .db import SQLITE_IMMEDIATE, mask_url
from .errors import RecordRefused, store_errors
from .images import ImageStore
from .models import (
    ERROR_KIND_MAX,
    IMAGE_DIR_MAX,
    KAFKA_TOPIC_MAX,
    Car,
    Detection,
    Frame,
    RejectedMessageRow,
    Run,
)
from .records import (
    DETECTION_COLUMNS,
    INT32_MAX,
    INT64_MAX,
    FrameRecord,
    StoredFrame,
    _detection_rows,
    _short,
    datetime_from_ns,
    error_text,
    image_suffix,
    message_key_text,
)

if TYPE_CHECKING:
    from ..rules.verdict import VerdictWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreDatabase:
    """The engine a store reads with, the one it writes with (SQLite: BEGIN IMMEDIATE), its dialect's upsert."""

    engine: Engine
    image_store: ImageStore | None = None

    @cached_property
    def writer(self) -> Engine:
        return self.engine.execution_options(**{SQLITE_IMMEDIATE: True})

    @cached_property
    def insert(self) -> Any:
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert


class FrameTransactions:
    """`start_run`, `store_frame`, `store_error`, `store_rejected`: each one transaction."""

    def __init__(self, db: StoreDatabase, verdicts: VerdictWriter | None = None) -> None:
        self.db = db
        self.verdicts = verdicts  # decides each car's inspection verdict in the transaction that completes it (issue 19)

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
        if image_dir is None and self.db.image_store is not None:
            image_dir = str(self.db.image_store.root)
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
        with store_errors(f"recording a run in {mask_url(self.db.engine.url)}"), self.db.writer.begin() as conn:
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
        _refuse_non_finite(record, detections)
        with store_errors(where):
            rows = _detection_rows(detections, class_names)
            return self._store(record, self._put_image(record), rows, error_kind=None, error=None)

    def store_frames(
        self, items: Sequence[tuple[FrameRecord, Detections]], class_names: Mapping[int, str] | Sequence[str]
    ) -> list[StoredFrame]:
        """`store_frame` for several frames in ONE transaction (group commit), all or nothing; answers in
        the order given. Rows are written in car order, so concurrent writers lock cars in the same order
        (a stable sort: records of one frame key keep the order given, the last one given wins).

        Raises RecordRefused when any frame's content cannot be stored (nothing is written: the caller
        then stores them one by one, to park only that one), StoreUnavailable as `store_frame`.
        """
        for record, detections in items:
            _refuse_non_finite(record, detections)
        order = sorted(
            range(len(items)), key=lambda i: (items[i][0].frame_id.car_id, items[i][0].frame_id.camera, items[i][0].frame_id.shot)
        )
        stored: dict[int, StoredFrame] = {}
        with store_errors(f"storing {len(items)} frames"):
            uris = [self._put_image(record) for record, _ in items]
            with self.db.writer.begin() as conn:
                for i in order:
                    record, detections = items[i]
                    rows = _detection_rows(detections, class_names)
                    stored[i] = self._store_in(conn, record, uris[i], rows, error_kind=None, error=None)
        return [stored[i] for i in range(len(items))]

    def _put_image(self, record: FrameRecord) -> str | None:
        """The frame's image URI; the image is written outside the transaction (content-addressed and
        idempotent, at worst an unreferenced file)."""
        if record.image is not None and self.db.image_store is not None:
            return self.db.image_store.put(record.image, image_suffix(record.image))
        return record.image_uri

    def store_error(self, record: FrameRecord, error_kind: str, message: str) -> StoredFrame:
        """Record a frame that could not be processed (error set, no detections); it counts toward completion.

        The message is stored as text any backend holds (NUL replaced, cut to MAX_ERROR_TEXT).
        """
        if not error_kind or len(error_kind) > ERROR_KIND_MAX:
            raise RecordRefused(f"error_kind must be a short non-empty label (<= {ERROR_KIND_MAX} chars), got {error_kind!r}")
        with store_errors(f"storing the error row of frame {record.label}"):
            return self._store(record, self._put_image(record), [], error_kind=error_kind, error=error_text(message))

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
        upsert = self.db.insert(RejectedMessageRow).values(
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
        with store_errors(f"storing {where}"), self.db.writer.begin() as conn:
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
        with self.db.writer.begin() as conn:
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
        """One frame's writes inside the caller's transaction (`_store`: its own; `store_frames`: shared)."""
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
            self.db.insert(Car)
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
        upsert = self.db.insert(Frame).values(
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
        if completed is not None and self.verdicts is not None:
            self.verdicts.decide_complete(
                conn, completed.car_id, values.get("first_captured_at", car.first_captured_at), completed.completed_at
            )
        return int(done), int(car.frames_expected), completed


def _refuse_non_finite(record: FrameRecord, detections: Detections) -> None:
    if not (np.isfinite(detections.xyxy).all() and np.isfinite(detections.score).all()):
        raise RecordRefused(f"storing frame {record.label}: detections hold NaN or infinite boxes/scores; refusing to store them")
