"""Transports: Apache Kafka for production, the in-memory bus as the embedded default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def connect(
    bootstrap: str | None,
    *,
    client_config: Mapping[str, Any] | None = None,
    replication_factor: int = 1,
) -> Transport:
    """Kafka when a bootstrap address is given, else a fresh embedded memory bus."""
    if not bootstrap:
        return MemoryBus()
    from metasignal.stream.transport.kafka import KafkaTransport

    return KafkaTransport(
        bootstrap=bootstrap, client_config=client_config, replication_factor=replication_factor
    )


__all__ = [
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
]
