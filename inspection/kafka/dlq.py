"""DeadLetterProducer: write a failed record to the dead-letter topic, synchronously.

A consumer may commit a bad record's offset only once its dead letter is durable, so `send`
returns after the broker acknowledged it (acks=all) and raises otherwise.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..config import KafkaConfig
from ..messages.dead_letters import DeadLetter
from .admin import producer_config
from .producer import DeliveryError

log = logging.getLogger(__name__)


class DeadLetterProducer:
    """Send `DeadLetter`s to `cfg.dlq_topic`; thread-safe (sends are serialised).

    >>> dlq = DeadLetterProducer(bootstrap, settings.kafka)
    >>> partition, offset = dlq.send_failed(msg, exc)   # msg: the consumed confluent_kafka.Message
    >>> # ... now the consumer may commit msg.offset() + 1
    """

    def __init__(
        self,
        bootstrap: str,
        cfg: KafkaConfig,
        *,
        client_id: str = "inspection-dlq",
        timeout_s: float = 30.0,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = cfg.dlq_topic
        self.timeout_s = timeout_s
        conf = producer_config(bootstrap, cfg, dlq=True, client_id=client_id)
        conf["linger.ms"] = 0  # each dead letter is flushed on its own
        conf.update(extra_config or {})
        self._producer = Producer(conf)
        self._lock = threading.Lock()

    def send(self, letter: DeadLetter) -> tuple[int, int]:
        """Write one dead letter and wait for the broker's acknowledgement; returns (partition, offset).

        Raises DeliveryError if it is not acknowledged within `timeout_s`.
        """
        key, value, headers = letter.encode()
        where = f"dead letter of {letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        result: dict[str, Any] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            result["err"] = err
            if err is None:
                result["at"] = (msg.partition(), msg.offset())

        with self._lock:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            except (BufferError, KafkaException) as exc:
                raise DeliveryError(f"{where} refused by the producer: {exc}") from None
            remaining = self._producer.flush(self.timeout_s)
        err = result.get("err")
        if err is not None:
            raise DeliveryError(f"{where} not written to {self.topic}: {err.name()}: {err.str()}")
        if remaining or "at" not in result:
            raise DeliveryError(
                f"{where} not acknowledged by {self.bootstrap} within {self.timeout_s:g} s; do not commit its offset"
            )
        log.warning("%s -> %s[%d]@%d (%s: %s)", where, self.topic, *result["at"], letter.error_kind, letter.error)
        return result["at"]

    def close(self) -> None:
        remaining = self._producer.flush(self.timeout_s)
        if remaining:
            log.error("%d dead letter(s) undelivered to %s at shutdown", remaining, self.topic)

    def __enter__(self) -> DeadLetterProducer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
