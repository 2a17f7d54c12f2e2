"""The checkpoint's outage recovery, at the transport-contract level (any transport).

The Kafka broker tests (tests/test_outage_kafka.py) show it end to end; these pin down the
contract a transport must keep: a TransportError's ``kind`` decides the recovery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from metasignal.stream.checkpoint import Checkpoint
from metasignal.stream.transport.base import (
    FENCED,
    OTHER,
    UNREACHABLE,
    Record,
    TopicPartition,
    TransportError,
)

TP = TopicPartition("votes", 0)
BATCH = [Record("votes", 0, 10, None, b"", 0), Record("votes", 0, 11, None, b"", 0)]


class RecordingConsumer:
    """Keeps what the checkpoint asks of a consumer: seeks, and a committed offset."""

    def __init__(self, committed: int | None) -> None:
        self._committed = committed
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.reachable_now = True

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def committed(self, partition: TopicPartition) -> int | None:
        if not self.reachable_now:
            raise TransportError("committed offset unavailable", kind=UNREACHABLE)
        return self._committed

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._committed = offsets[TP]


class RecordingProducer:
    def __init__(self, *, abort_fails: bool = False) -> None:
        self.abort_fails = abort_fails
        self.aborted = self.closed = 0

    def abort_transaction(self) -> None:
        if self.abort_fails:
            raise TransportError("transaction abort timed out", kind=FENCED)
        self.aborted += 1

    def close(self) -> None:
        self.closed += 1


def checkpoint(
    consumer: RecordingConsumer, producer: RecordingProducer, made: list[RecordingProducer]
) -> Checkpoint:
    def factory() -> Any:
        if not consumer.reachable_now:
            raise TransportError("cannot initialise transactions", kind=UNREACHABLE)
        made.append(RecordingProducer())
        return made[-1]

    return Checkpoint(
        producer=producer,  # type: ignore[arg-type]
        consumer=consumer,  # type: ignore[arg-type]
        exactly_once=True,
        max_failures=2,
        producer_factory=factory,
    )


def test_fenced_transaction_recreates_the_producer_and_resumes_from_committed() -> None:
    # The commit timed out on our side but reached the broker: committed is past the batch.
    consumer, old = RecordingConsumer(committed=12), RecordingProducer()
    made: list[RecordingProducer] = []
    cp = checkpoint(consumer, old, made)
    cp.rollback(BATCH, TransportError("transaction commit timed out", kind=FENCED))
    assert cp.producer_lost and old.closed == 1 and consumer.seeks == []
    consumer.reachable_now = False
    with pytest.raises(TransportError):
        cp.ensure_producer()  # broker still away: try again later
    assert cp.producer_lost and not made
    consumer.reachable_now = True
    cp.ensure_producer()
    assert not cp.producer_lost and cp.producer is made[0]
    # Rewound to the committed offset, not to the batch start: nothing written twice.
    assert consumer.seeks == [(TP, 12)]


def test_a_failed_abort_also_recreates_the_producer() -> None:
    consumer, old = RecordingConsumer(committed=10), RecordingProducer(abort_fails=True)
    made: list[RecordingProducer] = []
    cp = checkpoint(consumer, old, made)
    cp.rollback(BATCH, TransportError("send failed", kind=UNREACHABLE))
    assert cp.producer_lost
    cp.ensure_producer()
    assert consumer.seeks == [(TP, 10)] and len(made) == 1


def test_outages_never_exhaust_the_failure_budget() -> None:
    consumer, producer = RecordingConsumer(committed=10), RecordingProducer()
    made: list[RecordingProducer] = []
    cp = checkpoint(consumer, producer, made)
    for _ in range(50):  # max_failures is 2: outages do not count
        cp.rollback(BATCH, TransportError("offset commit timed out", kind=UNREACHABLE))
    assert producer.aborted == 50 and not cp.producer_lost
    assert consumer.seeks == [(TP, 10)] * 50
    cp.rollback(BATCH, TransportError("record too large", kind=OTHER))
    with pytest.raises(TransportError, match="2 batches in a row"):
        cp.rollback(BATCH, TransportError("record too large", kind=OTHER))
