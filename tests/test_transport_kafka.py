"""The Kafka transport's consumer groups on a real broker, under the polls the scorer makes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions, NewTopic

from stream.transport.base import Consumer
from stream.transport.kafka import KafkaTransport
from stream.transport.rebalance_fix import UnsupportedClientError, finish_interrupted_rebalances


def poll_until(consumer: Consumer, done: Callable[[], bool], timeout: float) -> bool:
    """Poll without waiting (the shortest poll a caller can make) until ``done()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=0, max_records=100)
        if done():
            return True
        time.sleep(0.002)
    return done()


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
            assert poll_until(consumer, lambda: len(consumer.assignment()) == 1, timeout=30)
            admin.create_partitions({topic: NewPartitions(total_count=3)})
            assert poll_until(consumer, lambda: len(consumer.assignment()) == 3, timeout=30), (
                f"still assigned {sorted(tp.partition for tp in consumer.assignment())}"
            )
        finally:
            consumer.close()
    finally:
        admin.close()


def test_a_client_without_the_patched_internals_is_refused() -> None:
    coordinator: Any = SimpleNamespace(need_rejoin=lambda: False, rejoining=False)
    with pytest.raises(UnsupportedClientError, match="_join_task"):
        finish_interrupted_rebalances(SimpleNamespace(_coordinator=coordinator))
