"""Smoke test against the real local Kafka broker (see deploy/kafka/local-kafka.sh).

Needs the session fixture ``kafka_bootstrap`` ("127.0.0.1:PORT") from tests/conftest.py.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

PARTITIONS = 4
N_MESSAGES = 100
N_KEYS = 10


def _consume(consumer: KafkaConsumer, expected: int, deadline_s: float = 30.0) -> list[Any]:
    """Poll until ``expected`` records arrived or the deadline passed; returns the records."""
    records: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


@pytest.mark.kafka
def test_kafka_smoke(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"smoke-{suffix}"
    txn_topic = f"smoke-txn-{suffix}"

    # -- admin: create topics -------------------------------------------------------------
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="smoke-admin")
    try:
        admin.create_topics(
            [
                NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1),
                NewTopic(name=txn_topic, num_partitions=1, replication_factor=1),
            ]
        )
        # kafka-python 3.x names the key "name" (2.x: "topic").
        described = {
            t.get("name", t.get("topic")): t for t in admin.describe_topics([topic, txn_topic])
        }
        assert len(described[topic]["partitions"]) == PARTITIONS
    finally:
        admin.close()

    # -- keyed produce with acks=all --------------------------------------------------------
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        linger_ms=5,
    )
    try:
        futures = [
            producer.send(topic, key=f"key-{i % N_KEYS}".encode(), value=f"msg-{i}".encode())
            for i in range(N_MESSAGES)
        ]
        producer.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    assert all(m.topic == topic for m in metas)

    # -- consume them all back with a consumer group -----------------------------------------
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-group-{suffix}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        records = _consume(consumer, N_MESSAGES, deadline_s=60)
        consumer.commit()
    finally:
        consumer.close()

    assert len(records) == N_MESSAGES
    values = sorted(r.value.decode() for r in records)
    assert values == sorted(f"msg-{i}" for i in range(N_MESSAGES))
    partitions_by_key: dict[str, set[int]] = defaultdict(set)
    order_by_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        partitions_by_key[r.key.decode()].add(r.partition)
        order_by_key[r.key.decode()].append(int(r.value.decode().split("-")[1]))
    # Same key -> same partition, in send order; keys spread over more than one partition.
    assert all(len(p) == 1 for p in partitions_by_key.values())
    assert all(seq == sorted(seq) for seq in order_by_key.values())
    assert len({next(iter(p)) for p in partitions_by_key.values()}) > 1

    # -- transactions: committed visible, aborted not (read_committed) -----------------------
    txn_producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"smoke-txn-{suffix}",
        acks="all",
        enable_idempotence=True,
    )
    try:
        txn_producer.init_transactions()
        txn_producer.begin_transaction()
        txn_producer.send(txn_topic, value=b"aborted")
        txn_producer.flush(timeout=30)
        txn_producer.abort_transaction()
        txn_producer.begin_transaction()
        txn_producer.send(txn_topic, value=b"committed")
        txn_producer.commit_transaction()
    finally:
        txn_producer.close(timeout=10)

    rc_consumer = KafkaConsumer(
        txn_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-txn-group-{suffix}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        # Only one record is expected; keep polling briefly to catch a leaked aborted one.
        txn_records = _consume(rc_consumer, 1, deadline_s=30)
        txn_records += _consume(rc_consumer, 1, deadline_s=2)
    finally:
        rc_consumer.close()
    assert [r.value for r in txn_records] == [b"committed"]
