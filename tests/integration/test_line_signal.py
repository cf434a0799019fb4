"""The signal to the line on real parts: a Mosquitto broker of the test's own, a real subscriber.

A decided car reaches the subscriber once on its topic and as the retained last; during a broker
outage cars keep completing (the database write never waits), the outbox holds them and its gauges
say so, and after the broker is back each is published exactly once. Username/password + TLS.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inspection.signal.config import MqttConfig, SignalConfig
from inspection.signal.mqtt import MqttSink, SinkUnavailable
from inspection.signal.outbox import OutboxMetrics
from inspection.signal.service import running_relay
from inspection.store.models import SignalOutbox
from tests.integration.certs import make_cert
from tests.integration.mqtt_broker import Mosquitto, Subscriber, free_port
from tests.integration.test_verdicts import NAMES, boxes, open_store, record

pytestmark = pytest.mark.timeout(180)


def wait_until(predicate, timeout: float = 30.0, what: str = "") -> None:
    """Poll a database condition (no event to wait on across processes) with a short step."""
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    pytest.fail(f"timed out waiting for {what}")


def complete(store, car: str, run_id: int) -> None:
    for cam in (0, 1):
        store.store_frame(record(car, cam, run_id), boxes((0.9, 1, 200, 200, 300, 400)) if car.endswith("ng") else boxes(), NAMES)


def test_cars_reach_a_real_subscriber_once_across_a_broker_outage(sqlite_url: str, tmp_path: Path) -> None:
    port = free_port()
    broker = Mosquitto(tmp_path, port)
    broker.start()
    subscriber = Subscriber(port, "line7")
    config = SignalConfig(line="line7", poll_s=0.05, retry_max_s=0.5, mqtt=MqttConfig(enabled=True, port=port, ack_timeout_s=1))
    metrics = OutboxMetrics()
    try:
        assert subscriber.subscribed.wait(10)
        with open_store(sqlite_url) as store, running_relay(store.engine, config, metrics) as relay:
            run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
            complete(store, "car-1-ng", run_id)

            def backlog() -> int:
                with store.engine.connect() as conn:
                    return conn.execute(select(func.count()).select_from(SignalOutbox)).scalar_one()

            subscriber.wait_for(lambda s: s.car_topics() == {"inspection/line7/cars/car-1-ng": 1})
            wait_until(lambda: backlog() == 0, what="car 1's acknowledgements")
            broker.stop()  # outage: cars keep completing, nothing waits for the broker
            complete(store, "car-2-ok", run_id)
            complete(store, "car-3-ng", run_id)

            assert backlog() == 2
            wait_until(
                lambda: relay.refresh_gauges()[0] == 2 and metrics.failures.labels("mqtt")._value.get() > 0, what="a failed try"
            )
            assert metrics.backlog._value.get() == 2 and metrics.oldest_age._value.get() > 0
            broker.start()
            subscriber.wait_for(lambda s: set(s.car_topics()) >= {f"inspection/line7/cars/{c}" for c in ("car-2-ok", "car-3-ng")})
            wait_until(lambda: backlog() == 0, what="the outbox to drain")
            assert relay.refresh_gauges() == (0, 0.0)
        assert subscriber.car_topics() == {f"inspection/line7/cars/{c}": 1 for c in ("car-1-ng", "car-2-ok", "car-3-ng")}
        cars = {p["car_id"]: p for t, p, _ in subscriber.messages if "/cars/" in t}
        assert {c: p["verdict"] for c, p in cars.items()} == {"car-1-ng": "ng", "car-2-ok": "ok", "car-3-ng": "ng"}
        assert set(cars["car-1-ng"]) >= {"car_id", "verdict", "defects", "rules_version", "model", "decided_at", "car_latency_s"}
        assert cars["car-1-ng"]["defects"]["0"]["class"] == ["person"]
        last = [p["car_id"] for t, p, _ in subscriber.messages if t == "inspection/line7/last"]
        assert last[-1] == "car-3-ng"
    finally:
        subscriber.close()
        broker.stop()
    # A late subscriber gets the retained last car.
    broker.start()
    try:
        late = Subscriber(port, "line7", name="late")
        late.wait_for(lambda s: any(t.endswith("/last") and retained for t, _, retained in s.messages))
        late.close()
    finally:
        broker.stop()


def test_username_password_and_tls(tmp_path: Path) -> None:
    ca_cert, ca_key_path, ca, ca_key = make_cert(tmp_path, "ca", ca=True)
    cert, key, _, _ = make_cert(tmp_path, "broker", issuer=(ca, ca_key))
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "line", "s3cret"], check=True)
    port = free_port()
    broker = Mosquitto(tmp_path, port, passwd=passwd, tls=(ca_cert, cert, key))
    broker.start()
    subscriber = Subscriber(port, "l1", auth=("line", "s3cret"), ca=ca_cert)
    good = MqttSink(MqttConfig(enabled=True, port=port, username="line", password="s3cret", tls=True, ca_file=ca_cert), "l1")
    wrong = MqttSink(
        MqttConfig(enabled=True, port=port, username="line", password="guess", tls=True, ca_file=ca_cert, client_id="w"), "l1"
    )
    try:
        assert subscriber.subscribed.wait(10)
        good.start()
        wrong.start()
        wait_until(lambda: good._client.is_connected(), what="the TLS connection")
        good.publish("car-9", '{"car_id": "car-9", "verdict": "ok"}')
        subscriber.wait_for(lambda s: s.car_topics() == {"inspection/l1/cars/car-9": 1})
        with pytest.raises(SinkUnavailable, match="not connected"):
            wrong.publish("forged", '{"car_id": "forged", "verdict": "ok"}')  # refused by the broker
    finally:
        good.close()
        wrong.close()
        subscriber.close()
        broker.stop()
    assert "forged" not in str(subscriber.messages)
