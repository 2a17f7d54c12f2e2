"""The transport contract on the real local Kafka broker, for each Kafka client.

Needs the session fixture ``kafka_bootstrap`` ("127.0.0.1:PORT") and the ``kafka_client``
parameter from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from kafka.partitioner.default import murmur2

from metasignal.stream.transport import Transport, kafka_transport
from metasignal.stream.transport.base import (
    Consumer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
)
from tests.streaming import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
N_MESSAGES = 100
N_KEYS = 10


@pytest.fixture
def transport(kafka_bootstrap: str, kafka_client: str) -> Iterator[Transport]:
    transport = kafka_transport(kafka_bootstrap, client=kafka_client)
    yield transport
    transport.close()


def consume(consumer: Consumer, expected: int, timeout: float = 30.0) -> list[Record]:
    """Poll until ``expected`` records arrived or the deadline passed; returns the records."""
    records: list[Record] = []

    def enough() -> bool:
        records.extend(consumer.poll(timeout_ms=200, max_records=500))
        return len(records) >= expected

    wait_for(enough, timeout=timeout, interval=0)
    return records


def test_topics_keyed_sends_groups_and_commits(transport: Transport) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    assert transport.create_topics([TopicSpec(topic, PARTITIONS)]) == [topic]
    assert transport.create_topics([TopicSpec(topic, PARTITIONS)]) == []  # idempotent
    assert transport.partition_count(topic) == PARTITIONS
    assert transport.partition_count(f"{topic}-missing") is None

    producer = transport.producer()
    for i in range(N_MESSAGES):
        producer.send(
            topic,
            key=f"key-{i % N_KEYS}".encode(),
            value=f"msg-{i}".encode(),
            headers=[("n", str(i).encode())] if i % 2 else (),
        )
    producer.flush()
    producer.close()

    consumer = transport.consumer(topics=[topic], group_id=f"{topic}.g")
    try:
        records = consume(consumer, N_MESSAGES, timeout=60)
        assert len(records) == N_MESSAGES
        ends = consumer.end_offsets(sorted(consumer.assignment()))
        consumer.commit(ends)
        assert {tp: consumer.committed(tp) for tp in ends} == ends
        assert all(consumer.position(tp) == end for tp, end in ends.items())
        # A rewind delivers the same records again.
        first = min(records, key=lambda r: (r.partition, r.offset))
        consumer.seek(first.topic_partition, first.offset)
        again = consume(consumer, 1)
        assert (again[0].partition, again[0].offset, again[0].value) == (
            first.partition,
            first.offset,
            first.value,
        )
    finally:
        consumer.close()

    assert sorted(r.value or b"" for r in records) == sorted(
        f"msg-{i}".encode() for i in range(N_MESSAGES)
    )
    assert all(dict(r.headers) == {"n": r.value[4:]} for r in records if r.headers and r.value)
    assert sum(bool(r.headers) for r in records) == N_MESSAGES // 2
    by_key: dict[bytes, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[r.key or b""].append(r)
    for key, keyed in by_key.items():
        # Java's (and kafka-python's) murmur2 partition for every client: a key never splits
        # between producers on different clients.
        assert {r.partition for r in keyed} == {(murmur2(key) & 0x7FFFFFFF) % PARTITIONS}
        sequence = [int((r.value or b"").split(b"-")[1]) for r in keyed]
        assert sequence == sorted(sequence)
    assert len({r.partition for r in records}) > 1


def test_group_members_share_partitions_through_rebalance_callbacks(
    transport: Transport,
) -> None:
    topic = f"smoke-group-{uuid.uuid4().hex[:8]}"
    transport.create_topics([TopicSpec(topic, PARTITIONS)])
    events: dict[str, list[tuple[str, set[TopicPartition]]]] = {"a": [], "b": []}

    def member(name: str) -> Consumer:
        listener = RebalanceListener(
            on_revoked=lambda tps: events[name].append(("revoked", tps)),
            on_assigned=lambda tps: events[name].append(("assigned", tps)),
        )
        return transport.consumer(topics=[topic], group_id=f"{topic}.g", listener=listener)

    def owns(*members: Consumer, count: int) -> Callable[[], bool]:
        def check() -> bool:
            for consumer in members:
                consumer.poll(timeout_ms=50, max_records=10)
            return all(len(consumer.assignment()) == count for consumer in members)

        return check

    a = member("a")
    try:
        assert wait_for(owns(a, count=PARTITIONS), timeout=60)
        b = member("b")
        try:
            assert wait_for(owns(a, b, count=PARTITIONS // 2), timeout=60)
            assert not a.assignment() & b.assignment()
            # Before close, which revokes too (librdkafka calls back from close).
            seen = {name: [(kind, tps) for kind, tps in log if tps] for name, log in events.items()}
        finally:
            b.close()
    finally:
        a.close()
    everything = {TopicPartition(topic, p) for p in range(PARTITIONS)}
    assert seen["a"][:2] == [("assigned", everything), ("revoked", everything)]
    assert seen["a"][-1] == ("assigned", a_final := seen["a"][-1][1])
    assert len(a_final) == PARTITIONS // 2
    assert seen["b"] == [("assigned", everything - a_final)]


def test_transactions_commit_records_and_offsets_together(transport: Transport) -> None:
    suffix = uuid.uuid4().hex[:8]
    source, sink = f"smoke-src-{suffix}", f"smoke-txn-{suffix}"
    transport.create_topics([TopicSpec(source, 1), TopicSpec(sink, 1)])
    plain = transport.producer()
    for i in range(3):
        plain.send(source, key=b"k", value=f"in-{i}".encode())
    plain.flush()
    plain.close()

    group = f"{source}.g"
    consumer = transport.consumer(topics=[source], group_id=group, read_committed=True)
    txn = transport.producer(transactional_id=f"smoke-txn-{suffix}")
    try:
        inputs = consume(consumer, 3)
        source_partition = TopicPartition(source, 0)
        txn.begin_transaction()
        txn.send(sink, key=b"k", value=b"aborted")
        txn.flush()
        txn.abort_transaction()
        txn.begin_transaction()
        txn.send(sink, key=b"k", value=b"committed")
        txn.commit_transaction({source_partition: inputs[-1].offset + 1}, consumer)
        # The offsets went with the transaction: the group resumes after the inputs.
        assert consumer.committed(source_partition) == 3
    finally:
        txn.close()
        consumer.close()

    reader = transport.consumer(assign_all=[sink], read_committed=True)
    try:
        # Only one record is expected; keep polling briefly to catch a leaked aborted one.
        out = consume(reader, 1)
        out += consume(reader, 1, timeout=2)
        [sink_partition] = reader.assignment()
        assert (
            reader.position(sink_partition) == reader.end_offsets([sink_partition])[sink_partition]
        )
    finally:
        reader.close()
    assert [r.value for r in out] == [b"committed"]


def test_a_reader_of_a_whole_topic_starts_where_asked(transport: Transport) -> None:
    topic = f"smoke-read-{uuid.uuid4().hex[:8]}"
    transport.create_topics([TopicSpec(topic, 2)])
    producer = transport.producer()
    producer.send(topic, key=b"old", value=b"old")
    producer.flush()
    oldest = transport.consumer(assign_all=[topic], from_beginning=True)
    newest = transport.consumer(assign_all=[topic], from_beginning=False)
    try:
        assert (
            oldest.assignment()
            == newest.assignment()
            == {
                TopicPartition(topic, 0),
                TopicPartition(topic, 1),
            }
        )
        # Before the first record the position is where reading starts.
        ends = newest.end_offsets(sorted(newest.assignment()))
        assert {tp: newest.position(tp) for tp in ends} == ends
        assert {oldest.position(tp) for tp in ends} == {0}
        # Both clients find "the end" asynchronously: let it happen before the next send.
        for _ in range(10):
            assert newest.poll(timeout_ms=100, max_records=10) == []
        producer.send(topic, key=b"new", value=b"new")
        producer.flush()
        assert sorted(r.value or b"" for r in consume(oldest, 2)) == [b"new", b"old"]
        assert [r.value for r in consume(newest, 1)] == [b"new"]
    finally:
        producer.close()
        oldest.close()
        newest.close()
