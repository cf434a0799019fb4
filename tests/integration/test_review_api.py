"""The review API on a real database (SQLite file and PostgreSQL) through the real FastAPI app:
credentials on every host, the writer session, audit columns, the queue's order, XSS inert."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from inspection.config import ReviewConfig
from inspection.dashboard import DashboardConfig
from inspection.dashboard.app import create_app
from inspection.review.auth import Reviewers, hash_token
from inspection.store import ResultStore
from tests.integration.dashboard_data import CAMERAS, HOSTILE, Populated, boxes_of, populate

pytestmark = pytest.mark.timeout(300)
ALICE, BOB = "alice-token-" + "a" * 30, "bob-token-" + "b" * 30
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def populated(store_db_url: str, tmp_path: Path) -> Populated:
    return populate(store_db_url, tmp_path / "images", time.time_ns())


def _app(populated: Populated, tmp_path: Path, **options) -> TestClient:
    reviewers = Reviewers.parse(f"alice={hash_token(ALICE)}\nbob={hash_token(BOB)}")
    config = DashboardConfig(
        db_url=populated.url,
        images_dir=populated.images,
        thumbs_dir=tmp_path / "thumbs",
        cameras=CAMERAS,
        reviewers=reviewers,
        **options,
    )
    return TestClient(create_app(config))


@pytest.fixture
def client(populated: Populated, tmp_path: Path) -> Iterator[TestClient]:
    with _app(populated, tmp_path) as c:
        yield c


def _db(url: str, sql: str, **params) -> list:
    with ResultStore(url) as store, store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def _body(client: TestClient, frame_id: int, decision: str = "confirm", **extra) -> dict:
    frame = client.get(f"/api/review/frames/{frame_id}").json()
    decisions = [
        {
            "detection_id": b["detection_id"],
            "decision": decision,
            "reason_code": "false_positive" if decision == "reject" else None,
        }
        for b in frame["boxes"]
    ]
    return {"decisions": decisions, **extra}


def test_review_write_needs_a_reviewer_token_on_loopback_too(client: TestClient, populated: Populated) -> None:
    frame_id = populated.frame_ids["c-ok", 0, 0]
    body = _body(client, frame_id)
    assert client.post(f"/api/review/frames/{frame_id}", json=body).status_code == 401
    wrong = client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": "nope"})
    assert wrong.status_code == 401
    # the dashboard's token cookie or a query parameter is no reviewer credential
    assert client.post(f"/api/review/frames/{frame_id}?token={ALICE}", json=body).status_code == 401
    assert _db(populated.url, "SELECT COUNT(*) FROM reviews")[0][0] == 0
    ok = client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": ALICE})
    assert ok.status_code == 201, ok.text
    assert ok.json()["reviewer"] == "alice" and ok.json()["confirmed"] == len(boxes_of(0, 0))


def test_reviewing_is_off_without_reviewers(populated: Populated, tmp_path: Path) -> None:
    config = DashboardConfig(db_url=populated.url, images_dir=populated.images, thumbs_dir=tmp_path / "t", cameras=CAMERAS)
    with TestClient(create_app(config)) as client:
        frame_id = populated.frame_ids["c-ok", 0, 0]
        answer = client.post(f"/api/review/frames/{frame_id}", json={"decisions": []}, headers={"X-Review-Token": ALICE})
        assert answer.status_code == 403
        assert client.app.state.review_writer is None  # no writer engine at all


def test_review_is_stored_and_audited_and_detections_untouched(client: TestClient, populated: Populated) -> None:
    frame_id = populated.frame_ids["c-late", 1, 0]
    before = _db(populated.url, "SELECT id, class_id, score, x1, y1, x2, y2 FROM detections ORDER BY id")
    frame = client.get(f"/api/review/frames/{frame_id}").json()
    boxes = frame["boxes"]
    decisions = [
        {
            "detection_id": b["detection_id"],
            "decision": "reject" if k == 0 else "confirm",
            "reason_code": "wrong_class" if k == 0 else None,
        }
        for k, b in enumerate(boxes)
    ]
    body = {
        "decisions": decisions,
        "missed": [{"class_name": "person", "xyxy": [10, 20, 110, 220], "reason_code": "too_small"}],
        "note": "left door",
        "queue": "near",
    }
    answer = client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": BOB})
    assert answer.status_code == 201, answer.text
    out = answer.json()
    assert (out["reviewer"], out["confirmed"], out["rejected"], out["missed"]) == ("bob", len(boxes) - 1, 1, 1)
    (row,) = _db(populated.url, "SELECT frame_id, car_id, reviewer, model, queue, note, score_threshold FROM reviews")
    assert tuple(row) == (frame_id, "c-late", "bob", "ssd_mobilenet_v2_coco", "near", "left door", 0.3)
    decided = _db(populated.url, "SELECT detection_id, decision, reason_code FROM review_decisions ORDER BY detection_id")
    assert {(d[0], d[1], d[2]) for d in decided} == {(d["detection_id"], d["decision"], d["reason_code"]) for d in decisions}
    (drawn,) = _db(populated.url, "SELECT class_name, class_id, reason_code, x1, y1, x2, y2 FROM review_boxes")
    assert tuple(drawn) == ("person", 1, "too_small", 10, 20, 110, 220)
    assert _db(populated.url, "SELECT id, class_id, score, x1, y1, x2, y2 FROM detections ORDER BY id") == before
    again = client.get(f"/api/review/frames/{frame_id}").json()
    assert again["last_review"]["reviewer"] == "bob"
    assert [b["decision"] for b in again["boxes"]] == [d["decision"] for d in decisions]
    assert again["missed"][0]["class_name"] == "person"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda body: body["decisions"].pop(), 422),  # a box left undecided
        (lambda body: body["decisions"].append(dict(body["decisions"][0])), 422),  # decided twice
        (lambda body: body["decisions"][0].update(decision="reject", reason_code=None), 422),  # reject without reason
        (lambda body: body.update(missed=[{"class_name": "person", "xyxy": [0, 0, 5000, 10]}]), 422),  # outside
        (lambda body: body.update(missed=[{"class_name": "unicorn", "xyxy": [0, 0, 50, 10]}]), 422),  # no such class
    ],
)
def test_a_review_that_does_not_fit_its_frame_is_refused(client: TestClient, populated: Populated, change, status) -> None:
    frame_id = populated.frame_ids["c-ok", 2, 1]
    body = _body(client, frame_id)
    change(body)
    answer = client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": ALICE})
    assert answer.status_code == status, answer.text
    assert _db(populated.url, "SELECT COUNT(*) FROM reviews")[0][0] == 0


def test_xss_in_note_and_car_id_renders_as_text(client: TestClient, populated: Populated) -> None:
    frame_id = populated.frame_ids[HOSTILE[0], 0, 0]
    body = _body(client, frame_id, note=XSS)
    assert client.post(f"/api/review/frames/{frame_id}", json=body, headers={"X-Review-Token": ALICE}).status_code == 201
    page = client.get(f"/review/frames/{frame_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text  # the note, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # the hostile car id, escaped
    assert "script-src 'self'" in page.headers["content-security-policy"]


def _verdicts(url: str, **verdicts: str) -> None:
    """Car verdicts as issue 19's writer leaves them (rows of car_verdicts): exactly these, replacing what the
    populating store's own verdict writer decided (the test sets the verdicts the queue is checked against)."""
    with ResultStore(url) as store, store.engine.begin() as conn:
        conn.execute(text("DELETE FROM frame_defects"))
        conn.execute(text("DELETE FROM car_verdicts"))
        for car, verdict in verdicts.items():
            conn.execute(
                text(
                    "INSERT INTO car_verdicts (car_id, verdict, rules_hash, model, decided_at, defects, reason) "
                    "VALUES (:car, :verdict, 'rules-abc', 'ssd_mobilenet_v2_coco', :at, 0, 'test')"
                ),
                {"car": car.replace("_", "-"), "verdict": verdict, "at": datetime.now(timezone.utc)},
            )


def test_queue_puts_ng_cars_first_then_near_threshold_then_the_ok_sample(client: TestClient, populated: Populated) -> None:
    _verdicts(populated.url, c_partial="ng", c_ok="ok")
    queue = client.get("/api/review/queue").json()
    items = queue["items"]
    buckets = [item["queue"] for item in items]
    assert buckets == sorted(buckets, key=["ng", "near", "ok_sample"].index)
    assert [i["car_id"] for i in items if i["queue"] == "ng"] == ["c-partial"] * 3  # every frame of the NG car, first
    assert all(i["verdict"] == "ng" for i in items[:3])
    assert {i["car_id"] for i in items if i["queue"] == "ok_sample"} <= {"c-ok"}
    near = [i for i in items if i["queue"] == "near"]
    # boxes_of gives scores 0.95 - 0.1k floored at 0.3: frames with >= 7 boxes hold one below 0.4
    assert [(i["car_id"], i["camera"], i["shot"]) for i in near] == [("c-late", 4, 1)]
    first = items[0]["frame_id"]
    body = _body(client, first)
    seen = client.post(f"/api/review/frames/{first}", json=body, headers={"X-Review-Token": ALICE}).json()
    assert (seen["verdict_seen"], seen["rules_version"]) == ("ng", "rules-abc")
    assert _db(populated.url, "SELECT verdict_seen, rules_version FROM reviews") == [("ng", "rules-abc")]
    assert first not in [i["frame_id"] for i in client.get("/api/review/queue").json()["items"]]  # reviewed leave the queue
    page = client.get("/review")
    assert page.status_code == 200 and 'id="review-queue"' in page.text


def test_next_walks_each_bucket_in_the_queue_order_then_the_next_bucket(populated: Populated, tmp_path: Path) -> None:
    """Reviewing frame after frame with /api/review/next (a keyset from the frame just reviewed) takes
    exactly the frames of the whole queue, in its order, then answers null."""
    _verdicts(populated.url, c_partial="ng", c_ok="ok")
    with _app(populated, tmp_path, review=ReviewConfig(queue_size=1000)) as client:
        expected = [(i["frame_id"], i["queue"]) for i in client.get("/api/review/queue").json()["items"]]
        assert {q for _, q in expected} == {"ng", "near", "ok_sample"}
        head = client.get("/api/review/next", params={"after": expected[0][0], "queue": "direct"}).json()
        assert (head["frame_id"], head["queue"]) == expected[1]  # not a bucket: the queue's head, the frame left out
        walked = [expected[0]]
        while True:
            frame_id, queue = walked[-1]
            saved = client.post(
                f"/api/review/frames/{frame_id}", json=_body(client, frame_id, queue=queue), headers={"X-Review-Token": ALICE}
            )
            assert saved.status_code == 201, saved.text
            following = client.get("/api/review/next", params={"after": frame_id, "queue": queue})
            assert following.status_code == 200
            if following.json() is None:
                break
            walked.append((following.json()["frame_id"], following.json()["queue"]))
            assert len(walked) <= len(expected)
        assert walked == expected
        assert client.get("/api/review/queue").json()["items"] == []
        assert client.get("/api/review/next", params={"after": 10**9, "queue": "ng"}).json() is None  # unknown frame


def test_queue_mix_follows_the_settings(populated: Populated, tmp_path: Path) -> None:
    _verdicts(populated.url, c_partial="ng", c_ok="ok")
    mix = ReviewConfig(queue_size=4, ng_share=0.25, near_share=0.25, ok_share=0.5)
    with _app(populated, tmp_path, review=mix) as client:
        queue = client.get("/api/review/queue").json()
        assert len(queue["items"]) == 4
        assert queue["mix"] == {"ng": 1, "near": 1, "ok_sample": 2}
        again = client.get("/api/review/queue").json()
        assert again == queue  # the OK sample is stable from one load to the next
