"""Every car's frames split evenly over the consumers of a group (real broker, the group's own assignor).

Producers pick partition = frame index within the car mod P (`FramePartitioner`); with P = 12 the
group's cooperative-sticky assignor gives each of C = 1..4 consumers P/C partitions, so each gets
95/C frames of every car, within ceil(95/P).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer

from inspection.config import KafkaConfig, LineConfig
from inspection.kafka import FrameProducer, consumer_config, ensure_topics
from inspection.kafka.partitioning import FramePartitioner
from inspection.messages.contract import FrameMessage
from inspection.messages.frame_id import FrameId

pytestmark = pytest.mark.timeout(240)

LINE = LineConfig()  # 5 cameras x 19 shots = 95 frames per car
PARTITIONS = 12


def test_partition_is_the_frame_index_mod_p() -> None:
    part = FramePartitioner(shots_per_camera=19, partitions=12)
    assert part.partition(0, 0) == 0
    assert part.partition(0, 13) == 1  # frame 13 -> partition 1
    assert part.partition(4, 18) == 94 % 12
    counts = Counter(int(part.partition(c, s)) for c in range(5) for s in range(19))
    assert sorted(counts) == list(range(12)) and max(counts.values()) - min(counts.values()) <= 1
    with pytest.raises(ValueError, match="partitions > 0"):
        FramePartitioner(shots_per_camera=19, partitions=0)


def _send_cars(cfg: KafkaConfig, cars: list[str], shots_per_camera: int | None) -> None:
    with FrameProducer(cfg.bootstrap_servers, cfg, shots_per_camera=shots_per_camera) as producer:
        for car in cars:
            for cam in range(LINE.cameras):
                for shot in range(LINE.shots_per_camera):
                    producer.send(
                        FrameMessage(
                            frame_id=FrameId(car, cam, shot, LINE.frames_per_car),
                            captured_at_ns=time.time_ns(),
                            deadline_at_ns=time.time_ns() + 10**11,
                            payload=b"\xff\xd8 not decoded here",
                        )
                    )


def _consume_split(cfg: KafkaConfig, consumers: int, cars: list[str], shots_per_camera: int | None) -> list[Counter]:
    """Start `consumers` members of one group, wait until the group has settled, send the cars,
    return per member how many frames of each car it received."""
    members = [Consumer(consumer_config(cfg.bootstrap_servers, cfg, client_id=f"member-{i}")) for i in range(consumers)]
    got: list[Counter] = [Counter() for _ in members]
    owned: list[set[int]] = [set() for _ in members]  # kept by the poll thread's rebalance callbacks
    stop = threading.Event()
    for k, m in enumerate(members):
        m.subscribe(
            [cfg.topic],
            on_assign=lambda _c, parts, k=k: owned[k].update(p.partition for p in parts),
            on_revoke=lambda _c, parts, k=k: owned[k].difference_update(p.partition for p in parts),
        )

    def loop(k: int) -> None:
        while not stop.is_set():
            msg = members[k].poll(0.1)
            if msg is not None and msg.error() is None:
                got[k][msg.key().decode().split(":")[0]] += 1

    threads = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(consumers)]
    for t in threads:
        t.start()
    try:
        limit = time.monotonic() + 90
        while sorted(len(o) for o in owned) != [PARTITIONS // consumers] * consumers:
            assert time.monotonic() < limit, f"group of {consumers} never settled: {owned}"
            time.sleep(0.2)
        time.sleep(1.0)  # the last member's fetch position is established
        _send_cars(cfg, cars, shots_per_camera)
        total = LINE.frames_per_car * len(cars)
        while sum(sum(c.values()) for c in got) < total:
            assert time.monotonic() < limit + 60, f"only {sum(sum(c.values()) for c in got)}/{total} frames consumed"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        for m in members:
            m.close()
    return got


@pytest.mark.parametrize("consumers", [1, 2, 3, 4])
def test_every_car_splits_evenly_over_the_group(kafka_config: KafkaConfig, consumers: int) -> None:
    cfg = kafka_config.model_copy(update={"partitions": PARTITIONS})
    ensure_topics(cfg.bootstrap_servers, cfg)
    cars = [f"car-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    got = _consume_split(cfg, consumers, cars, LINE.shots_per_camera)
    for car in cars:
        shares = [c[car] for c in got]
        assert sum(shares) == LINE.frames_per_car, shares  # nothing lost or duplicated
        assert max(shares) - min(shares) <= math.ceil(LINE.frames_per_car / PARTITIONS), (car, shares)
        # each member owns P/C partitions of 7 or 8 of the car's frames: tighter than the bound above
        assert max(shares) - min(shares) <= PARTITIONS // consumers, (car, shares)


def test_key_hashing_producers_still_deliver_everything(kafka_config: KafkaConfig) -> None:
    """A producer of the old contract (no partition choice) still works with the new consumers."""
    cfg = kafka_config.model_copy(update={"partitions": PARTITIONS})
    ensure_topics(cfg.bootstrap_servers, cfg)
    car = f"car-{uuid.uuid4().hex[:6]}"
    got = _consume_split(cfg, 2, [car], shots_per_camera=None)
    assert sum(c[car] for c in got) == LINE.frames_per_car
    # keys hash to at most five partitions: one member may get most of the car
    assert all(c[car] % LINE.shots_per_camera == 0 for c in got)
