"""FrameProducer: idempotent producer of `FrameMessage`s with delivery tracking.

Nothing is lost silently: librdkafka retries transient failures itself (idempotence keeps
retries free of duplicates and reordering); a frame that still fails is counted, logged and
reported by the next `flush()` as a DeliveryError naming car/camera/shot, so the caller can
resend it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ..config import KafkaConfig
from ..messages.contract import FrameMessage, payload_limit
from ..messages.errors import PayloadTooLargeError, RecordRef
from ..messages.text import frame_label
from .admin import producer_config
from .partitioning import FramePartitioner

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Frames were not delivered. `failures` lists (car_id, camera, shot, error text)."""

    def __init__(self, message: str, failures: list[tuple[str, int, int, str]] | None = None) -> None:
        self.failures = failures or []
        super().__init__(message)


@dataclass(frozen=True)
class DeliveryStats:
    sent: int
    delivered: int
    failed: int

    @property
    def in_flight(self) -> int:
        return self.sent - self.delivered - self.failed


class FrameProducer:
    """Send frames to `cfg.topic`; thread-safe.

    >>> with FrameProducer("127.0.0.1:9092", settings.kafka) as producer:
    ...     producer.send(frame)        # raises PayloadTooLargeError before sending an oversized frame
    ...     producer.flush(30.0)        # raises DeliveryError if any frame failed or is still queued

    `queue_full_timeout_s` bounds how long `send` waits for room when librdkafka's local queue is
    full (the broker not keeping up) before raising DeliveryError.

    With `shots_per_camera` (the line's), each frame goes to partition
    (camera * shots_per_camera + shot) mod P (`FramePartitioner`), P read from the topic's
    metadata at the first send: every car spreads evenly over the partitions. Without it, or
    when the topic's metadata is not available, librdkafka hashes the key as before.
    """

    def __init__(
        self,
        bootstrap: str,
        cfg: KafkaConfig,
        *,
        client_id: str = "inspection-producer",
        queue_full_timeout_s: float = 60.0,
        extra_config: dict[str, Any] | None = None,
        shots_per_camera: int | None = None,
        metadata_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.shots_per_camera = shots_per_camera
        self.metadata_timeout_s = metadata_timeout_s
        self._partitioner: FramePartitioner | None = None
        self._partitioner_checked = False
        self.topic = cfg.topic
        self.max_payload_bytes = payload_limit(cfg.message_max_bytes)
        self.queue_full_timeout_s = queue_full_timeout_s
        conf = producer_config(bootstrap, cfg, client_id=client_id)
        conf["error_cb"] = self._on_error
        conf.update(extra_config or {})
        self._producer = Producer(conf)
        self._lock = threading.Lock()
        self._sent = 0
        self._delivered = 0
        self._failures: list[tuple[str, int, int, str]] = []
        self._failed_total = 0
        self._fatal: KafkaError | None = None

    # librdkafka calls these from poll()/flush() in the caller's thread.
    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("producer to %s hit a fatal error: %s", self.bootstrap, err.str())
        else:
            # Transient (broker down, connection reset): librdkafka retries on its own.
            log.warning("producer to %s: %s", self.bootstrap, err.str())

    def _on_delivery(self, ident: tuple[str, int, int], err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            if err is None:
                self._delivered += 1
                return
            self._failed_total += 1
            self._failures.append((*ident, f"{err.name()}: {err.str()}"))
        log.error("frame %s was not delivered to %s: %s", frame_label(*ident), self.topic, err.str())

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise DeliveryError(
                f"producer to {self.bootstrap} is unusable after a fatal error ({self._fatal.str()}); "
                "create a new FrameProducer and resend the undelivered frames"
            )

    def send(self, frame: FrameMessage) -> None:
        """Queue one frame; returns at once. Waits (serving callbacks) while the local queue is full."""
        self._raise_if_fatal()
        if len(frame.payload) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"payload of {len(frame.payload)} bytes exceeds the limit of {self.max_payload_bytes} bytes; "
                "lower line.jpeg_quality or raise kafka.message_max_bytes (on producers, topics and consumers)",
                field="payload",
                ref=RecordRef(topic=self.topic, car_id=frame.car_id, camera=frame.camera, shot=frame.shot),
            )
        key, value, headers = frame.encode()
        ident = (frame.car_id, frame.camera, frame.shot)
        deadline = time.monotonic() + self.queue_full_timeout_s

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(ident, err, msg)

        partition = self._partition(frame)
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=on_delivery, partition=partition
                )
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise DeliveryError(
                        f"frame {frame.label}: local producer queue stayed full for {self.queue_full_timeout_s:g} s; "
                        f"is the broker at {self.bootstrap} accepting writes?",
                        [(*ident, "local queue full")],
                    ) from None
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DeliveryError(
                    f"frame {frame.label} refused by the producer: {exc.args[0].str()}",
                    [(*ident, exc.args[0].str())],
                ) from None
        with self._lock:
            self._sent += 1
        self._producer.poll(0)

    def _partition(self, frame: FrameMessage) -> int:
        """The frame's partition, or -1 (librdkafka's "unassigned": hash the key)."""
        if self.shots_per_camera is None:
            return -1
        if not self._partitioner_checked:
            self._partitioner_checked = True
            try:
                topic = self._producer.list_topics(self.topic, timeout=self.metadata_timeout_s).topics.get(self.topic)
            except KafkaException as exc:
                topic = None
                log.warning("no metadata for topic %s (%s): frames partitioned by key hash", self.topic, exc)
            if topic is not None and topic.error is None and topic.partitions:
                self._partitioner = FramePartitioner(self.shots_per_camera, len(topic.partitions))
            else:
                log.warning("topic %s has no partitions yet: frames partitioned by key hash", self.topic)
        if self._partitioner is None:
            return -1
        return int(self._partitioner.partition(frame.camera, frame.shot))

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (send does this too)."""
        self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> DeliveryStats:
        """Wait until every queued frame is acknowledged by the broker.

        Raises DeliveryError listing the frames that failed since the last flush (they are then
        forgotten: resend them), or naming how many are still undelivered after `timeout` s.
        """
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            shown = "; ".join(f"{frame_label(c, k, s)}: {e}" for c, k, s, e in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise DeliveryError(f"{len(failures)} frame(s) not delivered to {self.topic}: {shown}{more}", failures)
        self._raise_if_fatal()
        if remaining:
            raise DeliveryError(
                f"{remaining} frame(s) still undelivered after {timeout:g} s; is the broker at {self.bootstrap} reachable?"
            )
        return self.stats()

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(self._sent, self._delivered, self._failed_total)

    def close(self, timeout: float = 30.0) -> None:
        """Flush; raises like `flush` so undelivered frames are never dropped quietly."""
        self.flush(timeout)

    def __enter__(self) -> FrameProducer:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            # Already failing: deliver what we can but do not mask the original exception.
            remaining = self._producer.flush(10.0)
            if remaining:
                log.error("%d frame(s) undelivered to %s at shutdown", remaining, self.topic)
