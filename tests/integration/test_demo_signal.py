"""The demo's line signal end to end: a demo car, detected by the real model on the embedded Kafka broker,
decided by the shipped COCO example rules, reaches a real MQTT subscriber (the demo's embedded amqtt
broker) and a real OPC UA client with the verdict stored in the database."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asyncua import Client

from inspection.config import Settings
from inspection.rules.load import example_rules
from inspection.signal.demo import demo_signal
from inspection.signal.opcua import NAMESPACE
from inspection.tools.demo import run_demo
from tests.integration.mqtt_broker import Subscriber

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_demo_car_reaches_a_subscriber_and_an_opcua_client_with_its_verdict(kafka_broker, tmp_path) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = Settings(
        kafka={
            "bootstrap_servers": kafka_broker.bootstrap_servers,
            "topic": f"demo-{suffix}",
            "dlq_topic": f"demo-{suffix}.dlq",
            "group_id": f"demo-{suffix}",
        },
        store={"url": f"sqlite:///{tmp_path / 'demo.db'}", "image_dir": None},
        line={"cameras": 2, "shots_per_camera": 1},
    )
    with demo_signal(settings) as line_signal:
        assert line_signal.settings.inspection.rules == example_rules()  # the config had none: the shipped example
        assert f"-p {line_signal.mqtt_port} -t 'inspection/line1/#'" in line_signal.subscribe
        subscriber = Subscriber(line_signal.mqtt_port, "line1", name="demo")
        try:
            assert subscriber.subscribed.wait(10)
            result = run_demo(line_signal.settings, cars=1, realtime=False)
            (car,) = result.cars
            verdict = result.verdicts[car.car_id]
            assert verdict in {"ok", "ng", "error"}
            subscriber.wait_for(lambda s: s.car_topics() == {f"inspection/line1/cars/{car.car_id}": 1}, timeout=60)
            (message,) = [p for t, p, _ in subscriber.messages if "/cars/" in t]
            assert message["verdict"] == verdict and message["rules_version"] == example_rules().digest()

            async def read() -> tuple[str, str]:
                async with Client(line_signal.opcua_endpoint, timeout=10) as client:
                    idx = await client.get_namespace_index(NAMESPACE)
                    line = await client.nodes.objects.get_child(f"{idx}:line1")
                    for _ in range(200):
                        car_id = await (await line.get_child(f"{idx}:LastCarId")).read_value()
                        if car_id:
                            return car_id, await (await line.get_child(f"{idx}:LastVerdict")).read_value()
                        await asyncio.sleep(0.05)
                raise AssertionError("no car on the OPC UA nodes")

            assert asyncio.run(read()) == (car.car_id, verdict)
        finally:
            subscriber.close()
