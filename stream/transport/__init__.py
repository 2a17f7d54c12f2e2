"""Transports: Apache Kafka for production, the in-memory bus as the embedded default.

Kafka has two clients behind the same contract: kafka-python (the default) and
confluent-kafka (librdkafka, the ``confluent`` extra), chosen by ``kafka_client``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metasignal.stream.config import KAFKA_CLIENT
from metasignal.stream.transport.base import (
    Consumer,
    Producer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    Transport,
    TransportError,
)
from metasignal.stream.transport.memory import MemoryBus

KAFKA_CLIENTS: tuple[str, ...] = KAFKA_CLIENT.choices or ()


def kafka_transport(
    bootstrap: str,
    *,
    client: str = "kafka-python",
    client_config: Mapping[str, Any] | None = None,
    replication_factor: int = 1,
    client_id: str = "metasignal",
) -> Transport:
    """A Kafka transport on ``client`` (one of :data:`KAFKA_CLIENTS`).

    Each client is imported only when chosen, so confluent-kafka stays optional.

    >>> kafka_transport("127.0.0.1:9092", client="kafka-pyhton")
    Traceback (most recent call last):
    ...
    metasignal.stream.transport.base.TransportError: unknown Kafka client 'kafka-pyhton' ...
    """
    if client == "kafka-python":
        from metasignal.stream.transport.kafka import KafkaTransport

        return KafkaTransport(
            bootstrap=bootstrap,
            client_config=client_config,
            replication_factor=replication_factor,
            client_id=client_id,
        )
    if client == "confluent":
        try:
            from metasignal.stream.transport.confluent import ConfluentTransport
        except ImportError:
            raise TransportError(
                "--kafka-client confluent needs confluent-kafka: "
                "pip install 'metasignal[confluent]'"
            ) from None
        return ConfluentTransport(
            bootstrap=bootstrap,
            client_config=client_config,
            replication_factor=replication_factor,
            client_id=client_id,
        )
    raise TransportError(f"unknown Kafka client {client!r} ({', '.join(KAFKA_CLIENTS)})")


def connect(
    bootstrap: str | None,
    *,
    client: str = "kafka-python",
    client_config: Mapping[str, Any] | None = None,
    replication_factor: int = 1,
) -> Transport:
    """Kafka when a bootstrap address is given, else a fresh embedded memory bus."""
    if not bootstrap:
        return MemoryBus()
    return kafka_transport(
        bootstrap,
        client=client,
        client_config=client_config,
        replication_factor=replication_factor,
    )


__all__ = [
    "KAFKA_CLIENTS",
    "Consumer",
    "MemoryBus",
    "Producer",
    "RebalanceListener",
    "Record",
    "TopicPartition",
    "TopicSpec",
    "Transport",
    "TransportError",
    "connect",
    "kafka_transport",
]
