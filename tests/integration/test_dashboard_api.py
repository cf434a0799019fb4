"""The dashboard's JSON API and pages on a real database (SQLite file and PostgreSQL), through the
real FastAPI app (TestClient), on data written by the store's own write path."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import simplejpeg
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from inspection.analytics import AnalyticsReader
from inspection.cli import app as cli_app
from inspection.config import load_settings
from inspection.dashboard import BindRefusedError, DashboardConfig, check_bind, is_loopback
from inspection.dashboard.app import create_app
from inspection.store import ImageStore, ResultStore
from tests.integration.dashboard_data import CAMERAS, HOSTILE, Populated, boxes_of, populate

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def populated(store_db_url: str, tmp_path: Path) -> Populated:
    return populate(store_db_url, tmp_path / "images", time.time_ns())


def _client(populated: Populated, tmp_path: Path, **options) -> TestClient:
    config = DashboardConfig(
        db_url=populated.url, images_dir=populated.images, thumbs_dir=tmp_path / "thumbs", cameras=CAMERAS, **options
    )
    return TestClient(create_app(config))


@pytest.fixture
def client(populated: Populated, tmp_path: Path) -> Iterator[TestClient]:
    with _client(populated, tmp_path) as c:
        yield c


def _db_boxes(url: str, frame_id: int, min_score: float = 0.0) -> int:
    with ResultStore(url) as store, store.engine.connect() as conn:
        return conn.execute(
            text("SELECT COUNT(*) FROM detections WHERE frame_id = :f AND score >= :s"), {"f": frame_id, "s": min_score}
        ).scalar_one()


def test_cars_api_gives_each_verdict_ng_first_then_newest_first(client: TestClient, populated: Populated) -> None:
    page = client.get("/api/cars").json()
    cars = {c["car_id"]: c for c in page["items"]}
    assert page["total"] == 6 == len(cars)
    assert [c["car_id"] for c in page["items"]][:2] == ["c-late", "c-fresh"]  # the NG car first, then newest first
    assert {k: c["verdict"] for k, c in cars.items()} == {
        "c-ok": "met",
        "c-late": "missed",
        "c-partial": "overdue",
        "c-fresh": "in_flight",
        HOSTILE[0]: "met",
        HOSTILE[1]: "met",
    }
    ok = cars["c-ok"]
    assert (ok["frames_stored"], ok["frames_expected"], ok["errors"]) == (10, 10, 1)
    assert ok["detections"] == sum(len(boxes_of(cam, shot)) for cam in range(5) for shot in range(2)) - len(boxes_of(4, 1))
    assert ok["lateness_s"] < 0 < cars["c-late"]["lateness_s"]
    assert cars["c-partial"]["completed_at"] is None and cars["c-partial"]["frames_stored"] == 3
    second = client.get("/api/cars", params={"page": 2, "per_page": 4}).json()
    assert [c["car_id"] for c in second["items"]] == [c["car_id"] for c in page["items"]][4:]


def test_inspection_verdicts_beside_the_deadline_verdict_with_a_filter(client: TestClient, populated: Populated) -> None:
    cars = {c["car_id"]: c for c in client.get("/api/cars").json()["items"]}
    assert {k: c["inspection"] for k, c in cars.items()} == {
        "c-ok": "error",  # one frame failed
        "c-late": "ng",  # a confident person on cameras 1-4 (camera 0's is in the ignore region)
        "c-partial": None,  # not decided: neither complete nor marked overdue
        "c-fresh": None,
        HOSTILE[0]: "ok",  # camera 0 only: the person is ignored, the car is no defect
        HOSTILE[1]: "ok",
    }
    assert cars["c-late"]["inspection_reason"] == "count reached: bottle 9 >= 3, person 8 >= 1"  # 2 shots × cameras 1-4
    ng = client.get("/api/cars", params={"verdict": "ng"}).json()
    assert (ng["total"], [c["car_id"] for c in ng["items"]]) == (1, ["c-late"])
    ok = client.get("/api/cars", params={"verdict": "ok"}).json()
    assert ok["total"] == 2 and {c["car_id"] for c in ok["items"]} == set(HOSTILE)
    assert client.get("/api/cars", params={"verdict": "maybe"}).status_code == 422
    page = client.get("/", params={"verdict": "ng"}).text
    assert 'data-car-id="c-late"' in page and 'data-car-id="c-ok"' not in page and 'class="verdict ng"' in page
    # The frame viewer's data: camera 0's person removed by the mask, camera 1's kept by the rule.
    masked = client.get(f"/api/frames/{populated.frame_ids['c-late', 0, 0]}/defects").json()
    assert masked["kept"] == [False] and masked["rule"] == ["ignore cam 0 corner"] and masked["class_name"] == ["person"]
    kept = client.get(f"/api/frames/{populated.frame_ids['c-late', 1, 0]}/defects").json()
    assert kept["kept"] == [True, True] and kept["class_name"] == ["person", "bottle"]
    assert kept["rule"] == ["person: score >= 0.9, size >= 0 px", "bottle: score >= 0.5, size >= 0 px"]
    assert client.get(f"/api/frames/{populated.frame_ids['c-fresh', 0, 0]}/defects").json()["kept"] == []
    assert client.get("/api/frames/999999/defects").status_code == 404


def test_headline_counts_today(client: TestClient, populated: Populated) -> None:
    headline = client.get("/api/line").json()
    assert headline["rejected_today"] == 1
    if populated.now.hour >= 2:  # every car was captured within the last two hours, i.e. today (UTC)
        assert headline["cars_today"] == 6 and headline["completed_today"] == 4
        assert headline["missed_today"] == 1 and headline["overdue_today"] == 1
        assert headline["miss_rate_today"] == pytest.approx(2 / 5)  # (missed + overdue) / (completed + overdue)
        assert headline["parked_frames_today"] == 1


def test_car_grid_has_every_camera_and_shot(client: TestClient, populated: Populated) -> None:
    detail = client.get("/api/cars/c-partial").json()
    assert (detail["cameras"], detail["shots"]) == (5, 2)
    states = {(c["camera"], c["shot"]): c["state"] for c in detail["cells"]}
    assert len(states) == 10
    assert [k for k, s in states.items() if s == "stored"] == [(0, 0), (1, 0), (2, 1)]
    assert sum(s == "missing" for s in states.values()) == 7
    ok = client.get("/api/cars/c-ok").json()
    error = [c for c in ok["cells"] if c["state"] == "error"]
    assert [(c["camera"], c["shot"], c["error_kind"]) for c in error] == [(4, 1, "decode")]
    assert client.get("/api/cars/no-such-car").status_code == 404


def test_frame_boxes_are_the_stored_ones(client: TestClient, populated: Populated) -> None:
    frame_id = populated.frame_ids["c-late", 3, 1]
    boxes = client.get(f"/api/frames/{frame_id}/detections").json()
    expected = boxes_of(3, 1)
    assert len(boxes["score"]) == len(expected) == _db_boxes(populated.url, frame_id)
    assert boxes["score"] == sorted(boxes["score"], reverse=True)
    assert sorted(boxes["class_name"]) == sorted({1: "person", 3: "car", 44: "bottle"}[c] for c in expected.class_id.tolist())
    assert boxes["xyxy"][0] == pytest.approx(expected.xyxy[0].tolist())
    meta = client.get(f"/api/frames/{frame_id}").json()
    assert (meta["car_id"], meta["camera"], meta["shot"], meta["consumer_id"]) == ("c-late", 3, 1, "h:1")
    assert meta["kafka_offset"] == 107 and meta["has_image"]


def test_images_by_frame_id_and_thumbnails(client: TestClient, populated: Populated, tmp_path: Path) -> None:
    frame_id = populated.frame_ids["c-ok", 2, 0]
    original = client.get(f"/frames/{frame_id}/image.jpg")
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    with ResultStore(populated.url) as store, store.engine.connect() as conn:
        uri = conn.execute(text("SELECT image_uri FROM frames WHERE id = :f"), {"f": frame_id}).scalar_one()
    assert original.content == ImageStore(populated.images).get(uri)
    thumb = client.get(f"/frames/{frame_id}/thumb.jpg?w=160")
    height, width, _, _ = simplejpeg.decode_jpeg_header(thumb.content)
    assert (width, height) == (160, 124) and len(thumb.content) < len(original.content) / 20
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].name.startswith(uri.split("/")[-1].split(".")[0])
    assert client.get(f"/frames/{frame_id}/thumb.jpg?w=161").status_code == 422
    assert client.get("/frames/999999/image.jpg").status_code == 404
    # the request never names a path: nothing but a frame id reaches the image store
    assert client.get("/frames/..%2F..%2Fetc%2Fpasswd/image.jpg").status_code in (404, 422)


def test_car_page_transfers_at_most_3_mb(client: TestClient, populated: Populated) -> None:
    page = client.get("/cars/c-ok")
    assert page.status_code == 200
    thumbs = [f"/frames/{populated.frame_ids['c-ok', cam, shot]}/thumb.jpg?w=160" for cam in range(5) for shot in range(2)]
    for url in thumbs:
        assert url.replace("&", "&amp;").split("?")[0] in page.text
    per_thumb = max(len(client.get(url).content) for url in thumbs)
    static = sum(len(client.get(p).content) for p in ("/static/style.css", "/static/app.js"))
    # a whole car is 95 thumbnails: the bound holds for the largest thumbnail of these real frames
    assert len(page.content) * 95 / 10 + 95 * per_thumb + static <= 3 * 2**20


def test_detection_filters_change_the_counts(client: TestClient, populated: Populated) -> None:
    everything = client.get("/api/detections", params={"since": "all"}).json()
    with ResultStore(populated.url) as store:
        assert everything["total"] == AnalyticsReader(store.engine).counts().detections
    by_class = {c["class_name"]: c["boxes"] for c in everything["counts"]}
    assert set(by_class) == {"person", "car", "bottle"} and sum(by_class.values()) == everything["total"]
    person = client.get("/api/detections", params={"since": "all", "class_name": "person"}).json()
    assert person["total"] == by_class["person"] and set(person["rows"]["class_name"]) == {"person"}
    strict = client.get("/api/detections", params={"since": "all", "min_score": "0.8"}).json()
    assert 0 < strict["total"] < everything["total"] and min(strict["rows"]["score"]) >= 0.8
    camera = client.get("/api/detections", params={"since": "all", "car_id": "c-ok", "camera": "4"}).json()
    assert camera["total"] == len(boxes_of(4, 0))  # shot 1 of camera 4 is an error row
    window = client.get("/api/detections", params={"since": populated.now.isoformat()}).json()
    assert window["total"] == 0
    first = client.get("/api/detections", params={"since": "all", "per_page": 5}).json()
    second = client.get("/api/detections", params={"since": "all", "per_page": 5, "page": 2}).json()
    assert first["has_next"] and not set(first["rows"]["id"]) & set(second["rows"]["id"])
    assert client.get("/api/detections", params={"camera": "two"}).status_code == 422
    assert client.get("/api/detections", params={"since": "yesterday"}).status_code == 422


def test_csv_export_streams_every_matching_row(client: TestClient, populated: Populated) -> None:
    with client.stream("GET", "/api/detections.csv", params={"since": "all", "class_name": "car"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        body = b"".join(response.iter_bytes()).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    total = client.get("/api/detections", params={"since": "all", "class_name": "car"}).json()["total"]
    assert len(rows) == total > 0 and {r["class_name"] for r in rows} == {"car"}
    assert {r["car_id"] for r in rows} >= {"c-ok", "c-late"}


def test_problems_name_reason_time_and_position(client: TestClient) -> None:
    problems = client.get("/api/problems").json()
    (error,) = problems["error_frames"]
    assert (error["car_id"], error["camera"], error["shot"], error["error_kind"]) == ("c-ok", 4, 1, "decode")
    assert (error["kafka_topic"], error["kafka_partition"], error["kafka_offset"]) == ("frames", 4, 109)
    (rejected,) = problems["rejected"]
    assert (rejected["kafka_topic"], rejected["kafka_partition"], rejected["kafka_offset"]) == ("frames", 3, 4242)
    assert rejected["error"] == "no car_id header <img src=x>"


@pytest.mark.parametrize("path", ["/", "/problems", "/detections?since=all", "/cars/c-ok"])
def test_pages_escape_database_text(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "<img src=x>" not in page.text and "<b>bad</b>" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    if path == "/":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "x&#39;; DROP TABLE frames;--" in page.text
        assert "/cars/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in page.text


def test_hostile_car_ids_are_just_ids(client: TestClient, populated: Populated) -> None:
    for car in HOSTILE:
        detail = client.get(f"/api/cars/{car}").json()
        assert detail["car"]["car_id"] == car and detail["car"]["verdict"] == "met"
        assert client.get("/cars/" + car.replace("/", "%2F")).status_code == 200
    with ResultStore(populated.url) as store:
        assert AnalyticsReader(store.engine).counts().frames == 10 + 10 + 3 + 2 + 1  # the frames table is still there


def test_database_is_opened_read_only(client: TestClient) -> None:
    engine = client.app.state.reader.engine
    with pytest.raises(Exception, match="(?i)read.?only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM rejected_messages"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM rejected_messages")).scalar_one() == 1


def test_no_endpoint_writes(client: TestClient) -> None:
    methods = {m for route in client.app.routes for m in getattr(route, "methods", set())}
    assert methods <= {"GET", "HEAD"}, methods
    assert client.post("/api/cars").status_code == 405
    assert client.delete("/api/cars/c-ok").status_code == 405


def test_openapi_and_docs_are_served_locally(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/api/cars",
        "/api/line",
        "/api/detections",
        "/api/detections.csv",
        "/api/problems",
        "/api/frames/{frame_id}/detections",
    } <= set(spec["paths"])
    docs = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    for page in ("/", "/cars/c-ok", "/problems", "/detections"):
        html = client.get(page).text
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html


def test_token_is_checked_on_every_request(populated: Populated, tmp_path: Path) -> None:
    with _client(populated, tmp_path, token="s3cret") as c:
        for path in (
            "/",
            "/api/cars",
            "/static/app.js",
            "/docs",
            "/openapi.json",
            "/api/detections.csv",
            f"/frames/{populated.frame_ids['c-ok', 0, 0]}/image.jpg",
        ):
            assert c.get(path).status_code == 401, path
        assert c.get("/api/cars", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/cars", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/cars", headers={"X-Inspection-Token": "s3cret"}).status_code == 200
        first = c.get("/cars/c-ok?token=s3cret&x=1", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/cars/c-ok?x=1"
        assert "inspection_token=s3cret" in first.headers["set-cookie"] and "httponly" in first.headers["set-cookie"].lower()
        assert c.get("/cars/c-ok").status_code == 200  # the cookie now carries it


def test_non_loopback_bind_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("plant-host")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(BindRefusedError, match="--token"):
        check_bind("0.0.0.0", None)
    result = CliRunner().invoke(
        cli_app,
        ["dashboard", "--host", "0.0.0.0", "--db", "sqlite:///nowhere.db"],
        env={"COLUMNS": "200", "INSPECTION_DASHBOARD_TOKEN": ""},
    )
    assert result.exit_code == 2 and result.output.startswith("error: --host 0.0.0.0") and "--token" in result.output


def test_dashboard_options_are_settings_and_flags_override_them(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "INSPECTION__DASHBOARD__PORT": "9001",
            "INSPECTION__LINE__CAMERAS": "3",
            "INSPECTION__STORE__URL": "sqlite:///r.db",
        }
    )
    config = DashboardConfig.from_settings(settings)
    assert (config.port, config.host, config.cameras, config.db_url) == (9001, "127.0.0.1", 3, "sqlite:///r.db")
    assert config.score_threshold == settings.detect.score_threshold and config.thumbs.name == "thumbnails"
    assert DashboardConfig.from_settings(settings, port=0, thumbs_dir=tmp_path).thumbs == tmp_path
    # the section's host, from the environment, is checked like the flag's
    result = CliRunner().invoke(
        cli_app,
        ["dashboard", "--db", "sqlite:///nowhere.db"],
        env={"COLUMNS": "200", "INSPECTION__DASHBOARD__HOST": "0.0.0.0", "INSPECTION_DASHBOARD_TOKEN": ""},
    )
    assert result.exit_code == 2 and result.output.startswith("error: --host 0.0.0.0") and "--token" in result.output


def test_dashboard_command_explains_a_missing_database(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["dashboard", "--db", f"sqlite:///{tmp_path / 'none.db'}"], env={"COLUMNS": "200"})
    assert (
        result.exit_code == 2 and result.output.startswith("error: no SQLite database at") and "inspection demo" in result.output
    )


def test_charts_series_follow_the_data(client: TestClient, populated: Populated) -> None:
    charts = client.get("/api/line/charts", params={"window_s": 7200}).json()
    assert charts["cars"]["car_id"][-1] == "c-fresh" and len(charts["cars"]["car_id"]) == 6
    boxes = charts["classes"]["boxes"]
    with ResultStore(populated.url) as store:
        assert sum(sum(v) for v in boxes.values()) == AnalyticsReader(store.engine).counts().detections
    latency = charts["latency"]
    assert sum(latency["frames"]) == 10 + 10 + 3 + 2 + 1 - 1  # frames stored without error
    assert all(p50 <= p99 for p50, p99 in zip(latency["p50_s"], latency["p99_s"]) if p50 is not None)
    assert "<svg" in client.get("/").text
