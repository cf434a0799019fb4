"""The record's path as typed steps, through the stages as `EdgePipeline` wires them (no broker).

Records go in as the pipeline's `run` loop feeds them (`KafkaSource.accept`, then `StageRunner.put`)
into the runner `EdgePipeline` builds, with a fake detector and an SQLite store: a good frame passes
Received → Prepared → Detected → stored; a record refused at the source or by decoding is Parked and
goes straight to persist, never seen by the stages between; every offset ends stored or parked once.
"""

from __future__ import annotations

import collections
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from inspection.config import GridConfig, Settings
from inspection.detect import Detector, load_spec
from inspection.detections import Detections
from inspection.edge.infer import InferStage
from inspection.edge.persist import FrameWriter, PersistStage
from inspection.edge.pipeline import EdgePipeline
from inspection.edge.prepare import PrepareStage
from inspection.edge.steps import Detected, Parked, Prepared, Received
from inspection.messages.contract import FrameMessage
from inspection.messages.dead_letters import DeadLetter
from inspection.messages.frame_id import FrameId
from inspection.messages.images import encode_image
from inspection.store import ResultStore, RetryPolicy
from tests.unit.test_edge_stages import Record  # the in-memory Kafka record the stage tests use

GRID = GridConfig(frame_width=600, frame_height=300, tile_size=300, batch_size=4)  # small frames: cheap to decode
CAMERAS, SHOTS = 2, 2
KINDS = ("good", "header", "content", "corrupt")
# What each kind of record becomes: the stages it passes (with the step each one gets) and its dead letter's kind.
PATH = {
    "good": [("prepare", "Received"), ("infer", "Prepared"), ("persist", "Detected")],
    "header": [("persist", "Parked")],  # refused at the source: names no frame of the line
    "content": [("persist", "Parked")],  # refused at the source: the payload is not its content type
    "corrupt": [("prepare", "Received"), ("persist", "Parked")],  # refused by decoding
}
LETTER = {"header": "bad_message", "content": "content_type_mismatch", "corrupt": "bad_image"}


def _jpeg() -> bytes:
    frame = np.zeros((GRID.frame_height, GRID.frame_width, 3), np.uint8)
    frame[:, :, 1] = np.arange(GRID.frame_width, dtype=np.uint32)[None, :] % 251
    return encode_image(frame, 80)


JPEG = _jpeg()


def record(kind: str, camera: int, shot: int, offset: int) -> Record:
    payload = {"corrupt": JPEG[: len(JPEG) // 2] + b"\xff\xd9", "content": b"\x89PNG\r\n\x1a\n" + JPEG[8:]}.get(kind, JPEG)
    now = time.time_ns()
    frame = FrameMessage(
        frame_id=FrameId("car-1", camera, shot, CAMERAS * SHOTS), captured_at_ns=now, deadline_at_ns=now + 10**10, payload=payload
    )
    key, value, headers = frame.encode()
    if kind == "header":
        headers = [(n, b"two" if n == "camera" else v) for n, v in headers]
    return Record(key, value, headers, offset)


class OneBox(Detector):
    """One box on tile 0 of every frame; counts its calls."""

    backend = "fixed"
    precision = "fp32"

    def __init__(self) -> None:
        self.spec = load_spec("ssd_mobilenet_v2_coco")
        self.calls = 0

    def detect(self, tiles: np.ndarray, score_threshold: float | None = None) -> Detections:
        self.calls += 1
        return Detections([[10, 20, 30, 40]], [0.9], [1], [0])


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def send(self, letter: DeadLetter) -> tuple[int, int]:
        self.letters.append(letter)
        return (0, len(self.letters) - 1)


@dataclass
class Run:
    """What became of the records: each stage's (offset, step type) in arrival order, the offsets made durable."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)
    durable: list[int] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    frames: dict[tuple[int, int], tuple[int, str | None]] = field(default_factory=dict)  # (camera, shot) -> offset, error
    rejected: list[int] = field(default_factory=list)
    committable: list[int] = field(default_factory=list)
    stored: int = 0
    parked: int = 0
    detector_calls: int = 0


def run_records(records: list[Record], batch_frames: int, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Feed `records` through the pipeline's own stages and routing, as its `run` loop does, and stop (drain)."""
    out = Run()

    def watch(cls: type, stage: str) -> None:
        original = cls.__call__

        def call(self, step):
            out.seen.append((stage, step.offset, type(step).__name__))
            return original(self, step)

        monkeypatch.setattr(cls, "__call__", call)

    for cls, stage in ((PrepareStage, "prepare"), (InferStage, "infer"), (PersistStage, "persist")):
        watch(cls, stage)
    done = PersistStage._done
    monkeypatch.setattr(
        PersistStage, "_done", lambda self, step, outcome: (out.durable.append(step.offset), done(self, step, outcome))
    )

    config = Settings(
        grid=GRID,
        line={"cameras": CAMERAS, "shots_per_camera": SHOTS},
        pipeline={"store_batch_frames": batch_frames, "decode_workers": 2, "queue_size": 2},
        store={"url": f"sqlite:///{folder / 'results.db'}"},
    )
    store = ResultStore.open(config.store)
    detector = OneBox()
    sink = DeadLetters()
    try:
        pipeline = EdgePipeline(config, detector, store, "unused:9092")
        writer = FrameWriter(
            store,
            sink,
            RetryPolicy.from_config(config.store),
            run_id=store.start_run("m", "b", "fp32", "d"),
            class_names={1: "a"},
        )
        runner = pipeline._build(pipeline._preparer_for_run(), writer)
        runner.start()
        for each in records:
            step = pipeline.source.accept(each)  # what run() does with each polled record
            assert step is not None
            runner.put(step)
        runner.close()
        runner.join()
        assert runner.failure is None, runner.failure
        with store.engine.connect() as conn:
            for camera, shot, offset, error_kind in conn.execute(
                text("SELECT camera, shot, kafka_offset, error_kind FROM frames")
            ):
                out.frames[(camera, shot)] = (offset, error_kind)
            out.rejected = sorted(o for (o,) in conn.execute(text("SELECT kafka_offset FROM rejected_messages")))
        out.committable = [tp.offset for tp in pipeline.offsets.to_commit()]
        out.letters, out.stored, out.parked = sink.letters, pipeline.stats.frames_stored, pipeline.stats.frames_parked
        out.detector_calls = detector.calls
    finally:
        store.close()
    return out


def check(kinds: list[str], slots: list[tuple[int, int]], run: Run) -> None:
    """Every offset took its kind's path, in the order of the steps, and ended stored or parked exactly once."""
    n = len(kinds)
    for offset, kind in enumerate(kinds):
        assert [(stage, name) for stage, o, name in run.seen if o == offset] == PATH[kind], (offset, kind)
    assert collections.Counter(run.durable) == collections.Counter(range(n))  # each exactly once
    assert run.committable == [n] and run.stored + run.parked == n
    assert run.stored == kinds.count("good") and run.detector_calls == kinds.count("good")
    assert sorted((letter.source_offset, letter.error_kind) for letter in run.letters) == [
        (o, LETTER[k]) for o, k in enumerate(kinds) if k != "good"
    ]
    assert run.rejected == [o for o, k in enumerate(kinds) if k == "header"]  # no frame named: a rejected row
    # Each slot's row is its last good record (a retake wins; an error never overwrites a result), else its last error.
    named = [(o, k, slot) for o, (k, slot) in enumerate(zip(kinds, slots)) if k != "header"]
    last = {slot: (o, k) for o, k, slot in named}
    last.update({slot: (o, k) for o, k, slot in named if k == "good"})
    assert run.frames == {slot: (o, None if k == "good" else LETTER[k]) for slot, (o, k) in last.items()}


def test_a_refused_record_skips_prepare_and_detect_and_is_parked_with_its_reason(tmp_path: Path, monkeypatch) -> None:
    kinds = ["good", "header", "corrupt", "content", "good"]
    slots = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 1)]
    run = run_records([record(k, c, s, o) for o, (k, (c, s)) in enumerate(zip(kinds, slots))], 1, tmp_path, monkeypatch)
    check(kinds, slots, run)
    assert ("infer", 2, "Prepared") not in run.seen and ("persist", 2, "Parked") in run.seen  # corrupt: no detector call
    reasons = {letter.source_offset: letter.error for letter in run.letters}
    assert "camera" in reasons[1] and "car=car-1 cam=1 shot=0" in reasons[2] and "content" in reasons[3].lower()


records_strategy = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, CAMERAS - 1), st.integers(0, SHOTS - 1)), min_size=1, max_size=10
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mix=records_strategy, batch_frames=st.sampled_from([1, 4]))
def test_any_mix_of_records_flows_in_step_order_and_each_offset_ends_stored_or_parked_once(
    mix, batch_frames, monkeypatch
) -> None:
    kinds = [k for k, _, _ in mix]
    slots = [(c, s) for _, c, s in mix]
    with tempfile.TemporaryDirectory() as folder, monkeypatch.context() as patch:
        run = run_records([record(k, c, s, o) for o, (k, c, s) in enumerate(mix)], batch_frames, Path(folder), patch)
    check(kinds, slots, run)


def test_steps_are_frozen_and_share_one_clock_and_the_batch() -> None:
    """A stage makes the next step; it never fills in fields of the one it got (no copy of the tiles either)."""
    source_step = EdgePipeline(
        Settings(grid=GRID, line={"cameras": CAMERAS, "shots_per_camera": SHOTS}), OneBox(), ResultStoreStub(), "unused:9092"
    ).source.accept(record("good", 0, 0, 0))
    assert isinstance(source_step, Received)
    batch = np.zeros((4, 300, 300, 3), np.uint8)
    prepared = source_step.prepared(batch)
    detected = prepared.detected(Detections.empty())
    assert isinstance(prepared, Prepared) and prepared.batch is batch and isinstance(detected, Detected)
    assert prepared.clock is source_step.clock is detected.clock and detected.frame is source_step.frame
    parked = prepared.parked(ValueError("x"))
    assert isinstance(parked, Parked) and parked.frame is source_step.frame and parked.offset == 0
    with pytest.raises(AttributeError):
        source_step.frame = None  # type: ignore[misc]


class ResultStoreStub:
    """What `EdgePipeline`'s constructor reads of a store."""

    def ping(self) -> None:
        return None
