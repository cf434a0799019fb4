"""The verdict pages in a real headless Chromium: the line page's inspection column beside the deadline
verdict, NG first, the filter by verdict; the frame viewer marking each defect with its rule and dimming
the box an ignore region removed. Data written by the store's own write path with inspection rules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.dashboard import DashboardConfig, DashboardServer
from tests.integration.dashboard_data import CAMERAS, Populated, populate
from tests.integration.test_dashboard_browser import _css, _no_alert, _screenshot, _wait, browser, shots  # noqa: F401

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Populated:
    root = tmp_path_factory.mktemp("verdicts")
    return populate(f"sqlite:///{root / 'results.db'}", root / "images", time.time_ns())


@pytest.fixture(scope="module")
def dashboard(populated: Populated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    config = DashboardConfig(
        db_url=populated.url, images_dir=populated.images, port=0, cameras=CAMERAS, thumbs_dir=tmp_path_factory.mktemp("t")
    )
    with DashboardServer(config) as server:
        yield server


def test_line_page_shows_inspection_verdicts_ng_first_and_filters_them(browser, dashboard, shots: Path) -> None:  # noqa: F811
    browser.get(dashboard.url + "/")
    rows = _css(browser, "#cars-table tr.car-row")
    assert rows[0].get_attribute("data-car-id") == "c-late"  # the NG car heads the list
    by_car = {r.get_attribute("data-car-id"): r for r in rows}
    assert by_car["c-late"].text.split()[-2:] == ["missed", "ng"]  # deadline verdict, then inspection verdict
    assert by_car["c-ok"].text.split()[-2:] == ["met", "error"]
    assert by_car["c-fresh"].text.split()[-2:] == ["in_flight", "-"]
    cell = by_car["c-late"].find_element("css selector", "td.inspection")
    assert cell.get_attribute("title") == "count reached: bottle 9 >= 3, person 8 >= 1"
    _screenshot(browser, shots / "line-verdicts.png")
    _css(browser, '#verdict-filter a[data-verdict="ok"]')[0].click()
    _wait(browser, lambda d: "verdict=ok" in d.current_url)
    shown = {r.get_attribute("data-inspection") for r in _css(browser, "#cars-table tr.car-row")}
    assert shown == {"ok"} and len(_css(browser, "#cars-table tr.car-row")) == 2
    assert "current" in _css(browser, '#verdict-filter a[data-verdict="ok"]')[0].get_attribute("class")
    _no_alert(browser)


def test_viewer_marks_defects_with_their_rule_and_dims_the_masked_box(
    browser,  # noqa: F811
    dashboard,
    populated: Populated,
    shots: Path,  # noqa: F811
) -> None:
    browser.get(f"{dashboard.url}/frames/{populated.frame_ids['c-late', 1, 0]}")
    _wait(browser, lambda d: d.find_element("id", "viewer").get_attribute("data-defects-loaded") == "true")
    kept = _css(browser, "#defects g.defect:not(.ignored)")
    assert [g.get_attribute("data-rule") for g in kept] == [
        "person: score >= 0.9, size >= 0 px",
        "bottle: score >= 0.5, size >= 0 px",
    ]
    assert not _css(browser, "#defects g.ignored")
    assert _css(browser, "#defect-count")[0].text == "2 defect(s), 0 ignored by a mask"
    _screenshot(browser, shots / "viewer-defects.png")
    browser.get(f"{dashboard.url}/frames/{populated.frame_ids['c-late', 0, 0]}")
    _wait(browser, lambda d: d.find_element("id", "viewer").get_attribute("data-defects-loaded") == "true")
    (masked,) = _css(browser, "#defects g.defect.ignored")
    assert masked.get_attribute("data-rule") == "ignore cam 0 corner"
    assert float(masked.value_of_css_property("opacity")) < 0.5  # dimmed
    assert "ignored: ignore cam 0 corner" in masked.find_element("css selector", "text").get_attribute("textContent")
    _screenshot(browser, shots / "viewer-masked.png")
