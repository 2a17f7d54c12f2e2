"""The Kafka transport's consumer groups on a real broker, under the polls the scorer makes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions, NewTopic

from metasignal.stream.transport.base import Consumer, TransportError
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.stream.transport.rebalance_fix import finish_interrupted_rebalances
from tests.streaming import wait_for


def assigned(consumer: Consumer, count: int) -> Callable[[], bool]:
    """Poll without waiting (the shortest poll a caller can make); ``count`` partitions yet?"""

    def check() -> bool:
        consumer.poll(timeout_ms=0, max_records=100)
        return len(consumer.assignment()) == count

    return check


@pytest.mark.kafka
def test_partitions_added_later_are_assigned_under_short_polls(kafka_bootstrap: str) -> None:
    # kafka-python 3.0.12 alone: the first assignment often never lands, and partitions added
    # later are never assigned (both 3 of 3 times before stream/transport/rebalance_fix.py).
    topic = f"grow-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        transport = KafkaTransport(
            bootstrap=kafka_bootstrap, client_config={"metadata_max_age_ms": 500}
        )
        consumer = transport.consumer(topics=[topic], group_id=f"{topic}.g")
        try:
            assert wait_for(assigned(consumer, 1), timeout=30, interval=0.002)
            admin.create_partitions({topic: NewPartitions(total_count=3)})
            assert wait_for(assigned(consumer, 3), timeout=30, interval=0.002), (
                f"still assigned {sorted(tp.partition for tp in consumer.assignment())}"
            )
        finally:
            consumer.close()
    finally:
        admin.close()


def test_a_client_without_the_patched_internals_is_refused() -> None:
    coordinator: Any = SimpleNamespace(need_rejoin=lambda: False, rejoining=False)
    with pytest.raises(TransportError, match="_join_task"):
        finish_interrupted_rebalances(SimpleNamespace(_coordinator=coordinator))
