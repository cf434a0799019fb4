"""The Kafka side against the real embedded tansu broker: lifecycle, topics, frames, dead letters, line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from inspection.config import KafkaConfig, LineConfig
from inspection.kafka import (
    BrokerStartError,
    BrokerUnreachableError,
    DeadLetterProducer,
    DeliveryError,
    EmbeddedBroker,
    FrameProducer,
    check_reachable,
    consumer_config,
    ensure_topics,
    topic_max_message_bytes,
)
from inspection.kafka.broker import free_port
from inspection.messages.contract import FrameMessage, payload_limit
from inspection.messages.dead_letters import DeadLetter
from inspection.messages.errors import MessageError, PayloadTooLargeError
from inspection.messages.frame_id import FrameId
from inspection.messages.images import decode_image, encode_image
from synthetic.line import LineSimulator, car_id
from tests.processes import process_alive

W, H = 2700, 2100


def gradient(seed: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x + seed) % 256, y % 256, (x + y + 40 * seed) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    return [encode_image(gradient(seed), 85) for seed in range(2)]


def consume(consumer: Consumer, count: int, timeout_s: float = 30.0) -> list:
    """Poll until `count` records arrived (failing on consumer errors) or the timeout passes."""
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        records.append(msg)
    return records


def assigned_consumer(bootstrap: str, cfg: KafkaConfig, topic: str) -> Consumer:
    """A consumer reading every partition of `topic` from the start, without a group join."""
    consumer = Consumer(consumer_config(bootstrap, cfg))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


# ----------------------------------------------------------------------------- broker lifecycle


def test_embedded_broker_starts_answers_and_leaves_no_process() -> None:
    with EmbeddedBroker() as broker:
        pid = broker.pid
        assert broker.running and process_alive(pid)
        check_reachable(broker.bootstrap_servers, timeout=5)
    assert not broker.running
    assert not process_alive(pid)
    broker.stop()  # idempotent


def test_broker_dies_with_killed_parent(tmp_path) -> None:
    code = (
        "import sys, time; from inspection.kafka import EmbeddedBroker\n"
        "b = EmbeddedBroker(log_path=sys.argv[1]).start(); print(b.pid, flush=True); time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "tansu.log")], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert process_alive(pid)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if not process_alive(pid):
            break
        time.sleep(0.1)
    assert not process_alive(pid), f"tansu pid {pid} outlived its killed parent"


def test_broker_on_busy_port_fails_clearly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BrokerStartError, match=f"127.0.0.1:{port}: the port is in use"):
            EmbeddedBroker(port=port).start()


def test_unreachable_broker_named_in_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(BrokerUnreachableError, match=f"no Kafka broker answered at {address}"):
        check_reachable(address, timeout=1.0)
    cfg = KafkaConfig(bootstrap_servers=address, topic="frames-nowhere")
    with pytest.raises(BrokerUnreachableError, match=address):
        ensure_topics(address, cfg, timeout=1.0)


def test_undeliverable_frame_raises_at_flush_naming_it(jpegs) -> None:
    address = f"127.0.0.1:{free_port()}"
    producer = FrameProducer(address, KafkaConfig(topic="frames-nowhere"), extra_config={"message.timeout.ms": 1000})
    frame = FrameMessage(frame_id=FrameId("car-000001", 4, 18, 95), captured_at_ns=1, deadline_at_ns=2, payload=jpegs[0])
    producer.send(frame)
    with pytest.raises(DeliveryError, match="car=car-000001 cam=4 shot=18") as info:
        producer.flush(10)
    assert info.value.failures[0][:3] == ("car-000001", 4, 18)
    assert producer.stats().failed == 1 and producer.stats().delivered == 0


# ----------------------------------------------------------------------------- topics


def test_ensure_topics_creates_both_with_partitions_and_size(kafka_broker, kafka_config) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    assert ensure_topics(bootstrap, kafka_config) == [kafka_config.topic, kafka_config.dlq_topic]
    assert ensure_topics(bootstrap, kafka_config) == []  # idempotent
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert len(topics[kafka_config.topic].partitions) == kafka_config.partitions
    assert len(topics[kafka_config.dlq_topic].partitions) == kafka_config.partitions
    for name, dlq in ((kafka_config.topic, False), (kafka_config.dlq_topic, True)):
        (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)]).values()
        assert future.result()["max.message.bytes"].value == str(topic_max_message_bytes(kafka_config, dlq))


# ----------------------------------------------------------------------------- frames


def test_frames_round_trip_with_headers_through_consumer_group(kafka_broker, kafka_config, jpegs) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, kafka_config)
    sent = [
        FrameMessage(
            frame_id=FrameId("car-000042", cam, shot, 6),
            captured_at_ns=1_000 + shot,
            deadline_at_ns=9_000,
            payload=jpegs[(cam + shot) % 2],
        )
        for shot in range(3)
        for cam in range(2)
    ]
    with FrameProducer(bootstrap, kafka_config) as producer:
        for frame in sent:
            producer.send(frame)
        stats = producer.flush(30)
    assert (stats.sent, stats.delivered, stats.failed) == (6, 6, 0)

    consumer = Consumer(consumer_config(bootstrap, kafka_config))
    consumer.subscribe([kafka_config.topic])
    try:
        records = consume(consumer, len(sent))
    finally:
        consumer.close()
    assert len(records) == len(sent)
    limit = payload_limit(kafka_config.message_max_bytes)
    received = [FrameMessage.from_kafka(m, max_payload_bytes=limit) for m in records]
    assert sorted(received, key=lambda f: (f.shot, f.camera)) == sent
    for msg, frame in zip(records, received):
        assert msg.headers() == frame.headers()  # headers intact, in order
        assert msg.key() == frame.key.encode()
    # One key -> one partition, in shot order.
    by_key = defaultdict(list)
    for msg, frame in zip(records, received):
        by_key[msg.key()].append((msg.partition(), frame.shot))
    for entries in by_key.values():
        assert len({p for p, _ in entries}) == 1
        assert [s for _, s in entries] == sorted(s for _, s in entries)
    image = decode_image(received[0].payload, (W, H), what=received[0].label)
    assert image.shape == (H, W, 3)


def test_oversized_payload_refused_before_sending(kafka_broker) -> None:
    cfg = KafkaConfig(topic="frames-oversize", message_max_bytes=256 * 1024)
    noise = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    payload = encode_image(noise, 90)
    frame = FrameMessage(frame_id=FrameId("car-000003", 1, 2, 95), captured_at_ns=1, deadline_at_ns=2, payload=payload)
    producer = FrameProducer(kafka_broker.bootstrap_servers, cfg)
    with pytest.raises(PayloadTooLargeError) as info:
        producer.send(frame)
    message = str(info.value)
    assert "frame car=car-000003 cam=1 shot=2" in message
    assert f"payload of {len(payload)} bytes exceeds the limit of {payload_limit(cfg.message_max_bytes)} bytes" in message
    assert "kafka.message_max_bytes" in message
    assert producer.flush(5).sent == 0


# ----------------------------------------------------------------------------- dead letters


def test_dead_letter_round_trip(kafka_broker, kafka_config) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, kafka_config)
    corrupt = b"\xff\xd8 this is not a jpeg"
    headers = [("schema", b"1"), ("car_id", b"car-000007"), ("camera", b"x")]
    try:
        FrameMessage.decode(b"car-000007:1", corrupt, headers, topic=kafka_config.topic, partition=2, offset=11)
    except MessageError as exc:
        error = exc
    with DeadLetterProducer(bootstrap, kafka_config) as dlq:
        partition, offset = dlq.send(
            DeadLetter.from_error(error, b"car-000007:1", corrupt, headers, topic=kafka_config.topic, partition=2, offset=11)
        )
    consumer = Consumer(consumer_config(bootstrap, kafka_config))
    consumer.assign([TopicPartition(kafka_config.dlq_topic, partition, offset)])
    try:
        (msg,) = consume(consumer, 1)
    finally:
        consumer.close()
    letter = DeadLetter.decode(msg.key(), msg.value(), msg.headers())
    assert letter.key == b"car-000007:1" and letter.value == corrupt
    assert list(letter.headers) == headers
    assert letter.error_kind == "bad_message"
    assert "header 'camera'='x' is not an integer" in letter.error
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (kafka_config.topic, 2, 11)


# ----------------------------------------------------------------------------- line simulator


def test_line_simulator_cars_arrive_with_schedule(kafka_broker, kafka_config, jpegs) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    ensure_topics(bootstrap, kafka_config)
    line = LineConfig(cameras=2, shots_per_camera=3, takt_s=30.0)
    frames = [gradient(0), gradient(1)]
    before_ns = time.time_ns()
    with FrameProducer(bootstrap, kafka_config) as producer:
        records = LineSimulator(line, lambda car, cam, shot: frames[cam], producer).run(2, start_car=7, realtime=False)
    after_ns = time.time_ns()
    assert len(records) == 2 * line.frames_per_car
    consumer = assigned_consumer(bootstrap, kafka_config, kafka_config.topic)
    try:
        received = [FrameMessage.from_kafka(m) for m in consume(consumer, len(records))]
    finally:
        consumer.close()
    assert len(received) == len(records)
    takt_ns = int(line.takt_s * 1e9)
    got = {(f.car_id, f.camera, f.shot): f for f in received}
    assert set(got) == {(car_id(c), cam, s) for c in (7, 8) for cam in range(2) for s in range(3)}
    first = {car: min(f.captured_at_ns for (c, _, _), f in got.items() if c == car) for car in (car_id(7), car_id(8))}
    for (car, cam, _shot), frame in got.items():
        # --no-realtime: stamped when sent (never in the future), deadline one takt after the car's first frame
        assert before_ns <= frame.captured_at_ns <= after_ns
        assert frame.deadline_at_ns == first[car] + takt_ns
        assert frame.shots_per_car == line.frames_per_car == 6
        decoded = decode_image(frame.payload, (W, H))
        assert np.abs(decoded.astype(np.int16) - frames[cam]).mean() < 4
