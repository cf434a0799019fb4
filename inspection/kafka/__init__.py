"""Kafka side: embedded broker, topics and shared client configs, frame and dead-letter producers.

The consumer (edge pipeline) builds its confluent_kafka.Consumer from `consumer_config` and
decodes records with `inspection.messages.contract.FrameMessage.from_kafka`.
"""

from .admin import (
    BrokerUnreachableError,
    TopicError,
    check_reachable,
    consumer_config,
    ensure_topics,
    producer_config,
    topic_max_message_bytes,
)
from .broker import BrokerStartError, EmbeddedBroker
from .dlq import DeadLetterProducer
from .producer import DeliveryError, DeliveryStats, FrameProducer

__all__ = [
    "BrokerStartError",
    "BrokerUnreachableError",
    "DeadLetterProducer",
    "DeliveryError",
    "DeliveryStats",
    "EmbeddedBroker",
    "FrameProducer",
    "TopicError",
    "check_reachable",
    "consumer_config",
    "ensure_topics",
    "producer_config",
    "topic_max_message_bytes",
]
