"""Each edge stage alone, on in-memory records: no broker; the persist stage on an SQLite file.

The stages' wiring on the real broker and databases is tests/integration/test_pipeline.py's job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import text

from inspection.analytics import AnalyticsReader
from inspection.config import HealthConfig, SecondLookConfig, Settings, StitchConfig, StoreConfig
from inspection.detect import Detector, load_spec
from inspection.detect.base import UnsupportedCapability
from inspection.detections import Detections
from inspection.edge.infer import InferStage
from inspection.edge.ordering import KeyOrder
from inspection.edge.persist import FrameWriter, PersistStage
from inspection.edge.prepare import CpuFramePreparer, PrepareStage
from inspection.edge.runner import Stage, StageRunner, StageTimeout
from inspection.edge.source import receive
from inspection.edge.stats import PipelineStats
from inspection.edge.steps import Detected, Parked, Prepared, Received
from inspection.health import Readiness
from inspection.kafka.offsets import OffsetTracker
from inspection.messages.contract import FrameMessage, payload_limit
from inspection.messages.dead_letters import DeadLetter
from inspection.messages.errors import ImageError, MessageError
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.metrics import PipelineMetrics
from inspection.review.shadow import ShadowRunner, ShadowStats
from inspection.store import ResultStore, RetryPolicy
from inspection.tiling import TileGrid
from inspection.validation import FrameValidator
from tests.stored import frame_boxes, rejected

GRID = TileGrid()
SETTINGS = Settings(line={"cameras": 1, "shots_per_camera": 2})


@dataclass
class Record:
    """An in-memory record with confluent_kafka.Message's accessors (what `receive` reads)."""

    k: bytes | None
    v: bytes | None
    h: list
    off: int = 0

    def error(self):
        return None

    def key(self):
        return self.k

    def value(self):
        return self.v

    def headers(self):
        return self.h

    def topic(self):
        return "frames"

    def partition(self):
        return 0

    def offset(self):
        return self.off


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    frame = np.zeros((GRID.frame_height, GRID.frame_width, 3), np.uint8)
    frame[:, :, 0] = np.arange(GRID.frame_width, dtype=np.uint32)[None, :] % 251
    return encode_image(frame, 80)


def frame_record(payload: bytes, shot: int = 0, offset: int = 0, **header_overrides) -> Record:
    now = time.time_ns()
    frame = FrameMessage(frame_id=FrameId("car-1", 0, shot, 2), captured_at_ns=now, deadline_at_ns=now + 10**10, payload=payload)
    key, value, headers = frame.encode()
    headers = [(n, header_overrides.get(n, v)) for n, v in headers]
    return Record(key, value, headers, offset)


def step_of(record: Record) -> Received | Parked:
    return receive(record, FrameValidator.from_settings(SETTINGS), payload_limit(SETTINGS.kafka.message_max_bytes))


def received_of(record: Record) -> Received:
    step = step_of(record)
    assert isinstance(step, Received), step
    return step


def detected_of(record: Record, detections: Detections) -> Detected:
    """A record past prepare and infer, with the detections given."""
    return received_of(record).prepared(None).detected(detections)


# ----------------------------------------------------------------------------- runner


def test_runner_passes_every_item_through_every_stage_before_it_stops() -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def step(name: str):
        def process(item: int) -> int:
            with lock:
                seen.append((name, item))
            return item + 1

        return process

    runner = StageRunner(
        [
            Stage.threads("a", step("a"), 2, queue_size=1),
            Stage("b", (step("b"),), queue_size=1),
            Stage("c", (step("c"),), queue_size=1),
        ]
    )
    runner.start()
    for i in range(20):
        assert runner.put(i * 10)
    runner.close()
    runner.join()
    assert runner.failure is None
    assert sorted(i for n, i in seen if n == "c") == [i * 10 + 2 for i in range(20)]
    assert len(seen) == 60


def test_runner_gives_each_worker_its_own_process() -> None:
    """One process per worker thread (the infer stage: one detector per thread)."""
    threads: dict[int, set[str]] = {0: set(), 1: set()}

    def worker(index: int):
        def process(item: int) -> int:
            threads[index].add(threading.current_thread().name)
            time.sleep(0.001)
            return item

        return process

    runner = StageRunner([Stage("infer", (worker(0), worker(1)), queue_size=2)])
    runner.start()
    for i in range(40):
        runner.put(i)
    runner.close()
    runner.join()
    assert all(len(names) == 1 for names in threads.values()) and threads[0] != threads[1]


def test_a_failing_stage_stops_the_chain_and_is_reported_once() -> None:
    told: list[BaseException] = []
    stored: list[int] = []

    def flaky(item: int) -> int:
        if item == 3:
            raise ConnectionError("database gone")
        return item

    runner = StageRunner(
        [Stage("work", (flaky,), queue_size=1), Stage("store", (stored.append,), queue_size=1)], on_failure=told.append
    )
    runner.start()
    accepted = [runner.put(i) for i in range(50)]
    runner.close()
    runner.join()  # returns: no thread waits forever behind the failed stage
    assert isinstance(runner.failure, ConnectionError) and told == [runner.failure]
    assert 3 not in stored and stored == sorted(stored) and max(stored, default=0) < 3
    assert accepted[-1] is False  # the feeder learns the chain failed


def test_the_watchdog_fails_a_stage_holding_one_item_too_long() -> None:
    release = threading.Event()
    runner = StageRunner(
        [Stage("prepare", (lambda item: release.wait(30),), timeout_s=0.05, describe=lambda item: f"frame {item}")]
    )
    runner.start()
    runner.put("car=1 cam=0 shot=0")
    time.sleep(0.2)
    runner.check()
    assert isinstance(runner.failure, StageTimeout)
    assert "frame car=1 cam=0 shot=0 still in stage prepare after 0.05 s" in str(runner.failure)
    release.set()
    runner.close()
    runner.join()


def test_shutdown_does_not_wait_for_a_stuck_stage() -> None:
    """A decoder hung on one frame: closing the runner returns once the watchdog fired, without it."""
    release = threading.Event()
    runner = StageRunner([Stage("prepare", (lambda item: release.wait(30),), timeout_s=0.2)])
    runner.start()
    runner.put("frame")
    runner.close()
    started = time.monotonic()
    runner.join()
    assert isinstance(runner.failure, StageTimeout) and time.monotonic() - started < 10
    release.set()


# ----------------------------------------------------------------------------- source


def test_source_reads_a_good_record_into_a_received_frame(jpeg: bytes) -> None:
    step = received_of(frame_record(jpeg, shot=1, offset=7))
    assert (step.frame.car_id, step.frame.camera, step.frame.shot) == ("car-1", 0, 1)
    assert step.tp == ("frames", 0) and step.offset == 7 and {"validate"} <= set(step.stage_s)


def test_source_parks_a_record_whose_headers_name_no_frame(jpeg: bytes) -> None:
    step = step_of(frame_record(jpeg, camera=b"two"))
    assert isinstance(step, Parked) and step.frame is None
    assert isinstance(step.error, MessageError) and step.error.field == "camera"
    step = step_of(frame_record(jpeg, shots_per_car=b"5"))  # disagrees with the line's 1 × 2 frames
    assert isinstance(step, Parked) and step.frame is None and step.error.kind == "invalid_frame"


def test_source_keeps_the_frame_of_a_record_whose_bytes_are_refused(jpeg: bytes) -> None:
    png_labelled_jpeg = b"\x89PNG\r\n\x1a\n" + jpeg[8:]
    step = step_of(frame_record(png_labelled_jpeg))
    assert isinstance(step, Parked) and step.frame is not None and step.error.kind == "content_type_mismatch"


# ----------------------------------------------------------------------------- prepare


def test_prepare_tiles_a_good_frame_into_a_pooled_batch(jpeg: bytes) -> None:
    preparer = CpuFramePreparer(GRID, pool_size=1)
    received = received_of(frame_record(jpeg))
    prepared = PrepareStage(preparer)(received)
    assert isinstance(prepared, Prepared) and prepared.batch.shape == (GRID.batch_size, GRID.tile_size, GRID.tile_size, 3)
    assert prepared.frame is received.frame and prepared.clock is received.clock  # one clock for the whole path
    assert prepared.stage_s["decode"] > 0 and prepared.stage_s["tile"] > 0
    assert preparer._pool.empty()  # the batch is out of the pool until the infer stage releases it


def test_prepare_parks_a_corrupt_jpeg_and_returns_nothing_from_the_pool(jpeg: bytes) -> None:
    preparer = CpuFramePreparer(GRID, pool_size=1)
    parked = PrepareStage(preparer)(received_of(frame_record(jpeg[: len(jpeg) // 2] + b"\xff\xd9", offset=3)))
    assert isinstance(parked, Parked) and isinstance(parked.error, ImageError) and parked.error.kind == "bad_image"
    assert parked.frame is not None and parked.offset == 3  # its error row goes on the frame's slot
    assert preparer._pool.qsize() == 1


# ----------------------------------------------------------------------------- infer


class OneBoxPerTile(Detector):
    """A box at (10, 20)-(30, 40) on tiles 0 and 9: enough to see stitching move it to frame pixels."""

    backend = "fixed"
    precision = "fp32"

    def __init__(self) -> None:
        self.spec = load_spec("ssd_mobilenet_v2_coco")
        self.batches: list[tuple[int, ...]] = []

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        self.batches.append(tiles.shape)
        return Detections([[10, 20, 30, 40]] * 2, [0.9, 0.8], [1, 3], [0, 9])


def test_infer_detects_stitches_into_frame_pixels_and_releases_the_batch(jpeg: bytes) -> None:
    preparer = CpuFramePreparer(GRID, pool_size=1)
    detector = OneBoxPerTile()
    prepared = PrepareStage(preparer)(received_of(frame_record(jpeg)))
    detected = InferStage(detector, preparer, GRID, StitchConfig(border_merge=False))(prepared)
    assert detector.batches == [(GRID.batch_size, GRID.tile_size, GRID.tile_size, 3)]  # the fixed 64-tile call
    assert isinstance(detected, Detected) and preparer._pool.qsize() == 1
    origin = GRID.origins[9]
    expected = np.array([[10, 20, 30, 40], [10 + origin[0], 20 + origin[1], 30 + origin[0], 40 + origin[1]]], np.float32)
    order = np.argsort(detected.detections.score)[::-1]
    np.testing.assert_allclose(detected.detections.xyxy[order], expected)
    assert {"queue_detect", "detect", "stitch"} <= set(detected.stage_s)


class LitRectangle(Detector):
    """Reports the bright pixels of each slot as one box (score 0.6 when it touches the slot's edge, else 0.9)."""

    backend = "fixed"
    precision = "fp32"

    def __init__(self) -> None:
        self.spec = load_spec("ssd_mobilenet_v2_coco")
        self.batches: list[int] = []

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        self.batches.append(len(tiles))
        boxes, scores, slots = [], [], []
        for k, tile in enumerate(tiles):
            ys, xs = np.nonzero(tile[:, :, 0] > 128)
            if len(xs):
                box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                boxes.append(box)
                scores.append(0.6 if min(box[:2]) == 0 or max(box[2:]) == tile.shape[0] else 0.9)
                slots.append(k)
        return Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, [1] * len(boxes), slots)


def test_infer_takes_a_second_look_at_a_cut_object_before_the_batch_goes_back() -> None:
    frame = np.zeros((GRID.frame_height, GRID.frame_width, 3), np.uint8)
    frame[248:392, 1152:1288] = 255  # over the tile borders x = 1200 and y = 300 (8-px aligned: no JPEG ringing)
    preparer = CpuFramePreparer(GRID, pool_size=1)
    detector = LitRectangle()
    prepared = PrepareStage(preparer)(received_of(frame_record(encode_image(frame, 95))))
    detected = InferStage(detector, preparer, GRID, StitchConfig(border_merge=False), SecondLookConfig())(prepared)
    assert detector.batches == [GRID.batch_size, 1]  # the 64-tile call, then one crop
    assert preparer._pool.qsize() == 1
    assert len(detected.detections) == 1 and detected.detections.xyxy[0].tolist() == [1152, 248, 1288, 392]
    assert {"detect", "stitch", "second_look"} <= set(detected.stage_s)
    # switched off (the stage's default without a setting): the four pieces stay
    prepared = PrepareStage(preparer)(received_of(frame_record(encode_image(frame, 95))))
    assert len(InferStage(detector, preparer, GRID, StitchConfig(border_merge=False))(prepared).detections) == 4


class KeptShadowFrames:
    """The shadow store's side of `ShadowRunner`, keeping what the runner hands it."""

    model = "ssd_mobilenet_v2_coco"

    def __init__(self) -> None:
        self.frames: list[tuple[FrameMessage, Detections | None, BaseException | None]] = []

    def store(self, message: FrameMessage, detections: Detections | None, error: BaseException | None, ref: tuple) -> bool:
        self.frames.append((message, detections, error))
        return False

    def decide(self, car_id: str) -> str | None:
        return None


def test_the_shadow_runs_the_edges_frame_path_second_look_included() -> None:
    """A candidate in shadow gets the deployed path: the same cut object comes out as the edge's one box
    with the site's second look on, as the same four pieces with it off."""
    frame = np.zeros((GRID.frame_height, GRID.frame_width, 3), np.uint8)
    frame[248:392, 1152:1288] = 255  # over the tile borders x = 1200 and y = 300, as above
    record = frame_record(encode_image(frame, 95))
    stitching = StitchConfig(border_merge=False)
    for look in (SecondLookConfig(), SecondLookConfig(enabled=False)):
        preparer = CpuFramePreparer(GRID, pool_size=1)
        edge = InferStage(LitRectangle(), preparer, GRID, stitching, look)(PrepareStage(preparer)(received_of(record)))
        settings = SETTINGS.model_copy(
            update={"grid": SETTINGS.grid.model_copy(update={"second_look": look}), "stitch": stitching}
        )
        detector, kept = LitRectangle(), KeptShadowFrames()
        ShadowRunner(settings, detector, kept, "127.0.0.1:9", GRID).handle(record, ShadowStats())  # type: ignore[arg-type]
        ((message, found, error),) = kept.frames
        assert error is None and found is not None and message.car_id == "car-1"
        assert found.xyxy.tolist() == edge.detections.xyxy.tolist() and found.score.tolist() == edge.detections.score.tolist()
        if look.enabled:
            assert detector.batches == [GRID.batch_size, 1] and found.xyxy.tolist() == [[1152, 248, 1288, 392]]
        else:
            assert detector.batches == [GRID.batch_size] and len(found) == 4


def test_infer_returns_the_batch_to_the_pool_when_the_detector_fails(jpeg: bytes) -> None:
    """A detector fault is not the frame's: it propagates (the consumer stops), and the pooled batch still goes back."""

    class Broken(OneBoxPerTile):
        def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
            raise RuntimeError("CUDA error: an illegal memory access")

    preparer = CpuFramePreparer(GRID, pool_size=1)
    prepared = PrepareStage(preparer)(received_of(frame_record(jpeg)))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        InferStage(Broken(), preparer, GRID, StitchConfig())(prepared)
    assert preparer._pool.qsize() == 1


def test_detector_defaults_name_the_backend_that_lacks_a_capability() -> None:
    detector = OneBoxPerTile()
    assert not detector.takes_device_batches and not detector.has_forward
    detector.warmup((300, 300))  # nothing to prepare: no error
    for call in (
        lambda: detector.detect_tensor(None),
        lambda: detector.forward_only(None),
        lambda: detector.forward(np.zeros((1, 300, 300, 3), np.uint8)),
    ):
        with pytest.raises(UnsupportedCapability, match="backend fixed"):
            call()
    with pytest.raises(TypeError):
        Detector()  # detect is abstract


# ----------------------------------------------------------------------------- persist


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letter: DeadLetter) -> tuple[int, int]:
        self.letters.append(letter)
        return (0, len(self.letters) - 1)


@pytest.fixture
def persist(tmp_path):
    config = StoreConfig(url=f"sqlite:///{tmp_path / 'results.db'}")
    store = ResultStore.open(config)
    sink = DeadLetters()
    offsets = OffsetTracker()
    stats = PipelineStats()
    stored: list = []
    writer = FrameWriter(
        store,
        sink,
        RetryPolicy.from_config(config),
        run_id=store.start_run("m", "b", "fp32", "digest"),
        class_names={1: "person", 3: "car"},
    )
    stage = PersistStage(
        writer,
        offsets,
        GRID,
        stats,
        PipelineMetrics(),
        Readiness(HealthConfig(), store.ping),
        on_stored=lambda frame, step: stored.append(frame),
        order=KeyOrder(),
    )
    yield stage, store, sink, offsets, stats, stored
    store.close()


def test_persist_stores_a_frame_marks_its_offset_durable_and_completes_the_car(persist, jpeg: bytes) -> None:
    stage, store, sink, offsets, stats, stored = persist
    for shot in range(2):
        step = detected_of(frame_record(jpeg, shot=shot, offset=shot), Detections([[100, 100, 200, 300]], [0.9], [3]))
        offsets.polled(step.tp, step.offset)
        stage(step)
    assert (stats.frames_stored, stats.frames_parked, stats.detections) == (2, 0, 2) and sink.letters == []
    assert len(stats.cars_completed) == 1 and len(stored) == 2
    assert offsets.pending() == 0 and [tp.offset for tp in offsets.to_commit()] == [2]
    assert AnalyticsReader(store.engine).car_row("car-1").complete
    np.testing.assert_allclose(frame_boxes(store.engine, "car-1", 0, 1).xyxy, [[100, 100, 200, 300]])
    assert stats.stage_totals_s["db_write"] > 0


def test_persist_parks_a_refused_record_with_a_dead_letter_and_a_rejected_row(persist, jpeg: bytes) -> None:
    stage, store, sink, offsets, stats, stored = persist
    step = step_of(frame_record(jpeg, camera=b"two", offset=5))
    offsets.polled(step.tp, step.offset)
    stage(step)
    assert (stats.frames_stored, stats.frames_parked) == (0, 1) and stored == []
    (letter,) = sink.letters
    assert letter.error_kind == "bad_message" and letter.source_offset == 5 and letter.value == jpeg
    (row,) = rejected(store.engine)
    assert row.error_kind == "bad_message"
    assert offsets.pending() == 0


def test_persist_parks_a_known_frame_with_an_error_row_that_counts_toward_its_car(persist, jpeg: bytes) -> None:
    stage, store, sink, offsets, stats, stored = persist
    step = received_of(frame_record(jpeg, shot=1)).parked(
        ImageError("frame car=car-1 cam=0 shot=1: corrupt JPEG", field="payload")
    )
    stage(step)
    assert stats.frames_parked == 1 and sink.letters[0].error_kind == "bad_image"
    assert AnalyticsReader(store.engine).car_row("car-1").errors == 1 and len(stored) == 1  # the error row is the frame's slot


def test_key_order_holds_a_record_until_the_earlier_records_of_its_key_arrived(jpeg: bytes) -> None:
    order = KeyOrder()
    steps = [step_of(frame_record(jpeg, shot=shot, offset=offset)) for offset, shot in enumerate([0, 1, 0, 0])]
    nameless = step_of(frame_record(jpeg, camera=b"two", offset=9))
    for step in [*steps, nameless]:
        order.admit(step)
    assert order.arrived(steps[3]) == [] and order.arrived(steps[2]) == []
    assert order.arrived(steps[1]) == [steps[1]]  # another key: not held
    assert order.arrived(nameless) == [nameless]  # no frame key: not held
    assert order.arrived(steps[0]) == [steps[0], steps[2], steps[3]]
    again = step_of(frame_record(jpeg, shot=0, offset=7))  # nothing of the key is held any more
    order.admit(again)
    assert order.arrived(again) == [again]


def test_persist_applies_retakes_of_one_frame_in_offset_order_whatever_order_they_arrive(persist, jpeg: bytes) -> None:
    """Three retakes of shot 0 reach persist last-first: the last offset's detections and image are what stays."""
    stage, store, sink, offsets, stats, stored = persist
    steps = []
    for offset in range(3):
        step = detected_of(frame_record(jpeg, shot=0, offset=offset), Detections([[10 * (offset + 1), 10, 100, 100]], [0.9], [3]))
        offsets.polled(step.tp, step.offset)
        stage.order.admit(step)
        steps.append(step)
    stage(steps[2])
    stage(steps[1])
    assert stored == [] and offsets.pending() == 3  # held: offset 0 is still on its way
    stage(steps[0])
    assert [frame.replaced for frame in stored] == [False, True, True] and offsets.pending() == 0
    with store.engine.connect() as conn:
        (offset,) = conn.execute(text("SELECT kafka_offset FROM frames")).one()
    assert offset == 2
    np.testing.assert_allclose(frame_boxes(store.engine, "car-1", 0, 0).xyxy, [[30, 10, 100, 100]])


def test_persist_group_commit_writes_queued_frames_in_one_transaction_before_their_offsets(persist, jpeg: bytes) -> None:
    from sqlalchemy import event

    stage, store, sink, offsets, stats, stored = persist
    backlog = [1]
    stage.batch_frames, stage.backlog = 8, lambda: backlog[0]
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    steps = [
        detected_of(frame_record(jpeg, shot=shot, offset=shot), Detections([[100, 100, 200, 300]], [0.9], [3]))
        for shot in range(2)
    ]
    for step in steps:
        offsets.polled(step.tp, step.offset)
    stage(steps[0])  # another record is queued behind it: held, nothing written, its offset not durable
    assert stats.frames_stored == 0 and offsets.pending() == 2 and commits == []
    backlog[0] = 0
    stage(steps[1])  # the queue is empty: both frames in one transaction, then both offsets durable
    assert stats.frames_stored == 2 and len(commits) == 1 and offsets.pending() == 0
    assert AnalyticsReader(store.engine).car_row("car-1").complete and len(stats.cars_completed) == 1


def test_persist_group_commit_parks_only_the_refused_frame_and_flushes_on_stop(persist, jpeg: bytes) -> None:
    stage, store, sink, offsets, stats, stored = persist
    stage.batch_frames, stage.backlog = 8, lambda: 1  # always something queued: only flush() writes
    good = detected_of(frame_record(jpeg, shot=0, offset=0), Detections([[100, 100, 200, 300]], [0.9], [3]))
    bad = detected_of(frame_record(jpeg, shot=1, offset=1), Detections([[100, 100, float("nan"), 300]], [0.9], [3]))
    for step in (good, bad):
        offsets.polled(step.tp, step.offset)
        stage(step)
    assert stats.frames_handled == 0
    stage.flush()  # what the runner calls when the stop marker reaches the stage
    assert (stats.frames_stored, stats.frames_parked) == (1, 1) and sink.letters[0].source_offset == 1
    assert offsets.pending() == 0 and AnalyticsReader(store.engine).car_row("car-1").errors == 1


def test_a_stage_finish_runs_once_when_the_stop_marker_reaches_it() -> None:
    seen: list[str] = []
    runner = StageRunner([Stage("a", (lambda item: item,)), Stage("b", (seen.append,), finish=lambda: seen.append("finish"))])
    runner.start()
    runner.put("x")
    runner.close()
    runner.join()
    assert seen == ["x", "finish"] and runner.failure is None


def test_route_sends_an_item_ahead_from_the_feed_or_from_a_stage_and_it_still_precedes_the_stop() -> None:
    """Items marked "bad…" skip to the last stage: fed so (put) or answered so by the first stage."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def step(name: str, answer=lambda item: item):
        def process(item: str) -> str:
            with lock:
                seen.append((name, item))
            return answer(item)

        return process

    runner = StageRunner(
        [
            Stage.threads("prepare", step("prepare", lambda item: "bad " + item if item.startswith("corrupt") else item), 2),
            Stage("infer", (step("infer"),)),
            Stage("persist", (step("persist"),), finish=lambda: seen.append(("finish", ""))),
        ],
        route=lambda item: "persist" if item.startswith("bad") else None,
    )
    runner.start()
    items = [f"bad header {i}" if i % 3 == 0 else f"corrupt {i}" if i % 3 == 1 else f"frame {i}" for i in range(30)]
    for item in items:
        runner.put(item)
    runner.close()
    runner.join()
    assert runner.failure is None and seen[-1] == ("finish", "")  # everything reached persist before it finished
    by_stage = {name: [item for n, item in seen if n == name] for name in ("prepare", "infer", "persist")}
    assert not any(item.startswith("bad") for item in by_stage["prepare"] + by_stage["infer"])
    assert sorted(by_stage["infer"]) == sorted(i for i in items if i.startswith("frame"))
    assert sorted(by_stage["persist"]) == sorted(i if not i.startswith("corrupt") else "bad " + i for i in items)


def test_a_route_back_to_an_earlier_stage_fails_the_chain() -> None:
    runner = StageRunner(
        [Stage("prepare", (lambda item: item,)), Stage("persist", (lambda item: item,))],
        route=lambda item: "prepare" if item == "loop" else None,
    )
    runner.start()
    runner.put("loop")  # fed to the first stage: allowed; answered back to it by that stage: refused
    runner.close()
    runner.join()
    assert isinstance(runner.failure, ValueError) and "stage prepare back to stage prepare" in str(runner.failure)


def test_persist_group_commit_batches_the_records_key_order_releases_and_writes_a_retake_after_its_predecessor(
    persist, jpeg: bytes
) -> None:
    """Shot 0 at offsets 0 and 2 (a retake), shot 1 at offset 1, arriving 2, 1, 0 with frames always queued behind:
    the retake waits for offset 0, offsets 0 and 1 go in one transaction, the retake in the next one, and it wins."""
    from sqlalchemy import event

    stage, store, sink, offsets, stats, stored = persist
    stage.batch_frames, stage.backlog = (
        8,
        lambda: 1,
    )  # always something queued: only a full batch, a repeated key or flush() writes
    commits: list[int] = []
    event.listen(store.engine, "commit", lambda conn: commits.append(1))
    steps = []
    for offset, shot in enumerate([0, 1, 0]):
        step = detected_of(
            frame_record(jpeg, shot=shot, offset=offset), Detections([[10 * (offset + 1), 10, 100, 100]], [0.9], [3])
        )
        offsets.polled(step.tp, step.offset)
        stage.order.admit(step)
        steps.append(step)
    stage(steps[2])  # held by KeyOrder: offset 0 of its key is still on its way
    stage(steps[1])  # ready: joins the batch
    assert commits == [] and offsets.pending() == 3
    stage(steps[0])  # releases offset 0 and its retake: the retake's key is in the batch, so the batch is written first
    assert len(commits) == 1 and [frame.frame.shot for frame in stored] == [1, 0] and offsets.pending() == 1
    stage.flush()
    assert len(commits) == 2 and stored[-1].replaced and offsets.pending() == 0
    with store.engine.connect() as conn:
        (offset,) = conn.execute(text("SELECT kafka_offset FROM frames WHERE shot = 0")).one()
    assert offset == 2
    np.testing.assert_allclose(frame_boxes(store.engine, "car-1", 0, 0).xyxy, [[30, 10, 100, 100]])
