"""Spans: commits on an interval or a count, and a rollback that rewinds the whole span.

Transport-contract level (recording fakes); the scorer's bounds on the memory bus are in
tests/test_scorer_commit_memory.py and on the broker in tests/test_scorer_kafka.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from metasignal.stream.checkpoint import Checkpoint, CommitPolicy
from metasignal.stream.transport.base import (
    FENCED,
    UNREACHABLE,
    Record,
    TopicPartition,
    TransportError,
)

VOTES0, VOTES1 = TopicPartition("votes", 0), TopicPartition("votes", 1)


def batch(partition: int, first: int, n: int) -> list[Record]:
    return [Record("votes", partition, first + i, None, b"", 0) for i in range(n)]


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    def committed(self, partition: TopicPartition) -> int | None:
        return self.commits[-1].get(partition) if self.commits else None


class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.transactions: list[dict[TopicPartition, int]] = []
        self.fail_commit: TransportError | None = None

    def flush(self, timeout_s: float = 30.0) -> None:
        self.calls.append("flush")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def commit_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Any) -> None:
        if self.fail_commit is not None:
            raise self.fail_commit
        self.calls.append("commit")
        self.transactions.append(dict(offsets))

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self) -> None:
        self.calls.append("close")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    policy: CommitPolicy, *, exactly_once: bool
) -> tuple[Checkpoint, Consumer, Producer, Clock, list[Producer]]:
    consumer, producer, clock = Consumer(), Producer(), Clock()
    made: list[Producer] = []

    def factory() -> Any:
        made.append(Producer())
        return made[-1]

    cp = Checkpoint(
        producer=producer,  # type: ignore[arg-type]
        consumer=consumer,  # type: ignore[arg-type]
        exactly_once=exactly_once,
        producer_factory=factory,
        policy=policy,
        clock=clock,
    )
    return cp, consumer, producer, clock, made


def test_policy_rejects_negative_settings() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CommitPolicy(interval_s=-1)
    with pytest.raises(ValueError, match=">= 0"):
        CommitPolicy(max_records=-5)


def test_the_default_policy_commits_every_batch_as_before() -> None:
    cp, consumer, producer, _, _ = make(CommitPolicy(), exactly_once=False)
    for first in (0, 3, 6):
        assert cp.settle(batch(0, first, 3))
    assert consumer.commits == [{VOTES0: 3}, {VOTES0: 6}, {VOTES0: 9}]
    assert producer.calls == ["flush"] * 3


def test_at_least_once_commits_on_the_interval_with_one_flush() -> None:
    cp, consumer, producer, clock, _ = make(CommitPolicy(interval_s=0.25), exactly_once=False)
    assert not cp.settle(batch(0, 0, 5))
    assert cp.wait_s() == pytest.approx(0.25)
    clock.now += 0.1
    assert not cp.settle(batch(1, 40, 5))
    assert cp.pending == 10 and cp.wait_s() == pytest.approx(0.15)
    assert consumer.commits == [] and producer.calls == []  # no flush until the commit
    clock.now += 0.2
    assert cp.settle(batch(0, 5, 5))
    # One flush and one commit for three batches, naming the end of each partition.
    assert producer.calls == ["flush"]
    assert consumer.commits == [{VOTES0: 10, VOTES1: 45}]
    assert cp.pending == 0 and cp.wait_s() is None


def test_the_count_commits_first_when_the_rate_is_high() -> None:
    cp, consumer, _, _, _ = make(CommitPolicy(interval_s=60, max_records=10), exactly_once=False)
    assert not cp.settle(batch(0, 0, 4))
    assert not cp.settle(batch(0, 4, 4))
    assert cp.settle(batch(0, 8, 4))  # 12 >= 10: at most max_records - 1 + one batch pending
    assert consumer.commits == [{VOTES0: 12}]


def test_nothing_settled_commits_nothing() -> None:
    cp, consumer, producer, clock, _ = make(CommitPolicy(interval_s=0.1), exactly_once=False)
    assert not cp.settle([])
    clock.now += 10
    assert cp.wait_s() is None and cp.pending == 0
    assert consumer.commits == [] and producer.calls == []


def test_exactly_once_spans_one_transaction_over_several_batches() -> None:
    cp, _, producer, clock, _ = make(CommitPolicy(interval_s=0.02), exactly_once=True)
    for first in (0, 2, 4):
        cp.begin()
        assert not cp.settle(batch(0, first, 2))
        clock.now += 0.005
    clock.now += 0.01
    cp.begin()
    assert cp.settle(batch(0, 6, 2))
    assert producer.calls == ["begin", "commit"]
    assert producer.transactions == [{VOTES0: 8}]
    cp.begin()  # the next span opens its own transaction
    assert producer.calls == ["begin", "commit", "begin"]


def test_a_failed_span_commit_rewinds_every_batch_of_the_span() -> None:
    cp, consumer, producer, clock, _ = make(CommitPolicy(interval_s=1.0), exactly_once=True)
    cp.begin()
    cp.settle(batch(0, 10, 3))
    cp.begin()
    cp.settle(batch(1, 70, 3))
    cp.begin()
    clock.now += 2
    producer.fail_commit = TransportError("transaction commit failed", kind=UNREACHABLE)
    last = batch(0, 13, 3)
    with pytest.raises(TransportError) as failed:
        cp.settle(last)
    cp.rollback(last, failed.value)
    assert producer.calls == ["begin", "abort"]
    # Back to the span's first offsets on each partition, not to the last batch's.
    assert sorted(consumer.seeks) == [(VOTES0, 10), (VOTES1, 70)]
    assert cp.pending == 0
    producer.fail_commit = None
    cp.begin()  # the replay opens a new transaction
    assert producer.calls == ["begin", "abort", "begin"]


def test_a_fenced_span_recreates_the_producer_and_resumes_from_committed() -> None:
    cp, consumer, producer, _, made = make(CommitPolicy(interval_s=1.0), exactly_once=True)
    consumer.commits.append({VOTES0: 10})
    cp.begin()
    cp.settle(batch(0, 10, 5))
    cp.begin()
    cp.settle(batch(0, 15, 5))
    cp.rollback(batch(0, 20, 5), TransportError("producer fenced", kind=FENCED))
    assert cp.producer_lost and "close" in producer.calls and consumer.seeks == []
    cp.ensure_producer()
    assert cp.producer is made[0] and consumer.seeks == [(VOTES0, 10)]


def test_abandon_aborts_the_open_transaction_without_seeking() -> None:
    cp, consumer, producer, _, _ = make(CommitPolicy(interval_s=1.0), exactly_once=True)
    cp.begin()
    cp.settle(batch(0, 0, 5))
    cp.abandon("partitions lost")
    assert producer.calls == ["begin", "abort"] and consumer.seeks == [] and cp.pending == 0
    cp.abandon("nothing open")  # idempotent
    assert producer.calls == ["begin", "abort"]
