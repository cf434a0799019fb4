"""Reviewed frames out: the COCO export round-trips through pycocotools (frames and tiles, images
linked not moved), and `eval --reviewed` scores the stored detections against the reviews, on a
real database written through the store's own path."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import text
from typer.testing import CliRunner

from inspection.cli import app as cli_app
from inspection.review.models import ReviewIn
from inspection.review.store import submit_review
from inspection.store import ResultStore, create_engine_for
from inspection.tiling import TileGrid
from tests.integration.dashboard_data import Populated, boxes_of, populate
from tests.integration.test_review_api import _verdicts

pytestmark = pytest.mark.timeout(300)
SIZE = (2700, 2100)


@pytest.fixture
def populated(store_db_url: str, tmp_path: Path) -> Populated:
    return populate(store_db_url, tmp_path / "images", time.time_ns())


def _review(url: str, frame_id: int, reject: set[int], missed: list[tuple[str, tuple]], when: datetime | None = None) -> None:
    """Review a frame: reject the boxes at the given ranks (score order), confirm the rest, draw `missed`."""
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    text("SELECT id FROM detections WHERE frame_id = :f ORDER BY score DESC, id"), {"f": frame_id}
                )
            ]
        body = ReviewIn.model_validate(
            {
                "decisions": [
                    {
                        "detection_id": d,
                        "decision": "reject" if k in reject else "confirm",
                        "reason_code": "false_positive" if k in reject else None,
                    }
                    for k, d in enumerate(ids)
                ],
                "missed": [{"class_name": name, "xyxy": box, "reason_code": "missed"} for name, box in missed],
            }
        )
        submit_review(engine, frame_id, "alice", body, score_threshold=0.3, default_size=SIZE, now=when)
    finally:
        engine.dispose()


def _reviewed(populated: Populated) -> dict[int, tuple[int, int, int]]:
    """Three reviewed frames; frame id -> (confirmed, rejected, drawn)."""
    a, b, c = (populated.frame_ids[k] for k in (("c-ok", 1, 0), ("c-late", 2, 1), ("c-ok", 0, 0)))
    _review(populated.url, a, {0}, [])
    _review(populated.url, b, set(), [("person", (2000.0, 1500.0, 2200.0, 1800.0))])
    _review(populated.url, c, {0, 1}, [("car", (10.0, 10.0, 320.0, 250.0))], when=datetime.now(timezone.utc) - timedelta(days=8))
    return {
        a: (len(boxes_of(1, 0)) - 1, 1, 0),
        b: (len(boxes_of(2, 1)), 0, 1),
        c: (len(boxes_of(0, 0)) - 2, 2, 1),
    }


def test_export_round_trips_through_pycocotools(populated: Populated, tmp_path: Path) -> None:
    expected = _reviewed(populated)
    out = tmp_path / "coco"
    result = CliRunner().invoke(
        cli_app, ["export", "--reviewed", str(out), "--db", populated.url, "--images", str(populated.images)]
    )
    assert result.exit_code == 0, result.output
    coco = COCO(str(out / "annotations" / "instances_default.json"))
    index = {int(line.split(",")[0]): int(line.split(",")[2]) for line in (out / "frames.csv").read_text().splitlines()[1:]}
    assert sorted(index.values()) == sorted(expected)
    for image_id, frame_id in index.items():
        image = coco.imgs[image_id]
        assert (image["width"], image["height"]) == SIZE
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        confirmed, _, drawn = expected[frame_id]
        assert len(anns) == confirmed + drawn
        assert [a["attributes"]["source"] for a in anns].count("drawn") == drawn
        path = out / "images" / image["file_name"]
        assert path.is_file() and path.stat().st_nlink >= 2  # a hard link: the store's file is still there
    names = {c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert names == {"person", "car", "bottle"} and min(coco.getCatIds()) == 1
    # the drawn person box of frame b comes out as xywh
    frame_b = next(fid for fid, exp in expected.items() if exp == (len(boxes_of(2, 1)), 0, 1))
    image_b = next(i for i, f in index.items() if f == frame_b)
    drawn_b = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_b])) if a["attributes"]["source"] == "drawn"]
    assert drawn_b[0]["bbox"] == [2000.0, 1500.0, 200.0, 300.0] and coco.cats[drawn_b[0]["category_id"]]["name"] == "person"
    # --since leaves out the review of eight days ago; an existing folder is refused with one error line
    recent = tmp_path / "recent"
    since = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    assert (
        CliRunner().invoke(cli_app, ["export", "--reviewed", str(recent), "--db", populated.url, "--since", since]).exit_code == 0
    )
    assert len(COCO(str(recent / "annotations" / "instances_default.json")).imgs) == 2
    again = CliRunner().invoke(cli_app, ["export", "--reviewed", str(out), "--db", populated.url])
    assert again.exit_code == 2 and "error:" in again.output and "not empty" in again.output


def test_export_tiles_clips_boxes_to_their_tiles(populated: Populated, tmp_path: Path) -> None:
    expected = _reviewed(populated)
    out = tmp_path / "tiles"
    result = CliRunner().invoke(
        cli_app, ["export", "--reviewed", str(out), "--tiles", "--db", populated.url, "--images", str(populated.images)]
    )
    assert result.exit_code == 0, result.output
    coco = COCO(str(out / "annotations" / "instances_default.json"))
    grid = TileGrid()
    assert len(coco.imgs) == len(expected) * grid.num_tiles
    for image in coco.imgs.values():
        assert (image["width"], image["height"]) == (grid.tile_size, grid.tile_size)
        for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= grid.tile_size + 1e-3 and y + h <= grid.tile_size + 1e-3 and w > 0 and h > 0
    # every corrected box is kept in at least one tile
    assert len(coco.anns) >= sum(confirmed + drawn for confirmed, _, drawn in expected.values())


def test_eval_reviewed_scores_the_stored_boxes_against_the_reviews(populated: Populated, tmp_path: Path) -> None:
    expected = _reviewed(populated)
    _verdicts(populated.url, c_ok="ok", c_late="ok")
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(cli_app, ["eval", "--reviewed", "--db", populated.url, "--json", str(report)])
    assert result.exit_code == 0, result.output
    (score,) = json.loads(report.read_text())
    tp, fp, fn = (sum(v[k] for v in expected.values()) for k in range(3))
    assert score["frames"] == 3 and score["frames_with_drawn"] == 2
    assert score["precision"] == pytest.approx(tp / (tp + fp)) and score["recall"] == pytest.approx(tp / (tp + fn))
    assert 0.0 < score["ap50"] < 1.0  # the drawn boxes are misses: AP below 1
    # both cars are "ok" and both got a drawn box: the review contradicts both verdicts
    assert score["cars"] == 2 and score["verdict_agreement"] == 0.0 and score["verdict_flips"] == ["c-late", "c-ok"]
    person = next(c for c in score["classes"] if c["class_name"] == "person")
    assert person["missed"] == 1 and person["recall"] < 1.0
    weekly = tmp_path / "weekly.json"
    assert (
        CliRunner().invoke(cli_app, ["eval", "--reviewed", "--weekly", "--db", populated.url, "--json", str(weekly)]).exit_code
        == 0
    )
    weeks = json.loads(weekly.read_text())
    assert len(weeks) == 2 and [w["frames"] for w in weeks] == [2, 1] and weeks[0]["label"] > weeks[1]["label"]
    assert np.isclose(sum(w["frames"] for w in weeks), score["frames"])


def test_eval_reviewed_without_reviews_says_so(populated: Populated) -> None:
    result = CliRunner().invoke(cli_app, ["eval", "--reviewed", "--db", populated.url])
    assert result.exit_code == 1 and "error:" in result.output and "no reviewed frames" in result.output
    with ResultStore(populated.url) as store, store.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM reviews")).scalar_one() == 0


def test_dashboard_shows_the_weekly_scores_with_their_frame_counts(populated: Populated, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from inspection.dashboard import DashboardConfig
    from inspection.dashboard.app import create_app

    _reviewed(populated)
    config = DashboardConfig(db_url=populated.url, images_dir=populated.images, thumbs_dir=tmp_path / "thumbs")
    with TestClient(create_app(config)) as client:
        weeks = client.get("/api/review/eval").json()
        assert [w["frames"] for w in weeks] == [2, 1]
        page = client.get("/review/eval")
        assert page.status_code == 200
        for week in weeks:
            assert f'data-week="{week["label"]}"' in page.text and f"{week['frames']} frames reviewed" in page.text
