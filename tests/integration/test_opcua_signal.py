"""The OPC UA sink on real parts: the asyncua server with Basic256Sha256 and certificates made at test
time, read by a real asyncua client: nodes per line, one event per decided car, read-only nodes,
untrusted and unencrypted clients refused. Also the whole path: outbox relay -> OPC UA."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from inspection.signal.config import OpcUaConfig, SignalConfig
from inspection.signal.opcua import NAMESPACE, OpcUaSink, endpoint_url
from inspection.signal.service import running_relay
from tests.integration.certs import make_cert
from tests.integration.mqtt_broker import free_port
from tests.integration.test_verdicts import NAMES, boxes, open_store, record

pytestmark = pytest.mark.timeout(180)
CLIENT_URI = "urn:inspection:test-client"


def certificates(folder: Path) -> dict[str, Path]:
    server_cert, server_key, _, _ = make_cert(folder, "server", uri=NAMESPACE, der=True)
    client_cert, client_key, _, _ = make_cert(folder, "client", uri=CLIENT_URI, der=True)
    stranger_cert, stranger_key, _, _ = make_cert(folder, "stranger", uri=CLIENT_URI, der=True)
    return {
        "server": server_cert,
        "server_key": server_key,
        "client": client_cert,
        "client_key": client_key,
        "stranger": stranger_cert,
        "stranger_key": stranger_key,
    }


def secure_config(certs: dict[str, Path]) -> OpcUaConfig:
    return OpcUaConfig(
        enabled=True,
        port=free_port(),
        security="Basic256Sha256",
        cert_file=certs["server"],
        key_file=certs["server_key"],
        trusted_client_certs=[certs["client"]],
    )


async def client_for(config: OpcUaConfig, certs: dict[str, Path], who: str = "client") -> Client:
    client = Client(endpoint_url(config), timeout=30)
    client.application_uri = CLIENT_URI
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(certs[who]),
        private_key=str(certs[f"{who}_key"]),
        server_certificate=str(certs["server"]),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    return client


class EventCollector:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    def event_notification(self, event: object) -> None:
        self.events.append((event.CarId, event.Verdict))  # type: ignore[attr-defined]
        self.arrived.set()


async def line_nodes(client: Client, line: str) -> dict[str, object]:
    idx = await client.get_namespace_index(NAMESPACE)
    obj = await client.nodes.objects.get_child(f"{idx}:{line}")
    names = ("LastCarId", "LastVerdict", "OkCount", "NgCount", "IncompleteCount", "ErrorCount")
    return {n: await (await obj.get_child(f"{idx}:{n}")).read_value() for n in names} | {"_object": obj, "_idx": idx}


def test_a_real_client_reads_the_nodes_and_gets_an_event_per_car(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    config = secure_config(certs)
    sink = OpcUaSink(config, "line3")
    sink.start()

    async def scenario() -> None:
        client = await client_for(config, certs)
        async with client:
            idx = await client.get_namespace_index(NAMESPACE)
            obj = await client.nodes.objects.get_child(f"{idx}:line3")
            event_type = await client.nodes.base_event_type.get_child(f"{idx}:CarDecidedEventType")
            collector = EventCollector()
            subscription = await client.create_subscription(50, collector)
            await subscription.subscribe_events(obj, event_type)
            loop = asyncio.get_running_loop()
            for car, verdict in (("c1", "ok"), ("c2", "ng"), ("c3", "ng"), ("c2", "ng"), ("c4", "incomplete")):
                payload = json.dumps({"car_id": car, "verdict": verdict, "rules_version": "r1", "decided_at": "t"})
                await loop.run_in_executor(None, sink.publish, car, payload)  # c2 twice: a retried round
            while len(collector.events) < 4:
                collector.arrived.clear()
                await asyncio.wait_for(collector.arrived.wait(), 30)
            values = await line_nodes(client, "line3")
            assert (values["LastCarId"], values["LastVerdict"]) == ("c4", "incomplete")
            assert (values["OkCount"], values["NgCount"], values["IncompleteCount"], values["ErrorCount"]) == (1, 2, 1, 0)
            assert collector.events == [("c1", "ok"), ("c2", "ng"), ("c3", "ng"), ("c4", "incomplete")]
            verdict_node = await obj.get_child(f"{idx}:LastVerdict")
            with pytest.raises(ua.UaStatusCodeError):
                await verdict_node.write_value(ua.Variant("ok", ua.VariantType.String))  # a client cannot forge it
            assert await verdict_node.read_value() == "incomplete"

    try:
        asyncio.run(scenario())
    finally:
        sink.close()


def test_untrusted_and_unencrypted_clients_are_refused(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    config = secure_config(certs)
    sink = OpcUaSink(config, "line3")
    sink.start()

    async def scenario() -> None:
        stranger = await client_for(config, certs, "stranger")
        with pytest.raises(Exception):  # noqa: B017 - asyncua reports the refusal as one of several errors
            async with stranger:
                await line_nodes(stranger, "line3")
        plain = Client(endpoint_url(config), timeout=30)
        with pytest.raises(Exception):  # noqa: B017 - no unencrypted endpoint exists
            async with plain:
                await line_nodes(plain, "line3")

    try:
        asyncio.run(scenario())
    finally:
        sink.close()


def test_decided_cars_reach_the_opcua_nodes_through_the_outbox(sqlite_url: str, tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    config = SignalConfig(line="line4", poll_s=0.05, opcua=secure_config(certs))
    with open_store(sqlite_url) as store, running_relay(store.engine, config) as relay:
        run_id = store.start_run("m", "b", "fp32", "c", host="t", consumer_id="c")
        for cam in (0, 1):
            store.store_frame(record("car-a", cam, run_id), boxes((0.9, 1, 200, 200, 300, 400)), NAMES)

        async def read() -> dict[str, object]:
            client = await client_for(config.opcua, certs)
            async with client:
                for _ in range(200):
                    values = await line_nodes(client, "line4")
                    if values["LastCarId"] == "car-a":
                        return values
                    await asyncio.sleep(0.05)
            raise AssertionError("car-a never reached the OPC UA nodes")

        values = asyncio.run(read())
        assert (values["LastVerdict"], values["NgCount"]) == ("ng", 1)
        assert relay.refresh_gauges()[0] == 0
