"""`inspection shadow --model NAME`: a candidate model on the line's own frames, apart from the deployed one.

Two ways to get the frames, both from the `frames` topic and both reading only:
- live: a consumer group of its own (`<kafka.group_id>.shadow.<model>`) that commits its own offsets;
  the main group never sees it (Kafka keeps offsets per group).
- replay: partitions assigned by hand from a start (offset, or the first record at/after a time)
  to an end (offset, time, or the end of each partition when the replay starts); nothing committed.

Each frame goes through the edge's own decode → tile → detect → stitch → second look
(`edge.infer.detect_frame`, with the site's `grid.second_look`), and lands in
`shadow_frames` / `shadow_detections` tagged with the model's name (upsert per model, car, camera,
shot: a replay twice stores each frame once). When the shadow holds all of a car's expected
frames, the configured rules decide its verdict into `shadow_verdicts`. Nothing here writes the
main tables or commits the main group's offsets. A record that cannot be read or decoded is
counted and, when it names a frame, stored as an error row of the shadow (never stops the run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition
from sqlalchemy import Engine, delete, func, insert, select

from ..config import Settings
from ..detect import Detector
from ..detections import Detections
from ..edge.infer import detect_frame
from ..edge.prepare import CpuFramePreparer
from ..kafka.admin import consumer_config
from ..messages.contract import FrameMessage
from ..messages.errors import MessageError, error_kind
from ..rules.evaluate import RuleSet
from ..store.review_models import ShadowDetectionRow, ShadowFrameRow, ShadowVerdictRow
from ..tiling import TileGrid

log = logging.getLogger(__name__)


def shadow_group(main_group: str, model: str) -> str:
    """The shadow's own consumer group: never the main one."""
    return f"{main_group}.shadow.{model}"


@dataclass
class ShadowStats:
    frames: int = 0
    errors: int = 0
    unreadable: int = 0
    verdicts: int = 0
    partitions_done: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class ReplayRange:
    """Where a replay starts and ends: offsets (same for every partition) or times (ns since the epoch)."""

    from_offset: int | None = None
    to_offset: int | None = None  # exclusive
    since_ns: int | None = None
    until_ns: int | None = None


class ShadowStore:
    """Writes the shadow tables only (its own engine, its own transactions)."""

    def __init__(self, engine: Engine, model: str, class_names: dict[int, str], rules: RuleSet | None) -> None:
        self.engine = engine
        self.model = model
        self.class_names = class_names
        self.rules = rules

    def store(self, message: FrameMessage, detections: Detections | None, error: BaseException | None, ref: tuple) -> bool:
        """Replace this model's row of the frame; returns True when this completed the car for the shadow."""
        topic, partition, offset = ref
        now = datetime.now(timezone.utc)
        n = 0 if detections is None else len(detections)
        with self.engine.begin() as conn:
            key = (
                ShadowFrameRow.model == self.model,
                ShadowFrameRow.car_id == message.car_id,
                ShadowFrameRow.camera == message.camera,
                ShadowFrameRow.shot == message.shot,
            )
            old = conn.execute(select(ShadowFrameRow.id).where(*key)).scalar()
            if old is not None:
                conn.execute(delete(ShadowDetectionRow).where(ShadowDetectionRow.shadow_frame_id == old))
                conn.execute(delete(ShadowFrameRow).where(ShadowFrameRow.id == old))
            frame_id = conn.execute(
                insert(ShadowFrameRow)
                .values(
                    model=self.model, car_id=message.car_id, camera=message.camera, shot=message.shot, processed_at=now,
                    kafka_topic=topic, kafka_partition=partition, kafka_offset=offset,
                    error_kind=error_kind(error) if error else None, error=str(error)[:2000] if error else None,
                    detection_count=n,
                )
                .returning(ShadowFrameRow.id)
            ).scalar_one()  # fmt: skip
            if detections is not None and n:
                xyxy = detections.xyxy.astype(float)
                conn.execute(
                    insert(ShadowDetectionRow),
                    [
                        {
                            "shadow_frame_id": frame_id, "class_id": int(c), "class_name": self.class_names.get(int(c), f"class_{int(c)}"),
                            "score": float(s), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3],
                        }
                        for c, s, b in zip(detections.class_id.tolist(), detections.score.tolist(), xyxy.tolist(), strict=True)
                    ],
                )  # fmt: skip
            stored = conn.execute(
                select(func.count())
                .select_from(ShadowFrameRow)
                .where(ShadowFrameRow.model == self.model, ShadowFrameRow.car_id == message.car_id)
            ).scalar_one()
        return stored >= message.shots_per_car

    def decide(self, car_id: str) -> str | None:
        """The shadow's verdict of a car whose frames it holds, by the configured rules (None without rules)."""
        if self.rules is None:
            return None
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(
                    ShadowFrameRow.camera, ShadowDetectionRow.class_id, ShadowDetectionRow.score,
                    ShadowDetectionRow.x1, ShadowDetectionRow.y1, ShadowDetectionRow.x2, ShadowDetectionRow.y2,
                )
                .join(ShadowDetectionRow, ShadowDetectionRow.shadow_frame_id == ShadowFrameRow.id)
                .where(ShadowFrameRow.model == self.model, ShadowFrameRow.car_id == car_id)
            ).all()  # fmt: skip
            errors = conn.execute(
                select(func.count())
                .select_from(ShadowFrameRow)
                .where(ShadowFrameRow.model == self.model, ShadowFrameRow.car_id == car_id, ShadowFrameRow.error.is_not(None))
            ).scalar_one()
            table = np.asarray(rows, np.float64).reshape(len(rows), 7)
            if errors:
                verdict, reason, defects = "error", f"{errors} frames failed", 0
            else:
                outcome = self.rules.apply(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2], table[:, 3:7])
                decision = self.rules.decide(outcome)
                verdict, reason, defects = decision.verdict, decision.reason, decision.defects
            conn.execute(delete(ShadowVerdictRow).where(ShadowVerdictRow.model == self.model, ShadowVerdictRow.car_id == car_id))
            conn.execute(
                insert(ShadowVerdictRow).values(
                    model=self.model, car_id=car_id, verdict=verdict, rules_hash=self.rules.digest,
                    decided_at=datetime.now(timezone.utc), defects=defects, reason=reason,
                )
            )  # fmt: skip
        return verdict


class ShadowRunner:
    """Polls the frames topic (live group or replay range) and stores the candidate's results apart."""

    def __init__(self, settings: Settings, detector: Detector, store: ShadowStore, bootstrap: str, grid: TileGrid) -> None:
        self.settings = settings
        self.detector = detector
        self.store = store
        self.bootstrap = bootstrap
        self.grid = grid
        self.preparer = CpuFramePreparer(grid, 1)

    def handle(self, msg, stats: ShadowStats) -> None:
        """One polled record: read, detect on the edge's frame path, store apart, decide a completed car."""
        ref = (msg.topic(), msg.partition(), msg.offset())
        try:
            message = FrameMessage.from_kafka(msg)
        except MessageError as exc:
            stats.unreadable += 1
            log.warning("shadow: %s", exc)
            return
        detections: Detections | None = None
        error: BaseException | None = None
        try:
            batch = self.preparer.prepare(message)
            try:  # the edge's own frame path: detector call, stitching, second look (grid.second_look)
                detections = detect_frame(
                    self.detector.detect, batch, self.grid, self.settings.stitch, self.settings.grid.second_look
                )
            finally:
                self.preparer.release(batch)
        except (MessageError, ValueError) as exc:
            error = exc
            stats.errors += 1
        complete = self.store.store(message, detections, error, ref)
        stats.frames += 1
        if complete and self.store.decide(message.car_id) is not None:
            stats.verdicts += 1

    def _consumer(self, group: str) -> Consumer:
        return Consumer(
            consumer_config(self.bootstrap, self.settings.kafka, group_id=group, client_id=f"shadow-{self.store.model}")
        )

    def live(self, group: str, stop_when: Callable[[ShadowStats], bool], poll_s: float = 0.5) -> ShadowStats:
        """Consume as group `group` (never the main one), committing its own offsets after each stored frame."""
        if group == self.settings.kafka.group_id:
            raise ValueError(f"shadow group {group!r} is the edge's own group: the shadow needs a group of its own")
        stats = ShadowStats()
        consumer = self._consumer(group)
        try:
            consumer.subscribe([self.settings.kafka.topic])
            while not stop_when(stats):
                msg = consumer.poll(poll_s)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("shadow: %s", msg.error())
                    continue
                self.handle(msg, stats)
                consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()
        return stats

    def replay(self, group: str, span: ReplayRange, stop_when: Callable[[ShadowStats], bool] | None = None) -> ShadowStats:
        """Replay every partition over `span`, committing nothing; returns when each partition reached its end."""
        stats = ShadowStats()
        consumer = self._consumer(group)
        topic = self.settings.kafka.topic
        try:
            metadata = consumer.list_topics(topic, timeout=30)
            partitions = sorted(metadata.topics[topic].partitions)
            ends: dict[int, int] = {}
            starts: dict[int, int] = {}
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                starts[p], ends[p] = low, high
            if span.since_ns is not None:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, span.since_ns // 1_000_000) for p in partitions], timeout=30
                )
                starts.update({tp.partition: (tp.offset if tp.offset >= 0 else ends[tp.partition]) for tp in found})
            if span.until_ns is not None:
                found = consumer.offsets_for_times(
                    [TopicPartition(topic, p, span.until_ns // 1_000_000) for p in partitions], timeout=30
                )
                ends.update({tp.partition: min(ends[tp.partition], tp.offset) for tp in found if tp.offset >= 0})
            if span.from_offset is not None:
                starts = {p: max(starts[p], span.from_offset) for p in partitions}
            if span.to_offset is not None:
                ends = {p: min(ends[p], span.to_offset) for p in partitions}
            todo = {p for p in partitions if starts[p] < ends[p]}
            stats.partitions_done = set(partitions) - todo
            if not todo:
                return stats
            consumer.assign(
                [TopicPartition(topic, p, starts[p]) if p in todo else TopicPartition(topic, p, OFFSET_END) for p in partitions]
            )
            while todo and not (stop_when and stop_when(stats)):
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                p = msg.partition()
                if p not in todo:
                    continue
                if msg.offset() < ends[p]:
                    self.handle(msg, stats)
                if msg.offset() + 1 >= ends[p]:
                    todo.discard(p)
                    stats.partitions_done.add(p)
        finally:
            consumer.close()
        return stats


def open_shadow(settings: Settings, model: str, bootstrap: str, engine: Engine, *, path: Path | None = None) -> ShadowRunner:
    """The runner for candidate `model` under the site's settings (model.* replaced by the candidate's name)."""
    from ..detect import create_detector
    from ..detect.registry import load_spec
    from ..rules.verdict import verdict_writer

    candidate = settings.model_copy(update={"model": settings.model.model_copy(update={"name": model, "path": path})})
    detector = create_detector(candidate.model, candidate.detect)
    class_names = load_spec(model).class_names
    writer = verdict_writer(settings)  # the deployed rules, compiled for the candidate's classes below
    rules = RuleSet.compile(settings.inspection.rules, class_names) if writer is not None else None
    return ShadowRunner(
        settings, detector, ShadowStore(engine, model, class_names, rules), bootstrap, TileGrid.from_config(settings.grid)
    )
