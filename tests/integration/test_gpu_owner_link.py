"""The GPU owner's link to its workers survives what the line does to worker processes (real owner process,
real detector on the CPU, real worker processes, SIGKILL).

A worker killed while it waits for an answer must leave nothing behind that its successor trips on (the
old shared answer queue kept its lock held, and the successor's first frame timed out); an owner that dies
must fail its workers at once rather than after the answer timeout.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inspection.config import GridConfig, ModelConfig, Settings
from inspection.detect import create_detector
from inspection.edge.gpu_owner import GpuLink, LinkedDetector, create_link, serve_gpu
from inspection.tiling import TileGrid
from synthetic.photos import PhotoFrameSource

pytestmark = pytest.mark.timeout(300)

GRID = GridConfig(frame_width=600, frame_height=600, tile_size=300, batch_size=4)
ANSWER_TIMEOUT_S = 60.0  # far beyond one 5-tile call on the CPU; the old successor waited this long, then failed


def _settings(yolox_onnx: Path) -> Settings:
    return Settings(grid=GRID, model=ModelConfig(name="yolox_nano", backend="onnxruntime", path=yolox_onnx, threads=1))


def _tiles(grid: TileGrid) -> np.ndarray:
    return grid.tiles(PhotoFrameSource(grid, seed=3)(0, 0, 0))


@contextlib.contextmanager
def _connected(settings: Settings, link: GpuLink, slot: int = 0) -> Iterator[tuple[LinkedDetector, np.ndarray]]:
    """Worker 0's detector, connected to the owner, and its slab slot `slot` holding a photo frame's tiles."""
    worker = LinkedDetector(settings, link, 0)
    try:
        worker.warmup((GRID.tile_size, GRID.tile_size))
        batch = worker.pool[slot]
        batch[...] = _tiles(TileGrid.from_config(settings.grid))
        yield worker, batch
    finally:
        worker.close()


def _ask_forever(settings: Settings, link: GpuLink, answered: str) -> None:
    """A worker process: detect the same frame again and again, counting answers in a file."""
    with _connected(settings, link) as (detector, batch):
        count = 0
        while True:
            detector.detect(batch)
            count += 1
            Path(answered).write_text(str(count))


def _answers(path: Path) -> int:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else 0


def _wait(condition, timeout_s: float, what: str) -> None:
    limit = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < limit, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def owner(yolox_onnx, tmp_path):
    """A running GPU owner (onnxruntime on the CPU) with one worker slot, and its settings."""
    settings = _settings(yolox_onnx)
    link, slabs = create_link(TileGrid.from_config(GRID), 1, 3, ANSWER_TIMEOUT_S, str(tmp_path / "owner.sock"))
    process = mp.get_context("spawn").Process(target=serve_gpu, args=(settings, link, None), daemon=True)
    process.start()
    try:
        yield settings, link, process
    finally:
        if process.is_alive():
            link.stop_owner()
            process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
        for slab in slabs:
            slab.close()
            slab.memory.unlink()


def test_a_worker_killed_while_it_waits_leaves_its_successor_a_working_link(owner, tmp_path):
    settings, link, _ = owner
    grid = TileGrid.from_config(settings.grid)
    ctx = mp.get_context("spawn")
    for round_ in range(3):  # each victim spends nearly all its time waiting for an answer when it is killed
        answered = tmp_path / f"answered-{round_}"
        victim = ctx.Process(target=_ask_forever, args=(settings, link, str(answered)), daemon=True)
        victim.start()
        _wait(lambda path=answered: _answers(path) >= 3, 120, "the victim's first answers")
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()

    with _connected(settings, link, slot=1) as (successor, batch):
        found = successor.detect(batch)  # raised "did not answer within 60 s" with the shared queue
        again = successor.detect(batch)
    direct = create_detector(settings.model, settings.detect)
    try:
        expected = direct.detect(_tiles(grid))
    finally:
        direct.close()
    assert len(expected.score) > 0  # a real photo: the answer is worth comparing
    for got in (found, again):  # its own answers, not a predecessor's
        np.testing.assert_array_equal(got.tile_index, expected.tile_index)
        np.testing.assert_array_equal(got.class_id, expected.class_id)
        np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3)
        np.testing.assert_allclose(got.score, expected.score, atol=1e-5)


def test_a_dead_owner_fails_its_worker_at_once_and_a_stopped_one_ends(owner):
    settings, link, process = owner
    with _connected(settings, link) as (worker, batch):
        worker.detect(batch)
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        with pytest.raises(RuntimeError, match="closed the link"):  # told by the socket, not by the timeout
            worker.detect(batch)
    assert not link.stop_owner()  # nobody listens any more


def test_the_supervisors_stop_ends_the_owner_after_answering(owner):
    settings, link, process = owner
    with _connected(settings, link) as (worker, batch):
        assert len(worker.detect(batch).score) > 0
        assert link.stop_owner()
        process.join(30)
        assert process.exitcode == 0
