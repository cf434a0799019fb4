"""Retention on SQLite and PostgreSQL: `inspection db prune` reports, then deletes, old rows and
the image files no kept frame references; the image directory comes from the run's row."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.analytics import AnalyticsReader
from inspection.cli import app
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.retention import parse_duration
from inspection.store import FrameRecord, ImageStore, ResultStore, upgrade_database
from tests.stored import rejected

S = 1_000_000_000
DAY = 86400 * S
runner = CliRunner()


def record(car: str, camera: int, run_id: int, captured_ns: int, image: bytes) -> FrameRecord:
    return FrameRecord(
        frame_id=FrameId(car, camera, 0, 2),
        captured_at_ns=captured_ns,
        deadline_at_ns=captured_ns + 60 * S,
        received_at_ns=captured_ns,
        processed_at_ns=captured_ns + S,
        run_id=run_id,
        image=image,
    )


def boxes(n: int) -> Detections:
    xy = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return Detections(np.concatenate([xy, xy + 10], 1), np.full(n, 0.9, np.float32), np.ones(n, np.int32), np.zeros(n, np.int32))


def test_parse_duration() -> None:
    assert parse_duration("30d").total_seconds() == 30 * 86400
    assert parse_duration("12h").total_seconds() == 43200 and parse_duration("1.5w").days == 10
    for bad in ("30", "d", "-1d", "0s", "3x", ""):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_prune_dry_run_then_delete_keeps_shared_images(store_db_url: str, tmp_path: Path) -> None:
    upgrade_database(store_db_url)
    images = tmp_path / "images"
    store = ResultStore(store_db_url, ImageStore(images))
    run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="t")
    now = time.time_ns()
    shared, old_only, new_only = b"\xff\xd8shared\xff\xd9", b"\xff\xd8old" + b"x" * 1000 + b"\xff\xd9", b"\xff\xd8new\xff\xd9"
    store.store_frame(record("car-old", 0, run_id, now - 40 * DAY, shared), boxes(3), {})
    store.store_frame(record("car-old", 1, run_id, now - 40 * DAY, old_only), boxes(2), {})
    store.store_frame(record("car-mid", 0, run_id, now - 10 * DAY, b"\xff\xd8mid\xff\xd9"), boxes(1), {})
    store.store_frame(record("car-new", 0, run_id, now - DAY, shared), boxes(1), {})
    store.store_frame(record("car-new", 1, run_id, now - DAY, new_only), boxes(1), {})
    store.store_rejected("frames", 0, 1, b"k", "bad_message", "old", now - 40 * DAY, run_id=run_id)
    store.store_rejected("frames", 0, 2, b"k", "bad_message", "new", now - DAY, run_id=run_id)
    with store.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT image_dir FROM runs")).scalar_one() == str(images.resolve())
    files_before = sorted(p.name for p in images.rglob("*.jpg"))
    assert len(files_before) == 4
    store.close()

    env = {"INSPECTION__STORE__IMAGE_DIR": str(tmp_path / "elsewhere"), "COLUMNS": "100"}  # the run's recorded dir wins
    dry = runner.invoke(app, ["db", "prune", "--older-than", "30d", "--db", store_db_url], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete (dry run)" in dry.output and "dry run: nothing deleted; add --yes to delete" in dry.output
    assert sorted(p.name for p in images.rglob("*.jpg")) == files_before
    table = {line.split()[0]: line.split()[1:] for line in dry.output.splitlines() if line.strip()}
    assert table["cars"] == ["1"] and table["frames"] == ["2"] and table["detections"] == ["5"] and table["rejected"] == ["1"]
    assert table["image"][:2] == ["files", "1"] and table["image"][2] == f"{len(old_only):,}"  # the shared one stays

    done = runner.invoke(app, ["db", "prune", "--older-than", "30d", "--db", store_db_url, "--yes"], env=env)
    assert done.exit_code == 0 and "deleted:" in done.output, done.output
    with ResultStore(store_db_url, ImageStore(images)) as after:
        with after.engine.connect() as conn:
            cars = conn.execute(text("SELECT car_id FROM cars ORDER BY car_id")).scalars().all()
        assert cars == ["car-mid", "car-new"]
        assert [m.error for m in rejected(after.engine)] == ["new"]
        counts = AnalyticsReader(after.engine).counts()
        assert (counts.frames, counts.detections) == (3, 3)
    assert len(list(images.rglob("*.jpg"))) == 3 and ImageStore.uri_for(old_only) not in ImageStore(images)

    # Images only: kept rows lose their image_uri, files referenced by newer frames stay.
    images_only = runner.invoke(app, ["db", "prune", "--images-older-than", "5d", "--db", store_db_url, "--yes"], env=env)
    assert images_only.exit_code == 0, images_only.output
    with ResultStore(store_db_url) as after:
        from sqlalchemy import text

        with after.engine.connect() as conn:
            uris = dict(conn.execute(text("SELECT car_id || ':' || camera, image_uri FROM frames")).all())
    assert uris["car-mid:0"] is None and uris["car-new:0"] is not None and uris["car-new:1"] is not None
    assert len(list(images.rglob("*.jpg"))) == 2


def test_prune_uses_configured_retention(sqlite_url: str, tmp_path: Path) -> None:
    upgrade_database(sqlite_url)
    with ResultStore(sqlite_url) as store:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="t")
        store.store_frame(record("car-old", 0, run_id, time.time_ns() - 3 * DAY, b"\xff\xd8x\xff\xd9"), boxes(1), {})
    result = runner.invoke(app, ["db", "prune", "--db", sqlite_url], env={"INSPECTION__RETENTION__ROWS_DAYS": "2"})
    assert result.exit_code == 0 and "would delete" in result.output
    assert [line.split()[1] for line in result.output.splitlines() if line.strip().startswith("cars")] == ["1"]
