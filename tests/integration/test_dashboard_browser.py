"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium), on a database written by a real pipeline run: cars produced into the embedded broker,
consumed by an edge pipeline (YOLOX-Nano on onnxruntime), stored in SQLite with their images.

What a person sees is asserted: the car table's rows, the frame grid, the viewer drawing exactly
the boxes the database holds above the slider's score, filters changing the counts, hostile car
ids rendered as text, the page updating by itself, the token. Screenshots of each page go to
$INSPECTION_SCREENSHOTS (docs/screenshots for the README) or a temporary folder.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer
from sqlalchemy import text

from inspection.config import KafkaConfig, LineConfig, ModelConfig, PipelineConfig, Settings, StoreConfig
from inspection.dashboard import BindRefusedError, DashboardConfig, DashboardServer
from inspection.detect import create_detector
from inspection.edge import EdgePipeline
from inspection.kafka import FrameProducer, ensure_topics
from inspection.kafka.admin import producer_config
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import FrameRecord, ResultStore
from inspection.tiling import TileGrid
from synthetic.line import LineSimulator
from synthetic.photos import PhotoFrameSource
from tests.integration.dashboard_data import HOSTILE, boxes_of

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

CHROMIUM = Path(os.environ.get("INSPECTION_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("INSPECTION_CHROMEDRIVER", "/usr/bin/chromedriver"))
CAR = "car-000001"


@dataclass(frozen=True)
class LineRun:
    url: str
    images: Path
    frames: int


def _browser_or_skip() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    reason = f"headless browser tests need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
    if os.environ.get("INSPECTION_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (INSPECTION_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def line_run(kafka_broker, yolox_onnx, tmp_path_factory: pytest.TempPathFactory) -> LineRun:
    """One small line run through the real system: car-000001 (5 cameras × 1 shot) from the line
    simulator, one frame for each hostile car id, a corrupt JPEG (error row) and a message without
    car_id header (rejected) — all consumed by an edge pipeline into SQLite and an image store."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("line-run")
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaConfig(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        topic=f"frames-{suffix}",
        dlq_topic=f"frames-{suffix}.dlq",
        group_id=f"edge-{suffix}",
        partitions=3,
        session_timeout_ms=6000,
    )
    settings = Settings(
        model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx),
        kafka=kafka,
        store=StoreConfig(url=f"sqlite:///{root / 'results.db'}", image_dir=root / "images"),
        line=LineConfig(cameras=5, shots_per_camera=1, takt_s=600.0),
        pipeline=PipelineConfig(decode_workers=2, queue_size=2),
    )
    ensure_topics(kafka.bootstrap_servers, kafka)
    source = PhotoFrameSource(TileGrid())
    with FrameProducer(kafka.bootstrap_servers, kafka) as producer:
        produced = LineSimulator(settings.line, source, producer).run(1, start_car=1, realtime=False)
        jpeg = encode_image(source(7, 2, 0), 85)
        now = time.time_ns()
        frames_per_car = settings.line.frames_per_car  # one frame each: the line's own geometry, or it is refused
        for car in HOSTILE:
            producer.send(
                FrameMessage(
                    frame_id=FrameId(car, 0, 0, frames_per_car),
                    captured_at_ns=now,
                    deadline_at_ns=now + 600 * 10**9,
                    payload=jpeg,
                )
            )
        producer.send(
            FrameMessage(
                frame_id=FrameId("car-bad", 0, 0, frames_per_car),
                captured_at_ns=now,
                deadline_at_ns=now + 600 * 10**9,
                payload=jpeg[: len(jpeg) // 3] + b"\xff\xd9",
            )
        )
        producer.flush(60)
    key, value, headers = FrameMessage(
        frame_id=FrameId("nobody", 0, 0, frames_per_car), captured_at_ns=now, deadline_at_ns=now, payload=jpeg
    ).encode()
    raw = Producer(producer_config(kafka.bootstrap_servers, kafka, dlq=True))
    raw.produce(kafka.topic, value=value, key=key, headers=[(k, v) for k, v in headers if k != "car_id"], partition=0)
    assert raw.flush(30) == 0
    expected = len(produced) + len(HOSTILE) + 2
    with ResultStore.open(settings.store) as store:
        pipeline = EdgePipeline(settings, create_detector(settings.model, settings.detect), store, kafka.bootstrap_servers)
        stats = pipeline.run(stop_when=lambda s: s.frames_handled >= expected)
        assert (stats.frames_stored, stats.frames_parked) == (len(produced) + len(HOSTILE), 2)
    return LineRun(settings.store.url, root / "images", expected)


@pytest.fixture(scope="module")
def dashboard(line_run: LineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    config = DashboardConfig(
        db_url=line_run.url,
        images_dir=line_run.images,
        port=0,
        cameras=5,
        thumbs_dir=tmp_path_factory.mktemp("thumbs"),
        poll_s=1.0,
    )
    with DashboardServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, path: Path, width: int = 1000) -> None:
    """The viewport as a PNG, area-downscaled to `width` pixels (small enough to commit)."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(driver.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    if image.shape[1] > width:
        image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])), interpolation=cv2.INTER_AREA)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path  # each page's test checks its own screenshot


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("INSPECTION_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _db(line_run: LineRun, sql: str, **params) -> list:
    with ResultStore(line_run.url) as store, store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def _wait(driver, condition, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - raises when no script opened an alert


def _css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_line_page_shows_the_cars_of_the_run(browser, dashboard, line_run: LineRun, shots: Path) -> None:
    browser.get(dashboard.url + "/")
    rows = _css(browser, "#cars-table tr.car-row")
    cars_in_db = {r[0] for r in _db(line_run, "SELECT car_id FROM cars")}
    assert {r.get_attribute("data-car-id") for r in rows} == cars_in_db == {CAR, "car-bad", *HOSTILE}
    texts = {r.get_attribute("data-car-id"): r.text for r in rows}
    detections = _db(line_run, "SELECT SUM(detection_count) FROM frames WHERE car_id = :c", c=CAR)[0][0]
    assert texts[CAR].startswith(CAR) and "5/5" in texts[CAR] and f" {detections} " in f" {texts[CAR]} "
    assert texts[CAR].endswith("met")
    for car in HOSTILE:  # the ids are shown as text, and no script of theirs ran
        assert texts[car].startswith(car)
    _no_alert(browser)
    assert len(_css(browser, "svg.chart")) == 3
    assert _css(browser, "#cars-today")[0].text == "4" or time.gmtime().tm_hour == 0
    _screenshot(browser, shots / "line.png")


def test_hostile_car_page_renders_its_id_as_text(browser, dashboard) -> None:
    from selenium.webdriver.common.by import By

    browser.get(dashboard.url + "/")
    browser.find_element(By.LINK_TEXT, HOSTILE[0]).click()
    _wait(browser, lambda d: _css(d, "#car-id"))
    assert _css(browser, "#car-id")[0].text == HOSTILE[0]
    _no_alert(browser)
    browser.get(dashboard.url + "/")
    browser.find_element(By.LINK_TEXT, HOSTILE[1]).click()
    _wait(browser, lambda d: _css(d, "#car-id"))
    assert _css(browser, "#car-id")[0].text == HOSTILE[1]
    assert len(_css(browser, "#frame-grid td.cell")) == 5  # 5 cameras × 1 shot expected... of which 1 stored
    assert [c.get_attribute("data-state") for c in _css(browser, "#frame-grid td.cell")].count("stored") == 1


def test_car_page_shows_every_frame_with_its_count(browser, dashboard, line_run: LineRun, shots: Path) -> None:
    browser.get(dashboard.url + "/cars/" + CAR)
    cells = _css(browser, "#frame-grid td.cell")
    assert len(cells) == 5 and {c.get_attribute("data-state") for c in cells} == {"stored"}
    counts = dict(_db(line_run, "SELECT camera, detection_count FROM frames WHERE car_id = :c", c=CAR))
    for cell in cells:
        assert cell.text.strip().endswith(str(counts[int(cell.get_attribute("data-camera"))]))
    _wait(
        browser,
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('#frame-grid img')).every(i => i.complete && i.naturalWidth === 160)"
        ),
    )
    bad = _db(line_run, "SELECT id FROM frames WHERE car_id = 'car-bad'")[0][0]
    browser.get(dashboard.url + "/cars/car-bad")
    error_cells = [c for c in _css(browser, "#frame-grid td.cell") if c.get_attribute("data-state") == "error"]
    assert len(error_cells) == 1 and f"/frames/{bad}" in error_cells[0].get_attribute("innerHTML")
    browser.get(dashboard.url + "/cars/" + CAR)
    _wait(
        browser,
        lambda d: d.execute_script(
            "return Array.from(document.querySelectorAll('#frame-grid img')).every(i => i.complete && i.naturalWidth > 0)"
        ),
    )
    _screenshot(browser, shots / "car.png")


def test_viewer_draws_exactly_the_boxes_above_the_slider(browser, dashboard, line_run: LineRun, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    frame_id, total = _db(
        line_run, "SELECT id, detection_count FROM frames WHERE car_id = :c ORDER BY detection_count DESC, id LIMIT 1", c=CAR
    )[0]
    assert total >= 3, "the photos should give the detector something to find"
    browser.get(f"{dashboard.url}/frames/{frame_id}")
    _wait(browser, lambda d: d.find_element("id", "viewer").get_attribute("data-loaded") == "true")
    assert len(_css(browser, "#boxes g.box")) == total
    browser.execute_script("window.__same_page = true")

    def above(score: float, class_name: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM detections WHERE frame_id = :f AND score >= :s"
        return _db(line_run, sql + (" AND class_name = :n" if class_name else ""), f=frame_id, s=score, n=class_name)[0][0]

    scores = sorted(r[0] for r in _db(line_run, "SELECT score FROM detections WHERE frame_id = :f", f=frame_id))
    threshold = round(scores[len(scores) // 2], 2)  # about half the boxes
    browser.execute_script(
        "const s = document.getElementById('min-score'); s.value = arguments[0]; s.dispatchEvent(new Event('input'));", threshold
    )
    shown = len(_css(browser, "#boxes g.box"))
    assert shown == above(threshold) and 0 < shown < total
    assert _css(browser, "#box-count")[0].text == f"{shown} of {total} boxes shown"
    top_class = _db(
        line_run,
        "SELECT class_name FROM detections WHERE frame_id = :f GROUP BY class_name ORDER BY COUNT(*) DESC, class_name LIMIT 1",
        f=frame_id,
    )[0][0]
    Select(browser.find_element("id", "class-filter")).select_by_value(top_class)
    assert len(_css(browser, "#boxes g.box")) == above(threshold, top_class)
    assert {g.get_attribute("data-class-name") for g in _css(browser, "#boxes g.box")} <= {top_class}
    labels = [t.get_attribute("textContent") for t in _css(browser, "#boxes g.box text")]
    assert all(label.startswith(top_class + " ") for label in labels)
    browser.find_element("id", "show-tiles").click()
    assert len(_css(browser, "#tiles line")) == 63 * 4 and browser.execute_script(
        "return !document.getElementById('tiles').hidden"
    )
    width = browser.execute_script("return document.getElementById('stage').getBoundingClientRect().width")
    browser.find_element("id", "zoom-in").click()
    assert browser.execute_script("return document.getElementById('stage').getBoundingClientRect().width") > 1.4 * width
    browser.find_element("id", "zoom-fit").click()
    assert browser.execute_script("return window.__same_page === true"), "the filters redrew without a reload"
    image = browser.find_element("id", "original-link").get_attribute("href")
    assert image.endswith(f"/frames/{frame_id}/image.jpg")
    assert browser.execute_script("const i = document.getElementById('frame-image'); return i.complete && i.naturalWidth") == 2700
    Select(browser.find_element("id", "class-filter")).select_by_value("")
    _screenshot(browser, shots / "frame.png")


def test_detection_filters_change_the_counts(browser, dashboard, line_run: LineRun, shots: Path) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(dashboard.url + "/detections?since=all")
    total = _db(line_run, "SELECT COUNT(*) FROM detections")[0][0]
    assert int(_css(browser, "#total")[0].text) == total > 0
    per_class = dict(_db(line_run, "SELECT class_name, COUNT(*) FROM detections GROUP BY class_name"))
    shown = {r.get_attribute("data-class"): int(r.text.split()[-1]) for r in _css(browser, "#class-counts tbody tr")}
    assert shown == per_class
    name = max(per_class, key=per_class.get)
    Select(browser.find_element("name", "class_name")).select_by_value(name)
    browser.find_element("css selector", "#filters button[type=submit]").click()
    _wait(browser, lambda d: "class_name=" in d.current_url)
    assert int(_css(browser, "#total")[0].text) == per_class[name]
    assert {c.text for c in _css(browser, "#detections-table td.det-class")} == {name}
    assert "class_name=" in _css(browser, "#csv-link")[0].get_attribute("href")
    field = browser.find_element("name", "min_score")
    field.clear()
    field.send_keys("0.6")
    browser.find_element("css selector", "#filters button[type=submit]").click()
    _wait(browser, lambda d: "min_score=0.6" in d.current_url)
    strict = _db(line_run, "SELECT COUNT(*) FROM detections WHERE class_name = :n AND score >= 0.6", n=name)[0][0]
    assert int(_css(browser, "#total")[0].text) == strict
    browser.get(dashboard.url + "/detections?since=all")
    _screenshot(browser, shots / "detections.png")


def test_problems_page_lists_what_was_parked(browser, dashboard, line_run: LineRun, shots: Path) -> None:
    browser.get(dashboard.url + "/problems")
    (error,) = _css(browser, "#error-frames tbody tr")
    kind, partition, offset = _db(
        line_run, "SELECT error_kind, kafka_partition, kafka_offset FROM frames WHERE error IS NOT NULL"
    )[0]
    assert "car-bad" in error.text and kind in error.text and f"[{partition}] @ {offset}" in error.text
    (rejected,) = _css(browser, "#rejected tbody tr")
    topic, r_partition, r_offset, r_kind = _db(
        line_run, "SELECT kafka_topic, kafka_partition, kafka_offset, error_kind FROM rejected_messages"
    )[0]
    assert f"{topic} [{r_partition}] @ {r_offset}" in rejected.text and r_kind in rejected.text
    _screenshot(browser, shots / "problems.png")


def test_line_page_updates_by_itself(browser, dashboard, line_run: LineRun) -> None:
    """A consumer stores a new car while the page is open: it appears within 5 s, no reload."""
    browser.get(dashboard.url + "/")
    browser.execute_script("window.__same_page = true")
    now = time.time_ns()
    with ResultStore(line_run.url) as store:
        run_id = store.start_run("yolox_nano", "onnxruntime", "fp32", "live", host="t", consumer_id="t:1")
        record = FrameRecord(FrameId("car-live", 0, 0, 1), now, now + 600 * 10**9, now + 10**8, now + 2 * 10**8, run_id)
        store.store_frame(record, boxes_of(0, 0), {1: "person", 3: "car", 44: "bottle"})
    # read in one script: the rows are being replaced under us, which is the point
    _wait(
        browser,
        lambda d: (
            "car-live"
            in d.execute_script(
                "return Array.from(document.querySelectorAll('#cars-table tr.car-row')).map(r => r.dataset.carId)"
            )
        ),
        timeout=5.0,
    )
    assert browser.execute_script("return window.__same_page === true")


def test_token_guards_every_page(browser, line_run: LineRun, tmp_path: Path) -> None:
    config = DashboardConfig(
        db_url=line_run.url, images_dir=line_run.images, port=0, token="open-sesame", thumbs_dir=tmp_path / "thumbs"
    )
    with DashboardServer(config) as server:
        browser.delete_all_cookies()
        browser.get(server.url + "/problems")
        assert "token required" in browser.find_element("tag name", "body").text
        browser.get(server.url + "/problems?token=wrong")
        assert "token required" in browser.find_element("tag name", "body").text
        browser.get(server.url + "/problems?token=open-sesame")
        assert browser.current_url == server.url + "/problems" and _css(browser, "#error-frames")
        browser.get(server.url + "/")  # the cookie now carries the token
        assert _css(browser, "#cars-table tr.car-row")
        browser.delete_all_cookies()
    with pytest.raises(BindRefusedError, match="--token"):
        DashboardServer(DashboardConfig(db_url=line_run.url, host="0.0.0.0", port=0)).start()
