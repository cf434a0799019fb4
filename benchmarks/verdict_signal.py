"""Cost of the inspection verdict and the line signal (issue 19), on the dev machine.

1. Deciding a 95-frame car: the verdict writer's time inside the real store transaction that completes
   the car (its 95th frame): read the car's boxes of the rules' classes, apply the rules, insert the
   verdict, its defects and the outbox row; median over `--cars` cars (after one warm-up car). The
   whole last-frame transaction with and without the writer is reported beside it (noisier).
   Boxes: `--boxes` per frame of random COCO classes (2 of the 80 are defects), random scores.
2. Publishing it: one outbox round for that car to a real Mosquitto (QoS 1 on the car topic and the
   retained last, each waited for its PUBACK, then the row deleted).
3. A 24-hour backlog: 1,440 decided cars waiting in the outbox (one car a minute), drained to the
   broker by the relay (`OutboxRelay.drain`), timed from the first claim to the empty outbox.

    python benchmarks/verdict_signal.py --out benchmarks/cpu-2core/verdict_signal.json

Needs the mosquitto binary (Debian package mosquitto); starts its own instance on a free port.
Targets (issue 19): decide + publish <= 5 ms per car; 1,440-car backlog drained in <= 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from inspection.detect.registry import load_spec
from inspection.detections import Detections
from inspection.messages.frame_id import FrameId
from inspection.rules import RulesConfig, RuleSet
from inspection.rules.verdict import VerdictWriter
from inspection.signal.config import MqttConfig, SignalConfig
from inspection.signal.mqtt import MqttSink
from inspection.signal.outbox import OutboxMetrics, OutboxRelay
from inspection.store import FrameRecord, ResultStore, upgrade_database

S = 1_000_000_000
NAMES = load_spec("ssd_mobilenet_v2_coco").class_names  # the 80 COCO classes: defect classes are 2 of them
RULES = RulesConfig.model_validate(
    {
        "defects": [{"class": "cell phone", "min_score": 0.4, "min_size_px": 16}, {"class": "person", "min_score": 0.6}],
        "cameras": {0: {"ignore": [{"name": "fixture", "points": [[0, 0], [400, 0], [400, 300], [0, 300], [0, 0]]}]}},
        "car": {"ng_on_any": False, "counts": {"cell phone": 1, "person": 3}},
    }
)


def boxes(rng: np.random.Generator, n: int) -> Detections:
    xy = rng.uniform(0, 2500, (n, 2))
    wh = rng.uniform(10, 200, (n, 2))
    return Detections(np.concatenate([xy, xy + wh], 1), rng.uniform(0.3, 1, n), rng.choice(list(NAMES), n).astype(np.int32))


def frame(car: str, index: int, run_id: int) -> FrameRecord:
    t0 = time.time_ns()
    return FrameRecord(FrameId(car, index // 19, index % 19, 95), t0, t0 + 60 * S, t0, t0, run_id)


class TimedWriter(VerdictWriter):
    """The verdict writer, timing each decision inside the real completing transaction."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seconds: list[float] = []

    def decide_complete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return super().decide_complete(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cars", type=int, default=10, help="cars completed with and without the verdict writer")
    parser.add_argument("--boxes", type=int, default=30, help="boxes per frame")
    parser.add_argument("--backlog", type=int, default=1440)
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="verdict-bench-"))
    url = args.db or f"sqlite:///{folder / 'bench.db'}"
    upgrade_database(url)
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else ""))
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    rng = np.random.default_rng(0)
    writer = TimedWriter(RuleSet.compile(RULES, NAMES), "ssd_mobilenet_v2_coco")
    config = SignalConfig(line="bench", batch=500, mqtt=MqttConfig(enabled=True, port=port, client_id="bench"))
    sink = MqttSink(config.mqtt, config.line)
    try:
        with ResultStore(url) as store:
            run_id = store.start_run("m", "onnxruntime", "fp32", "bench", host="bench", consumer_id="bench")
            sink.start()
            relay = OutboxRelay(store.engine, [sink], config, OutboxMetrics())
            deadline = time.monotonic() + 10
            while not (sink._client and sink._client.is_connected()) and time.monotonic() < deadline:
                time.sleep(0.05)
            last_frame_s: dict[str, list[float]] = {"without": [], "with": []}
            publish_s: list[float] = []
            for k in range(-1, args.cars):  # car -1: warm-up (statement compilation), not counted
                for mode in ("without", "with"):
                    store.verdicts = writer if mode == "with" else None
                    car = f"{mode}-{k}"
                    for index in range(94):
                        store.store_frame(frame(car, index, run_id), boxes(rng, args.boxes), NAMES)
                    last = boxes(rng, args.boxes)
                    started = time.perf_counter()
                    stored = store.store_frame(frame(car, 94, run_id), last, NAMES)
                    if k >= 0:
                        last_frame_s[mode].append(time.perf_counter() - started)
                    assert stored.completed is not None
                    if mode == "with":
                        started = time.perf_counter()
                        assert relay.publish_round() == 1
                        if k >= 0:
                            publish_s.append(time.perf_counter() - started)
            with store.engine.connect() as conn:
                defects = [
                    n
                    for (n,) in conn.exec_driver_sql(
                        "SELECT defects FROM car_verdicts WHERE car_id LIKE 'with-%' AND car_id <> 'with--1'"
                    ).fetchall()
                ]
            # the backlog: 1,440 decided one-frame cars
            writer_backlog = VerdictWriter(writer.rules, writer.model)
            store.verdicts = writer_backlog
            for k in range(args.backlog):
                record = FrameRecord(
                    FrameId(f"backlog-{k}", 0, 0, 1), time.time_ns(), time.time_ns() + 60 * S, 0, time.time_ns(), run_id
                )
                store.store_frame(record, boxes(rng, 5), NAMES)
            assert relay.refresh_gauges()[0] == args.backlog
            started = time.perf_counter()
            drained = relay.drain()
            drain_s = time.perf_counter() - started
            assert drained == args.backlog and relay.refresh_gauges()[0] == 0
    finally:
        sink.close()
        broker.terminate()
        broker.wait(10)
    decide_ms = 1000 * statistics.median(writer.seconds[1:])
    publish_ms = 1000 * statistics.median(publish_s)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"dev machine, {os.cpu_count()} shared cores ({platform.processor() or platform.machine()}), loaded by parallel work",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": url.split(":")[0],
        "cars": args.cars,
        "frames_per_car": 95,
        "boxes_per_frame": args.boxes,
        "last_frame_store_ms_median": {m: round(1000 * statistics.median(v), 2) for m, v in last_frame_s.items()},
        "decide_ms_median": round(decide_ms, 2),
        "decide_ms_max": round(1000 * max(writer.seconds[1:]), 2),
        "defects_per_car_median": statistics.median(defects),
        "publish_ms_median": round(publish_ms, 2),
        "decide_plus_publish_ms": round(decide_ms + publish_ms, 2),
        "target_decide_plus_publish_ms": 5.0,
        "backlog_cars": args.backlog,
        "backlog_drain_s": round(drain_s, 3),
        "target_backlog_drain_s": 10.0,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
