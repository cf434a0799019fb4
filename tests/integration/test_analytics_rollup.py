"""The reader's in-memory rollup of boxes per (capture minute, class) stays equal to counting the
detections table, through new frames, a redelivered frame with other boxes, a frame of an old
minute stored late and a deleted frame (SQLite file and PostgreSQL, written through ResultStore)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import text

from inspection.analytics import AnalyticsReader, DetectionFilter, open_readonly_engine
from inspection.analytics.rollup import MinuteClassRollup
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.store import FrameRecord, ResultStore

S_NS = 10**9
NAMES = {1: "person", 3: "car", 44: "bottle"}

pytestmark = pytest.mark.timeout(300)


def _boxes(classes: list[int], score: float = 0.9) -> Detections:
    n = len(classes)
    xyxy = np.tile(np.array([10, 10, 50, 60], np.float32), (n, 1))
    return Detections(xyxy, np.full(n, score, np.float32), np.array(classes, np.int32), np.full(n, -1, np.int32))


def _exact(reader: AnalyticsReader, since: datetime, class_name: str | None = None) -> list:
    """The same counts through SQL: an `until` in the far future keeps the rollup out of it."""
    return reader.class_counts(
        DetectionFilter(since=since, until=datetime(2100, 1, 1, tzinfo=timezone.utc), class_name=class_name)
    )


def test_rollup_counts_equal_the_table_through_changes(store_db_url: str) -> None:
    now_ns = (time.time_ns() // (60 * S_NS)) * 60 * S_NS - 30 * 60 * S_NS  # a whole minute, half an hour ago
    from inspection.config import StoreConfig

    store = ResultStore.open(StoreConfig(url=store_db_url, image_dir=None))
    run_id = store.start_run("m", "onnxruntime", "fp32", "x", host="h", consumer_id="h:1")

    def put(
        car: str,
        cam: int,
        minute: int,
        second: int,
        classes: list[int],
        processed_delay_s: int = 2,
        processed_ns: int | None = None,
    ) -> None:
        captured = now_ns + minute * 60 * S_NS + second * S_NS
        record = FrameRecord(
            FrameId(car, cam, 0, 5),
            captured,
            captured + 600 * S_NS,
            captured + S_NS // 10,
            processed_ns or captured + processed_delay_s * S_NS,
            run_id,
        )
        store.store_frame(record, _boxes(classes), NAMES)

    put("a", 0, 0, 0, [1, 1, 3])  # exactly on a minute edge
    put("a", 1, 0, 59, [3, 44])  # last second of that minute
    put("a", 2, 1, 0, [1])
    put("b", 0, 5, 30, [44, 44, 44, 1])
    engine = open_readonly_engine(store_db_url)
    try:
        reader = AnalyticsReader(engine, rollup=MinuteClassRollup(margin_s=60))
        since = datetime.fromtimestamp(now_ns / 1e9, tz=timezone.utc)
        assert since.second == 0
        first = reader.class_counts(DetectionFilter(since=since))
        assert first == _exact(reader, since)
        assert {c.class_name: c.boxes for c in first} == {"person": 4, "car": 2, "bottle": 4}
        later = since + timedelta(minutes=1)
        assert reader.class_counts(DetectionFilter(since=later)) == _exact(reader, later)
        assert reader.class_counts(DetectionFilter(since=since, class_name="bottle")) == _exact(reader, since, "bottle")

        # a new frame, a redelivery of an old frame with other boxes, an old minute's frame stored late
        processed_now = time.time_ns()
        put("b", 1, 6, 10, [3, 3])
        put("a", 0, 0, 0, [44], processed_ns=processed_now)
        put("c", 4, 2, 15, [1, 1, 1], processed_ns=processed_now)
        updated = reader.class_counts(DetectionFilter(since=since))
        assert updated == _exact(reader, since)
        assert {c.class_name: c.boxes for c in updated} == {"person": 5, "car": 3, "bottle": 5}

        # an earlier start than anything loaded: counted from there
        earlier = since - timedelta(minutes=10)
        put("z", 0, -5, 0, [3], processed_ns=time.time_ns())
        assert reader.class_counts(DetectionFilter(since=earlier)) == _exact(reader, earlier)

        # rows deleted behind the reader's back are seen once the rollup is older than max_age_s
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM detections WHERE frame_id IN (SELECT id FROM frames WHERE car_id = 'b')"))
        reader.rollup.max_age_s = 0.0
        assert reader.class_counts(DetectionFilter(since=earlier)) == _exact(reader, earlier)

        # the line page's class chart (whole-minute bins once the data spans 40 minutes) from the rollup
        put("y", 0, -40, 0, [1, 3], processed_ns=time.time_ns())
        charts = reader.charts(window_s=3 * 3600)
        totals: dict[str, int] = {}
        for name, per_bin in charts.classes.boxes.items():
            totals[name] = sum(per_bin)
        assert charts.classes.bins.width_s % 60 == 0
        assert totals == {c.class_name: c.boxes for c in _exact(reader, since - timedelta(hours=1))}
    finally:
        engine.dispose()
        store.close()
