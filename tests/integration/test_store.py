"""Results store on a real SQLite file and a real PostgreSQL database (fresh one per test)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from inspection.analytics import AnalyticsReader, NotFoundError
from inspection.config import StoreConfig
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.store import (
    DatabaseUnreachableError,
    FrameRecord,
    ImageStore,
    RecordRefused,
    ResultStore,
    create_engine_for,
    upgrade_database,
    wait_for_database,
)
from inspection.store.migrations import alembic_config
from inspection.store.models import MESSAGE_KEY_MAX, Base
from inspection.store.repository import datetime_from_ns
from tests.stored import frame_boxes, rejected

T0 = 1_700_000_000_000_000_000  # ns
S = 1_000_000_000
NAMES = {1: "person", 3: "car", 44: "bottle"}


def record(
    car_id: str,
    camera: int,
    shot: int,
    *,
    run_id: int,
    expected: int = 3,
    captured_s: float = 0.0,
    deadline_s: float = 60.0,
    processed_s: float = 1.0,
    offset: int = 0,
    **extra: object,
) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car_id, camera, shot, expected),
        captured_at_ns=T0 + int(captured_s * S),
        deadline_at_ns=T0 + int(deadline_s * S),
        received_at_ns=T0 + int((captured_s + 0.1) * S),
        processed_at_ns=T0 + int(processed_s * S),
        run_id=run_id,
        width=2700,
        height=2100,
        kafka_topic="frames",
        kafka_partition=camera,
        kafka_offset=offset,
        **extra,  # type: ignore[arg-type]
    )


def dets(n: int, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 2000, (n, 2)).astype(np.float32)
    wh = rng.uniform(5, 300, (n, 2)).astype(np.float32)
    return Detections(
        np.concatenate([xy, xy + wh], axis=1),
        rng.uniform(0.3, 1.0, n).astype(np.float32),
        rng.choice([1, 3, 44], n).astype(np.int32),
        rng.integers(0, 63, n).astype(np.int32),
    )


@pytest.fixture
def migrated_url(store_db_url: str) -> str:
    upgrade_database(store_db_url)
    return store_db_url


@pytest.fixture
def store(migrated_url: str) -> Iterator[ResultStore]:
    with ResultStore(migrated_url) as result_store:
        yield result_store


@pytest.fixture
def run_id(store: ResultStore) -> int:
    return store.start_run("ssd_mobilenet_v2_coco", "onnxruntime", "fp32", "abc123", host="test", consumer_id="c0")


def head_revision() -> str:
    """The newest revision shipped with the package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration scripts found next to inspection.store.migrations"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _schema_diff(url: str, metadata: sa.MetaData) -> list[object]:
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrations_create_the_schema_of_the_models(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    upgrade_database(store_db_url)  # idempotent: a second consumer starting finds head
    engine = create_engine_for(store_db_url)
    try:
        assert current_revision(engine) == head_revision()
        assert {"runs", "cars", "frames", "detections", "rejected_messages"} <= set(sa.inspect(engine).get_table_names())
        indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(engine).get_indexes("detections")}
        assert indexes["ix_detections_frame_id"] == ["frame_id"]
        assert indexes["ix_detections_class_id_score"] == ["class_id", "score"]
        uniques = {uq["name"]: uq["column_names"] for uq in sa.inspect(engine).get_unique_constraints("rejected_messages")}
        assert uniques == {
            "uq_rejected_messages_kafka_topic_kafka_partition_kafka_offset": ["kafka_topic", "kafka_partition", "kafka_offset"]
        }
    finally:
        engine.dispose()
    assert _schema_diff(store_db_url, Base.metadata) == []
    # The comparison does see a disagreement (guards against a check that cannot fail).
    drifted = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["frames"].append_column(sa.Column("extra_column", sa.Integer()))
    assert any(d[0] == "add_column" for d in _schema_diff(store_db_url, drifted))  # type: ignore[index]


def test_rejected_messages_migration_downgrades_and_upgrades_again(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    command.downgrade(alembic_config(store_db_url), "0001")
    engine = create_engine_for(store_db_url)
    try:
        assert current_revision(engine) == "0001"
        assert "rejected_messages" not in sa.inspect(engine).get_table_names()
        upgrade_database(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert _schema_diff(store_db_url, Base.metadata) == []


def test_overdue_migration_downgrades_and_upgrades_again(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    with ResultStore(store_db_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c", image_dir="/var/lib/inspection/images")
        store.store_frame(record("car-1", 0, 0, run_id=run_id), dets(1), NAMES)
    command.downgrade(alembic_config(store_db_url), "0002")
    engine = create_engine_for(store_db_url)
    try:
        assert current_revision(engine) == "0002"
        assert "overdue_at" not in {c["name"] for c in sa.inspect(engine).get_columns("cars")}
        assert "image_dir" not in {c["name"] for c in sa.inspect(engine).get_columns("runs")}
        upgrade_database(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    assert _schema_diff(store_db_url, Base.metadata) == []
    with ResultStore(store_db_url) as store:
        summary = AnalyticsReader(store.engine).car_row(
            "car-1", now=datetime_from_ns(T0)
        )  # rows kept through the round trip; new columns empty
        assert summary.frames_stored == 1 and summary.overdue_at is None and summary.verdict == "in_flight"


def test_rejected_message_is_recorded_once_per_kafka_position(store: ResultStore, run_id: int) -> None:
    bad_key = b"car-\xff\xfe\x00-7"  # not UTF-8, and a NUL PostgreSQL text cannot hold
    first = store.store_rejected("frames", 2, 41, bad_key, "headers", "missing header car_id", T0, run_id=run_id)
    assert AnalyticsReader(store.engine).counts().rejected == 1
    # A redelivery (by a consumer that passes no run) updates the one row: latest error and time, run kept.
    again = store.store_rejected("frames", 2, 41, bad_key, "schema", "unknown schema version 9", T0 + 5 * S)
    assert again == first
    other = store.store_rejected("frames", 1, 41, None, "headers", "camera header 'x' is not an integer", T0 + S)
    assert other != first
    newest, oldest = rejected(store.engine)
    assert [(m.kafka_partition, m.kafka_offset) for m in (newest, oldest)] == [(2, 41), (1, 41)]  # rows `first`, `other`
    assert newest.message_key == "car-\ufffd\ufffd\ufffd-7"
    assert (newest.error_kind, newest.error, newest.run_id) == ("schema", "unknown schema version 9", run_id)
    assert newest.received_at == datetime_from_ns(T0 + 5 * S) and newest.received_at.tzinfo is not None
    assert (newest.kafka_topic, newest.kafka_partition, newest.kafka_offset) == ("frames", 2, 41)
    assert (oldest.message_key, oldest.run_id, oldest.error_kind) == (None, None, "headers")
    assert [(m.kafka_partition, m.kafka_offset) for m in rejected(store.engine, limit=1)] == [(2, 41)]
    counts = AnalyticsReader(store.engine).counts()
    assert (counts.rejected, counts.frames, counts.cars) == (2, 0, 0)  # no frame row for a frameless message


def test_rejected_message_keys_are_cut_and_bad_input_refused(store: ResultStore) -> None:
    store.store_rejected("frames", 0, 3, "k" * 1000, "headers", "no camera header", T0)
    store.store_rejected("frames", 0, 4, "é" * 10, "headers", "no shot header", T0 + S)
    keys = [m.message_key for m in rejected(store.engine)]
    assert keys[0] == "é" * 10
    assert keys[1] is not None and len(keys[1]) == MESSAGE_KEY_MAX and keys[1].startswith("kkk")
    with pytest.raises(ValueError, match="error_kind"):
        store.store_rejected("frames", 0, 5, None, "x" * 33, "m", T0)
    with pytest.raises(ValueError, match="offset"):
        store.store_rejected("frames", 0, -1, None, "headers", "m", T0)
    with pytest.raises(ValueError, match="topic"):
        store.store_rejected("", 0, 5, None, "headers", "m", T0)
    with pytest.raises(RecordRefused, match="refused") as refused:
        store.store_rejected("frames", 0, 6, None, "headers", "m", T0, run_id=999)  # no such run
    assert isinstance(refused.value.__cause__, sa.exc.IntegrityError)
    assert AnalyticsReader(store.engine).counts().rejected == 2


def test_frame_and_detections_round_trip(store: ResultStore, run_id: int) -> None:
    boxes = dets(25, seed=1)
    stored = store.store_frame(record("car-1", 0, 0, run_id=run_id, processed_s=1.5), boxes, NAMES)
    assert (stored.detections, stored.replaced, stored.car_frames_done, stored.completed) == (25, False, 1, None)
    back = frame_boxes(store.engine, "car-1", 0, 0)
    order = np.argsort(-boxes.score, kind="stable")
    np.testing.assert_allclose(back.xyxy, boxes.xyxy[order], rtol=1e-6)
    np.testing.assert_allclose(back.score, boxes.score[order], rtol=1e-6)
    np.testing.assert_array_equal(back.class_id, boxes.class_id[order])
    np.testing.assert_array_equal(back.tile_index, boxes.tile_index[order])
    with store.engine.connect() as conn:
        names = dict(conn.execute(sa.text("SELECT DISTINCT class_id, class_name FROM detections")).all())
        latency = conn.execute(sa.text("SELECT latency_s FROM frames")).scalar_one()
    assert names == {int(c): NAMES[int(c)] for c in np.unique(boxes.class_id)}
    assert latency == pytest.approx(1.5)


def test_redelivered_frame_replaces_its_detections(store: ResultStore, run_id: int) -> None:
    first = store.store_frame(record("car-1", 2, 7, run_id=run_id, offset=10, expected=20), dets(30, seed=1), NAMES)
    store.store_frame(record("car-1", 2, 8, run_id=run_id, offset=11, expected=20), dets(5, seed=3), NAMES)
    second_boxes = dets(12, seed=2)
    again = store.store_frame(record("car-1", 2, 7, run_id=run_id, offset=10, processed_s=2.0, expected=20), second_boxes, NAMES)
    assert again.row_id == first.row_id
    assert again.replaced and again.detections == 12 and again.car_frames_done == 2
    back = frame_boxes(store.engine, "car-1", 2, 7)
    np.testing.assert_allclose(np.sort(back.score), np.sort(second_boxes.score), rtol=1e-6)
    assert len(frame_boxes(store.engine, "car-1", 2, 8).score) == 5  # the other frame is untouched
    counts = AnalyticsReader(store.engine).counts()
    assert (counts.frames, counts.detections) == (2, 17)


def test_car_completes_exactly_once_early_and_late(store: ResultStore, run_id: int) -> None:
    # early: deadline at 60 s, last frame processed at 3 s; late: deadline 2 s, last frame at 4.41 s
    for car_id, deadline_s in (("car-early", 60.0), ("car-late", 2.0)):
        results = [
            store.store_frame(
                record(car_id, cam, 0, run_id=run_id, deadline_s=deadline_s, captured_s=cam * 0.5, processed_s=1.0 + cam * 1.705),
                dets(4, seed=cam),
                NAMES,
            )
            for cam in range(3)
        ]
        assert [r.car_frames_done for r in results] == [1, 2, 3]
        assert [r.completed is not None for r in results] == [False, False, True]
    early, late = AnalyticsReader(store.engine).car_row("car-early"), AnalyticsReader(store.engine).car_row("car-late")
    assert early.deadline_met is True and early.lateness_s == pytest.approx(4.41 - 60.0)
    assert late.deadline_met is False and late.lateness_s == pytest.approx(4.41 - 2.0)
    # completed_at is the processed time of the car's last frame (UTC, microseconds)
    assert late.completed_at == datetime_from_ns(T0 + int((1.0 + 2 * 1.705) * S))
    assert late.completed_at is not None and late.completed_at.tzinfo is not None
    assert (late.frames_stored, late.frames_expected, late.errors, late.detections) == (3, 3, 0, 12)
    assert late.car_latency_s == pytest.approx(4.41)
    assert late.deadline_s == pytest.approx(2.0)
    assert late.max_frame_latency_s == pytest.approx(4.41 - 1.0)
    assert late.mean_frame_latency_s == pytest.approx(np.mean([1.0, 1.0 + 1.705 - 0.5, 4.41 - 1.0]))
    # A redelivery after completion changes nothing about completion.
    redelivered = store.store_frame(
        record("car-late", 1, 0, run_id=run_id, deadline_s=2.0, captured_s=0.5, processed_s=9.0), dets(1), NAMES
    )
    assert redelivered.completed is None and redelivered.car_frames_done == 3
    assert AnalyticsReader(store.engine).car_row("car-late").completed_at == late.completed_at
    again = AnalyticsReader(store.engine).car_row("car-late")
    assert again.deadline_met is False and again.lateness_s == pytest.approx(2.41)
    counts = AnalyticsReader(store.engine).counts()
    assert (counts.cars, counts.cars_completed, counts.cars_late) == (2, 2, 1)


def test_first_captured_at_is_the_earliest_frame_whatever_the_arrival_order(store: ResultStore, run_id: int) -> None:
    store.store_frame(record("car-9", 1, 0, run_id=run_id, captured_s=5.0, processed_s=6.0), dets(0), NAMES)
    store.store_frame(record("car-9", 0, 0, run_id=run_id, captured_s=1.0, processed_s=7.0), dets(0), NAMES)
    summary = AnalyticsReader(store.engine).car_row("car-9")
    assert summary.first_captured_at == datetime.fromtimestamp((T0 + S) / S, timezone.utc)
    assert summary.car_latency_s == pytest.approx(6.0)
    assert not summary.complete and summary.deadline_met is None


def test_error_rows_count_toward_completion_and_never_replace_a_result(store: ResultStore, run_id: int) -> None:
    store.store_frame(record("car-e", 0, 0, run_id=run_id, expected=2), dets(6), NAMES)
    err = store.store_error(
        record("car-e", 1, 0, run_id=run_id, expected=2, processed_s=2.0), "decode", "not a JPEG: starts with b'GIF8'"
    )
    assert err.error_kind == "decode" and err.detections == 0 and err.completed is not None
    summary = AnalyticsReader(store.engine).car_row("car-e")
    assert (summary.frames_stored, summary.errors, summary.detections, summary.deadline_met) == (2, 1, 6, True)
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT error, error_kind, detection_count FROM frames WHERE camera = 1")).one()
    assert tuple(row) == ("not a JPEG: starts with b'GIF8'", "decode", 0)
    # A failing redelivery of a frame that succeeded keeps the success.
    kept = store.store_error(record("car-e", 0, 0, run_id=run_id, expected=2), "detect", "CUDA out of memory")
    assert kept.error_kind is None and kept.detections == 6
    assert len(frame_boxes(store.engine, "car-e", 0, 0).score) == 6
    # A successful redelivery of the error frame replaces the error.
    fixed = store.store_frame(record("car-e", 1, 0, run_id=run_id, expected=2), dets(3, seed=5), NAMES)
    assert fixed.replaced and fixed.detections == 3 and fixed.completed is None
    assert AnalyticsReader(store.engine).car_row("car-e").errors == 0
    assert AnalyticsReader(store.engine).counts().frame_errors == 0


def test_image_bytes_go_to_the_image_store(migrated_url: str, tmp_path, run_id: int) -> None:
    images = ImageStore(tmp_path / "images")
    with ResultStore(migrated_url, image_store=images) as with_images:
        with_images.store_frame(record("car-i", 0, 0, run_id=run_id, image=b"\xff\xd8jpeg\xff\xd9"), dets(1), NAMES)
        png = b"\x89PNG\r\n\x1a\n-a-png-frame"
        with_images.store_frame(record("car-i", 1, 0, run_id=run_id, image=png), dets(1), NAMES)
        with with_images.engine.connect() as conn:
            jpeg_uri, png_uri = conn.execute(sa.text("SELECT image_uri FROM frames ORDER BY camera")).scalars()
    assert images.get(jpeg_uri) == b"\xff\xd8jpeg\xff\xd9" and jpeg_uri.endswith(".jpg")
    assert images.get(png_uri) == png and png_uri.endswith(".png")  # a PNG frame is not filed as .jpg


def test_reads_of_unknown_ids_and_bad_input_fail_clearly(store: ResultStore, run_id: int) -> None:
    with pytest.raises(NotFoundError, match="car-x"):
        AnalyticsReader(store.engine).car_row("car-x")
    bad = dets(2)
    bad.score[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.store_frame(record("car-n", 0, 0, run_id=run_id), bad, NAMES)
    with pytest.raises(ValueError, match="car_id"):
        record("x" * 65, 0, 0, run_id=run_id)
    assert AnalyticsReader(store.engine).counts().frames == 0


def _store_concurrently(url: str, jobs: list[FrameRecord]) -> list[object]:
    """Each job on its own thread with its own engine (as separate consumers), released together."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    def work(i: int) -> None:
        with ResultStore(url) as own:
            barrier.wait()
            try:
                results[i] = own.store_frame(jobs[i], dets(3, seed=i), NAMES)
            except Exception as exc:  # reported by the assertion below
                results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_concurrent_last_frames_complete_a_car_exactly_once(store: ResultStore, migrated_url: str, run_id: int) -> None:
    for n in range(8):
        car_id = f"car-{n:06d}"
        store.store_frame(record(car_id, 0, 0, run_id=run_id), dets(2), NAMES)
        results = _store_concurrently(migrated_url, [record(car_id, 1, 0, run_id=run_id), record(car_id, 2, 0, run_id=run_id)])
        assert not [r for r in results if isinstance(r, Exception)], results
        assert sum(r.completed is not None for r in results) == 1  # type: ignore[union-attr]
        summary = AnalyticsReader(store.engine).car_row(car_id)
        assert summary.complete and summary.frames_stored == 3 and summary.detections == 8
    assert AnalyticsReader(store.engine).counts().cars_completed == 8


@pytest.mark.postgres
def test_postgres_last_frames_waiting_on_the_car_lock_complete_it_once(postgres_url: str) -> None:
    """Both last frames are written and wait on the car row together; the second to get it completes the car."""
    upgrade_database(postgres_url)
    with ResultStore(postgres_url) as main:
        run = main.start_run("m", "b", "fp32", "h", host="t", consumer_id="c")
        main.store_frame(record("car-lock", 0, 0, run_id=run), dets(1), NAMES)
        blocker = main.engine.connect()
        transaction = blocker.begin()
        blocker.execute(sa.text("SELECT 1 FROM cars WHERE car_id = 'car-lock' FOR NO KEY UPDATE"))
        outcome: list[object] = []
        racer = threading.Thread(
            target=lambda: outcome.extend(
                _store_concurrently(postgres_url, [record("car-lock", 1, 0, run_id=run), record("car-lock", 2, 0, run_id=run)])
            )
        )
        racer.start()
        try:
            _wait_for_lock_waiters(main, 2)
        finally:
            transaction.commit()
            blocker.close()
        racer.join(timeout=120)
        assert not [r for r in outcome if isinstance(r, Exception)], outcome
        assert sorted(r.car_frames_done for r in outcome) == [2, 3]  # type: ignore[union-attr]
        assert sum(r.completed is not None for r in outcome) == 1  # type: ignore[union-attr]
        assert AnalyticsReader(main.engine).car_row("car-lock").complete


def _wait_for_lock_waiters(store: ResultStore, n: int, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    with store.engine.connect() as conn:
        while conn.execute(query).scalar_one() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} transactions ever waited on the car lock")
            conn.rollback()
            time.sleep(0.02)


def test_open_waits_migrates_and_attaches_images(tmp_path) -> None:
    config = StoreConfig(url=f"sqlite:///{tmp_path / 'sub' / 'r.db'}", image_dir=tmp_path / "img", connect_retries=0)
    with ResultStore.open(config) as opened:
        assert opened.image_store is not None and opened.image_store.root == (tmp_path / "img").resolve()
        assert AnalyticsReader(opened.engine).counts().runs == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_database_fails_after_retries_with_masked_url() -> None:
    port = _closed_port()
    engine = create_engine_for(f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{port}/test", connect_timeout_s=2)
    waits: list[float] = []
    with pytest.raises(DatabaseUnreachableError) as info:
        wait_for_database(engine, retries=2, backoff_s=0.01, sleep=waits.append)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "***" in message and "s3cret" not in message
    assert "3 attempt" in message
    assert waits == [0.01, 0.02]  # exponential backoff between the attempts
    with pytest.raises(DatabaseUnreachableError):
        wait_for_database(engine, retries=1, backoff_s=0.01)  # real sleep, still quick
    engine.dispose()


def test_unsupported_url_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="postgresql\\+psycopg"):
        create_engine_for("postgresql+psycopg2://u:pw@h/db")
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        create_engine_for("mysql://u@h/db")


def test_verdict_migration_downgrades_and_upgrades_again(store_db_url: str) -> None:
    upgrade_database(store_db_url)
    command.downgrade(alembic_config(store_db_url), "0004")
    engine = create_engine_for(store_db_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        assert current_revision(engine) == "0004"
        assert not {"car_verdicts", "frame_defects", "signal_outbox"} & tables
        upgrade_database(engine)
        assert {"car_verdicts", "frame_defects", "signal_outbox"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert _schema_diff(store_db_url, Base.metadata) == []
