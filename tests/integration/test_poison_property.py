"""Property: any record (arbitrary header values, keys and payloads) is either stored or parked.

Hypothesis drives records through what the edge consumer does with them, minus the detector: decode
and validation (`validation.read_frame`), image decoding (`messages.decode_image`), then the store
or the parking path (`persist.FrameWriter`, dead letters to the real broker), on a real SQLite file
and a real PostgreSQL database.
Detections are random boxes (sometimes NaN, which the store refuses). Every record must end
stored or parked with a dead letter and a row naming it; nothing may raise out (an exception here
is what crash-looped the consumer), and no car may count a frame the line's geometry does not have.
The end-to-end tests (test_poison_records.py) send the named cases through the real broker.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from inspection.config import GridConfig, KafkaConfig, LineConfig, Settings, ValidationConfig
from inspection.detections import Detections
from inspection.edge.persist import FrameWriter
from inspection.kafka import DeadLetterProducer, ensure_topics
from inspection.messages.contract import HEADER_NAMES, SourceRecord
from inspection.messages.dead_letters import DeadLetter
from inspection.messages.errors import MessageError
from inspection.messages.frame_id import FrameId
from inspection.messages.images import decode_image, encode_image
from inspection.store import FrameRecord, ResultStore, RetryPolicy, upgrade_database
from inspection.validation import FrameValidator, read_frame
from tests.integration.test_pipeline import _dlq_records

pytestmark = pytest.mark.timeout(900)

# A small frame keeps JPEG encoding and decoding cheap; the grid is configured to match it.
GRID = GridConfig(frame_width=600, frame_height=300, tile_size=300, batch_size=2)
LINE = LineConfig(cameras=3, shots_per_camera=2, takt_s=60.0)
SETTINGS = Settings(grid=GRID, line=LINE, validation=ValidationConfig(max_future_s=30, max_age_s=3600, max_deadline_s=600))
NOW_NS = time.time_ns()
S = 1_000_000_000


PAYLOAD_LIMIT = 200_000  # what `kafka.message_max_bytes` would allow; the "too_large" sample exceeds it


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:600]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    jpeg = encode_image(rgb, 80)
    import cv2

    png = cv2.imencode(".png", rgb)[1].tobytes()
    return {
        "jpeg": jpeg,
        "png": png,
        "truncated": jpeg[: len(jpeg) // 2],
        "wrong_size": encode_image(rgb[:150, :300], 80),
        "garbage": b"\xff\xd8\xff" + bytes(rng.integers(0, 255, 300, dtype=np.uint8)) + b"\xff\xd9",
        "too_large": jpeg + b"\x00" * PAYLOAD_LIMIT,
    }


IMAGES = _images()

ABSENT = object()  # the header is left out
hostile_ints = st.sampled_from(
    ["-1", "2147483647", "2147483648", str(2**63 - 1), str(2**63), "1" + "0" * 25, "7" * 5000, "", " 3 ", "0x10", "1e9", "٣"]
)
times = st.integers(NOW_NS - 7200 * S, NOW_NS + 20 * S)
header_text = st.text(max_size=80)
header_bytes = st.binary(max_size=80)
anything = st.one_of(
    st.just(ABSENT),
    st.none(),
    header_bytes,
    header_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    hostile_ints.map(str.encode),
)
hostile: dict[str, st.SearchStrategy] = {
    "schema": st.one_of(anything, st.sampled_from([b"2", b"01", b"1\x00"])),
    "car_id": st.one_of(
        anything,
        st.sampled_from(["c" * 65, "c" * 10_000, "car\x00-1", "car\n2", "\t", "ca\u200br", "wagen-\u00e4"]).map(str.encode),
    ),
    "camera": st.one_of(anything, st.integers(-1, 5).map(lambda v: str(v).encode())),
    "shot": st.one_of(anything, st.integers(-1, 4).map(lambda v: str(v).encode())),
    "shots_per_car": st.one_of(anything, st.sampled_from([b"1", b"5", b"7", b"1000000000"])),
    "captured_at_ns": st.one_of(
        anything, st.sampled_from([NOW_NS + 10**17, NOW_NS - 10 * 86400 * S]).map(lambda v: str(v).encode())
    ),
    "deadline_at_ns": st.one_of(anything, st.sampled_from([-S, 10**15, 10**18]).map(lambda d: d)),  # offsets, see below
    "content_type": st.one_of(anything, st.sampled_from([b"image/jpeg", b"image/png", b"image/webp"])),
}
payloads = st.one_of(st.sampled_from(list(IMAGES.values())), st.binary(max_size=64), st.none())


@st.composite
def records(draw) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
    """A valid frame of the line, then up to three fields made hostile (none: the frame is stored)."""
    captured = draw(times)
    car = draw(st.sampled_from(["car-1", "car-2"]))
    camera, shot = draw(st.integers(0, LINE.cameras - 1)), draw(st.integers(0, LINE.shots_per_camera - 1))
    content_type = draw(st.sampled_from(["image/jpeg", "image/png"]))
    values: dict[str, object] = {
        "schema": b"1",
        "car_id": car.encode(),
        "camera": str(camera).encode(),
        "shot": str(shot).encode(),
        "shots_per_car": str(LINE.frames_per_car).encode(),
        "captured_at_ns": str(captured).encode(),
        "deadline_at_ns": str(captured + 60 * S).encode(),
        "content_type": content_type.encode(),
    }
    payload = IMAGES["jpeg" if content_type == "image/jpeg" else "png"]
    key: bytes | None = None
    repeat = None
    for target in draw(st.lists(st.sampled_from([*HEADER_NAMES, "key", "payload", "repeat"]), max_size=3)):
        if target == "payload":
            payload = draw(payloads)
        elif target == "key":
            key = draw(st.one_of(st.none(), header_bytes))
        elif target == "repeat":  # a header given twice: the last one counts
            repeat = (draw(st.sampled_from(HEADER_NAMES)), draw(st.one_of(st.none(), header_bytes)))
        elif target == "deadline_at_ns":
            offset = draw(hostile[target])
            values[target] = str(captured + offset).encode() if isinstance(offset, int) else offset
        else:
            values[target] = draw(hostile[target])
    headers: list[tuple[str, bytes | None]] = [(n, v) for n, v in values.items() if v is not ABSENT]  # type: ignore[misc]
    if repeat is not None:
        headers.append(repeat)
    if key is None:  # the key the producer would write, so the header checks themselves are reached
        car_id, cam = values["car_id"], values["camera"]
        key = (car_id if isinstance(car_id, bytes) else b"") + b":" + (cam if isinstance(cam, bytes) else b"")
    return key, payload, headers


@st.composite
def detections(draw) -> Detections:
    n = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    xy = rng.uniform(0, 500, (n, 2))
    boxes = np.concatenate([xy, xy + 20], axis=1).astype(np.float32)
    scores = rng.uniform(0.3, 1, n).astype(np.float32)
    if n and draw(st.integers(0, 9)) == 0:
        boxes[0, 0] = np.nan  # the store refuses NaN boxes: the frame is parked, not stored
    return Detections(boxes, scores, rng.integers(1, 90, n).astype(np.int32), rng.integers(0, 2, n).astype(np.int32))


def _line_record(payload: bytes, drop: str | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes | None]]]:
    """A well-formed record of the line (camera 1, shot 0), optionally without one header."""
    values = {
        "schema": b"1",
        "car_id": b"car-1",
        "camera": b"1",
        "shot": b"0",
        "shots_per_car": str(LINE.frames_per_car).encode(),
        "captured_at_ns": str(NOW_NS).encode(),
        "deadline_at_ns": str(NOW_NS + 60 * S).encode(),
        "content_type": b"image/jpeg",
    }
    return b"car-1:1", payload, [(name, value) for name, value in values.items() if name != drop]


def _boxes(n: int, nan: bool = False) -> Detections:
    xy = np.arange(2 * n, dtype=np.float32).reshape(n, 2) * 10
    boxes = np.concatenate([xy, xy + 20], axis=1)
    if nan and n:
        boxes[0, 0] = np.nan
    return Detections(boxes, np.full(n, 0.5, np.float32), np.ones(n, np.int32), np.zeros(n, np.int32))


class RecordingDeadLetters:
    """The real dead-letter producer (to the session broker), noting what each example parked."""

    def __init__(self, producer: DeadLetterProducer) -> None:
        self.producer = producer
        self.letters: list[DeadLetter] = []

    def send(self, letter: DeadLetter) -> tuple[int, int]:
        at = self.producer.send(letter)  # returns once the broker acknowledged it
        self.letters.append(letter)
        return at


def check_store_invariants(store: ResultStore) -> None:
    with store.engine.connect() as conn:
        frames = conn.execute(sa.text("SELECT car_id, camera, shot FROM frames")).all()
        cars = conn.execute(sa.text("SELECT car_id, frames_expected, frames_done, completed_at FROM cars")).all()
    for _, camera, shot in frames:
        assert 0 <= camera < LINE.cameras and 0 <= shot < LINE.shots_per_camera, "a frame outside the line's geometry was counted"
    per_car: dict[str, int] = {}
    for car_id, _, _ in frames:
        per_car[car_id] = per_car.get(car_id, 0) + 1
    for car_id, expected, done, completed_at in cars:
        assert expected == LINE.frames_per_car, f"car {car_id} registered with {expected} frames"
        assert done == per_car.get(car_id, 0) <= expected
        assert (completed_at is not None) == (done == expected)


def run_property(url: str, kafka_config: KafkaConfig) -> None:
    upgrade_database(url)
    ensure_topics(kafka_config.bootstrap_servers, kafka_config)
    dead_letters = DeadLetterProducer(kafka_config.bootstrap_servers, kafka_config)
    store = ResultStore(url)
    run_id = store.start_run("test", "none", "fp32", "property", host="test", consumer_id="property")
    validator = FrameValidator.from_settings(SETTINGS)
    offsets = itertools.count()
    seen = {"stored": 0, "error_row": 0, "rejected": 0}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(record=records(), boxes=detections())
    # Each outcome once for certain, whatever the random examples reach: stored, error row (a frame
    # of the line whose image or boxes are refused), rejected (no car_id: no slot to put a row on).
    @example(record=_line_record(IMAGES["jpeg"]), boxes=_boxes(3))
    @example(record=_line_record(IMAGES["truncated"]), boxes=_boxes(0))
    @example(record=_line_record(IMAGES["jpeg"]), boxes=_boxes(2, nan=True))
    @example(record=_line_record(IMAGES["jpeg"], drop="car_id"), boxes=_boxes(1))
    def property_(record, boxes: Detections) -> None:
        key, value, headers = record
        dlq = RecordingDeadLetters(dead_letters)
        writer = FrameWriter(store, dlq, RetryPolicy(retries=0), run_id=run_id, class_names={})
        source = SourceRecord(key, value, tuple(headers), "frames", 0, next(offsets))
        received = NOW_NS + S
        frame, error = read_frame(source, validator, received, max_payload_bytes=PAYLOAD_LIMIT)
        if frame is not None and error is None:
            try:
                decode_image(frame.payload, (GRID.frame_width, GRID.frame_height), what=frame.label)
            except MessageError as exc:
                error = exc
        frame_record = None
        if frame is not None:
            frame_record = FrameRecord(
                frame_id=FrameId(frame.car_id, frame.camera, frame.shot, frame.shots_per_car),
                captured_at_ns=frame.captured_at_ns,
                deadline_at_ns=frame.deadline_at_ns,
                received_at_ns=received,
                processed_at_ns=received + 1000,
                run_id=run_id,
                kafka_topic="frames",
                kafka_partition=0,
                kafka_offset=source.offset,
            )
        if error is None:
            assert frame_record is not None
            outcome = writer.store_frame(source, frame_record, boxes, received)
        else:
            outcome = writer.park(source, error, frame_record, received)
        if outcome.parked is None:
            seen["stored"] += 1
            assert outcome.stored is not None and outcome.stored.error_kind is None and not dlq.letters
            assert outcome.stored.detections == len(boxes)
        else:
            (letter,) = dlq.letters
            assert letter.value == value and letter.error_kind == outcome.parked and letter.source_offset == source.offset
            if outcome.stored is not None:
                seen["error_row"] += 1
                assert frame is not None  # only a frame of the line has a row on its slot
            else:
                seen["rejected"] += 1
                with store.engine.connect() as conn:
                    row = conn.execute(
                        sa.text("SELECT error_kind, error FROM rejected_messages WHERE kafka_offset = :o"), {"o": source.offset}
                    ).one()
                assert row.error_kind == outcome.parked and "\x00" not in row.error
        check_store_invariants(store)

    try:
        property_()
    finally:
        store.close()
        dead_letters.close()
    # The generator reaches every outcome (a property that only ever parks would prove little).
    print(f"outcomes on {url.split(':')[0]}: {seen}")
    assert all(seen.values()), seen
    # Every dead letter is on the broker and reads back as one (hypothesis may replay examples, so at least as many).
    parked = seen["error_row"] + seen["rejected"]
    letters = _dlq_records(Settings(kafka=kafka_config), parked, timeout_s=60)
    assert len(letters) >= parked and all(letter.error and letter.source_topic == "frames" for letter in letters)


def test_any_record_is_stored_or_parked_on_sqlite(sqlite_url: str, kafka_config: KafkaConfig) -> None:
    run_property(sqlite_url, kafka_config)


@pytest.mark.postgres
def test_any_record_is_stored_or_parked_on_postgresql(postgres_url: str, kafka_config: KafkaConfig) -> None:
    run_property(postgres_url, kafka_config)
