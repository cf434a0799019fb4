"""The review flow in a real headless Chromium (Debian chromium + chromedriver via Selenium) on a
database written through the store's own write path with real JPEG frames: token, queue, keyboard
(j/k/c/r/a/b/n), a drawn missed box, save and next, what the database then holds, XSS inert.
Screenshots go to $INSPECTION_SCREENSHOTS or a temporary folder."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from inspection.dashboard import DashboardConfig, DashboardServer
from inspection.review.auth import Reviewers, hash_token
from inspection.store import ResultStore
from tests.integration.dashboard_data import CAMERAS, HOSTILE, Populated, boxes_of, populate
from tests.integration.test_dashboard_browser import _browser_or_skip, _css, _no_alert, _screenshot, _wait, browser, shots
from tests.integration.test_review_api import _verdicts

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
__all__ = ["browser", "shots"]  # fixtures shared with the dashboard's browser tests
TOKEN = "reviewer-token-" + "z" * 30
XSS = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    _browser_or_skip()
    root = tmp_path_factory.mktemp("review-db")
    data = populate(f"sqlite:///{root / 'results.db'}", root / "images", time.time_ns())
    _verdicts(data.url, c_partial="ng", c_ok="ok")
    return data


@pytest.fixture(scope="module")
def dashboard(populated: Populated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    config = DashboardConfig(
        db_url=populated.url,
        images_dir=populated.images,
        port=0,
        cameras=CAMERAS,
        thumbs_dir=tmp_path_factory.mktemp("thumbs"),
        reviewers=Reviewers.parse(f"carol={hash_token(TOKEN)}"),
    )
    with DashboardServer(config) as server:
        yield server


def _db(populated: Populated, sql: str, **params) -> list:
    with ResultStore(populated.url) as store, store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def _sign_in(browser, dashboard) -> None:
    browser.get(dashboard.url + "/review")
    _css(browser, "#review-token")[0].send_keys(TOKEN)
    _css(browser, "#review-token-use")[0].click()
    _wait(browser, lambda d: _css(d, "#reviewer-name")[0].get_attribute("data-signed-in") == "true")
    assert _css(browser, "#reviewer-name")[0].text == "reviewing as carol"


def _frame_in_url(url: str) -> int | None:
    match = re.search(r"/review/frames/(\d+)(?:\?|$)", url)
    return int(match.group(1)) if match else None


def _selected(browser) -> int:
    items = _css(browser, "#review-list li")
    return [k for k, li in enumerate(items) if "sel" in li.get_attribute("class").split()][0]


def test_review_a_frame_with_the_keyboard_then_the_next(browser, dashboard, populated: Populated, shots: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    _sign_in(browser, dashboard)
    rows = _css(browser, "#review-queue tbody tr")
    assert [r.get_attribute("data-queue") for r in rows[:4]] == ["ng", "ng", "ng", "near"]  # the NG car's frames first
    first = int(rows[0].get_attribute("data-frame-id"))
    _screenshot(browser, shots / "review-queue.png")
    rows[0].find_element("css selector", "a.review-link").click()
    _wait(browser, lambda d: _css(d, "#review-viewer") and _css(d, "#review-viewer")[0].get_attribute("data-loaded") == "true")
    n_boxes = len(_db(populated, "SELECT id FROM detections WHERE frame_id = :f", f=first))
    assert len(_css(browser, "#review-list li")) == n_boxes == len(_css(browser, "#review-boxes g.rbox.undecided")) > 2
    body = _css(browser, "body")[0]
    Select(_css(browser, "#reject-reason")[0]).select_by_value("wrong_class")
    body.click()
    body.send_keys("r")  # reject box 1 with the chosen reason; the selection moves on
    assert _selected(browser) == 1
    body.send_keys("k")
    assert _selected(browser) == 0
    body.send_keys("j", "j")
    assert _selected(browser) == 2
    body.send_keys("c")  # confirm box 3
    body.send_keys("a")  # confirm the rest
    assert browser.find_element("css selector", "#review-viewer").get_attribute("data-decided") == str(n_boxes)
    assert len(_css(browser, "#review-boxes g.rbox.reject")) == 1
    body.send_keys("b")  # draw a missed box by dragging over the image
    overlay = _css(browser, "#review-overlay")[0]
    ActionChains(browser).move_to_element_with_offset(overlay, -200, -150).click_and_hold().move_by_offset(
        120, 90
    ).release().perform()
    _wait(browser, lambda d: len(_css(d, "#missed-boxes g.missed")) == 1)
    _screenshot(browser, shots / "review-frame.png")
    body.send_keys("n")  # save and next
    _wait(browser, lambda d: _frame_in_url(d.current_url) not in (None, first))
    (review,) = _db(populated, "SELECT id, reviewer, queue FROM reviews WHERE frame_id = :f", f=first)
    assert (review.reviewer, review.queue) == ("carol", "ng")
    decisions = _db(
        populated, "SELECT decision, reason_code FROM review_decisions WHERE review_id = :r ORDER BY score DESC", r=review.id
    )
    assert [tuple(d) for d in decisions] == [("reject", "wrong_class")] + [("confirm", None)] * (n_boxes - 1)
    (drawn,) = _db(populated, "SELECT class_name, x1, y1, x2, y2 FROM review_boxes WHERE review_id = :r", r=review.id)
    assert drawn.class_name == "person"  # the missed-class select's first entry (COCO order)
    width, height = 2700, 2100
    assert 0 <= drawn.x1 < drawn.x2 <= width and 0 <= drawn.y1 < drawn.y2 <= height and drawn.x2 - drawn.x1 > 50
    assert first not in [r[0] for r in _db(populated, "SELECT frame_id FROM reviews WHERE frame_id != :f", f=first)]


def test_without_a_token_nothing_is_saved(browser, dashboard, populated: Populated) -> None:
    browser.get(dashboard.url + "/review")
    browser.execute_script("sessionStorage.clear()")
    frame_id = populated.frame_ids["c-ok", 0, 0]
    browser.get(f"{dashboard.url}/review/frames/{frame_id}")
    _wait(browser, lambda d: _css(d, "#review-viewer")[0].get_attribute("data-loaded") == "true")
    body = _css(browser, "body")[0]
    body.send_keys("a", "n")
    _wait(browser, lambda d: "token" in _css(d, "#review-status")[0].text)
    assert _db(populated, "SELECT COUNT(*) FROM reviews WHERE frame_id = :f", f=frame_id)[0][0] == 0
    assert len(boxes_of(0, 0)) == len(_css(browser, "#review-list li"))


def test_hostile_note_and_car_id_stay_text(browser, dashboard, populated: Populated) -> None:
    _sign_in(browser, dashboard)
    frame_id = populated.frame_ids[HOSTILE[0], 0, 0]
    browser.get(f"{dashboard.url}/review/frames/{frame_id}")
    _wait(browser, lambda d: _css(d, "#review-viewer")[0].get_attribute("data-loaded") == "true")
    _css(browser, "#review-note")[0].send_keys(XSS)
    _css(browser, "body")[0].click()
    browser.execute_script("document.activeElement.blur()")
    _css(browser, "body")[0].send_keys("a")
    browser.find_element("css selector", "#save-next").click()
    _wait(browser, lambda d: _frame_in_url(d.current_url) != frame_id)
    browser.get(f"{dashboard.url}/review/frames/{frame_id}")
    _wait(browser, lambda d: _css(d, "#review-viewer")[0].get_attribute("data-loaded") == "true")
    assert _css(browser, "#review-note")[0].get_attribute("value") == XSS
    assert HOSTILE[0] in _css(browser, "h1")[0].text
    assert _css(browser, "#last-reviewer")[0].text == "carol"
    _no_alert(browser)
