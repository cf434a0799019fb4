"""OPC UA sink (asyncua): a server with read-only nodes per line that a PLC or MES reads, and an event per car.

    Objects/<line>/LastCarId, LastVerdict, LastDecidedAt, OkCount, NgCount, IncompleteCount, ErrorCount
    event CarDecidedEventType (CarId, Verdict, RulesVersion) emitted by Objects/<line>

Clients cannot write the nodes (their access level is read only). With `security: Basic256Sha256`
only the SignAndEncrypt endpoint exists and, when `trusted_client_certs` are given, only clients
holding one of them may connect. The counts are of the cars this server published since it started.
The server runs its own asyncio loop on a thread; `publish` hands each car to it and waits.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .config import OpcUaConfig
from .mqtt import SinkUnavailable

NAMESPACE = "urn:inspection:line-signal"
COUNTS = {"ok": "OkCount", "ng": "NgCount", "incomplete": "IncompleteCount", "error": "ErrorCount"}
REMEMBERED = 10_000  # car ids kept to make a retried publish count once


def endpoint_url(config: OpcUaConfig) -> str:
    return f"opc.tcp://{config.host}:{config.port}/inspection/"


class OpcUaSink:
    name = "opcua"

    def __init__(self, config: OpcUaConfig, line: str) -> None:
        self.config = config
        self.line = line
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._nodes: dict[str, Any] = {}
        self._events: Any = None
        self._counts = {name: 0 for name in COUNTS.values()}
        self._seen: OrderedDict[str, None] = OrderedDict()

    def start(self, timeout_s: float = 30.0) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="opcua-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout_s)

    async def _start(self) -> None:
        from asyncua import Server, ua

        c = self.config
        server = Server()
        await server.init()
        server.set_endpoint(endpoint_url(c))
        server.set_server_name("inspection line signal")
        await server.set_application_uri(NAMESPACE)
        if c.security == "Basic256Sha256":
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            assert c.cert_file is not None and c.key_file is not None  # the config insists
            await server.load_certificate(str(c.cert_file))
            await server.load_private_key(str(c.key_file))
            if c.trusted_client_certs:
                server.set_certificate_validator(await _validator(c.trusted_client_certs))
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        line = await server.nodes.objects.add_object(idx, self.line)
        initial = {"LastCarId": ("", ua.VariantType.String), "LastVerdict": ("", ua.VariantType.String)}
        initial["LastDecidedAt"] = ("", ua.VariantType.String)
        initial |= {name: (0, ua.VariantType.UInt64) for name in COUNTS.values()}
        for name, (value, kind) in initial.items():
            self._nodes[name] = await line.add_variable(idx, name, ua.Variant(value, kind))  # read-only by default
        event_type = await server.create_custom_event_type(
            idx,
            "CarDecidedEventType",
            ua.ObjectIds.BaseEventType,
            [("CarId", ua.VariantType.String), ("Verdict", ua.VariantType.String), ("RulesVersion", ua.VariantType.String)],
        )
        self._events = await server.get_event_generator(event_type, line)
        await server.start()
        self._server = server

    def publish(self, car_id: str, payload: str) -> None:
        if self._loop is None or self._server is None:
            raise SinkUnavailable("OPC UA server not started")
        future = asyncio.run_coroutine_threadsafe(self._publish(car_id, json.loads(payload)), self._loop)
        try:
            future.result(10)
        except Exception as exc:  # the server's failure, whatever its type, is this sink's outage
            raise SinkUnavailable(f"OPC UA update of car {car_id} failed: {exc}") from exc

    async def _publish(self, car_id: str, message: dict[str, Any]) -> None:
        from asyncua import ua

        if car_id in self._seen:
            return  # a retried round (another sink failed): counted and announced once
        verdict = str(message.get("verdict", ""))
        counter = COUNTS.get(verdict)
        if counter is not None:
            self._counts[counter] += 1
            await self._nodes[counter].write_value(ua.Variant(self._counts[counter], ua.VariantType.UInt64))
        await self._nodes["LastCarId"].write_value(ua.Variant(car_id, ua.VariantType.String))
        await self._nodes["LastVerdict"].write_value(ua.Variant(verdict, ua.VariantType.String))
        await self._nodes["LastDecidedAt"].write_value(ua.Variant(str(message.get("decided_at", "")), ua.VariantType.String))
        self._events.event.CarId = car_id
        self._events.event.Verdict = verdict
        self._events.event.RulesVersion = str(message.get("rules_version", ""))
        self._events.event.Message = ua.LocalizedText(f"car {car_id}: {verdict}")
        await self._events.trigger()
        self._seen[car_id] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)

    def close(self) -> None:
        if self._loop is None:
            return
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(30)
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        self._loop.close()
        self._loop = None


async def _validator(trusted: list[Path]) -> Any:
    """Accept only clients whose certificate is one of `trusted` (a trust store of those files)."""
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

    folder = Path(tempfile.mkdtemp(prefix="inspection-opcua-trust-"))
    for path in trusted:
        shutil.copy(path, folder / path.name)
    store = TrustStore([folder], [])
    await store.load()
    options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
    return CertificateValidator(options=options, trust_store=store)
