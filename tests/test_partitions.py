"""Rebalance callbacks (stream/partitions.py): the open span before partitions move."""

from __future__ import annotations

import numpy as np
import pytest

from metasignal.stream.checkpoint import Checkpoint, CommitPolicy
from metasignal.stream.lag import PartitionLag
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.outage import Outage
from metasignal.stream.partitions import Ownership
from metasignal.stream.settlement import Settled, Settlement
from metasignal.stream.stats import ScorerStats
from metasignal.stream.transport.base import (
    UNREACHABLE,
    Record,
    TopicPartition,
    TopicSpec,
    TransportError,
)
from metasignal.stream.transport.memory import MemoryBus

VOTES, OUTCOMES = TopicPartition("votes", 0), TopicPartition("outcomes", 0)


class Harness:
    """A settlement with one open span of two votes, and the ownership callbacks around it."""

    def __init__(self) -> None:
        bus = MemoryBus()
        bus.create_topics([TopicSpec("votes"), TopicSpec("outcomes")])
        self.consumer = bus.consumer(topics=["votes", "outcomes"], group_id="g")
        self.producer = bus.producer()
        self.metrics = ScorerMetrics()
        self.rollbacks = 0
        self.revoked: list[list[int]] = []
        self.assigned: list[list[int]] = []
        self.settlement = Settlement(
            checkpoint=Checkpoint(
                producer=self.producer,
                consumer=self.consumer,
                exactly_once=False,
                policy=CommitPolicy(interval_s=3600.0),
            ),
            outage=Outage(),
            metrics=self.metrics,
            stats=ScorerStats(),
            rate_window=100,
            on_commit=lambda: None,
            on_rollback=self._rolled_back,
        )
        self.ownership = Ownership(
            outcomes_topic="outcomes",
            metrics=self.metrics,
            lag=PartitionLag(gauge=self.metrics.lag, interval_s=0.0),
            on_outcomes_assigned=self.assigned.append,
            on_outcomes_revoked=self.revoked.append,
        )
        self.ownership.settlement = self.settlement
        records = [Record("votes", 0, offset, None, b"", 0) for offset in (0, 1)]
        self.settlement.settle(
            records,
            Settled(
                n_votes=2,
                decisions=np.array([1, 0]),
                dead=[],
                vote_timestamps_ms=np.zeros(2),
                n_stale=0,
            ),
        )
        assert self.settlement.pending == 2

    def _rolled_back(self) -> None:
        self.rollbacks += 1

    def rebalances(self, kind: str) -> float | None:
        return self.metrics.registry.get_sample_value("metasignal_rebalances_total", {"kind": kind})


def test_revoking_commits_the_open_span_first() -> None:
    h = Harness()
    h.ownership.revoked({VOTES, OUTCOMES})
    assert h.settlement.pending == 0 and h.consumer.committed(VOTES) == 2
    assert h.settlement.stats.votes == 2 and h.settlement.stats.trades == 1  # counted once
    assert h.revoked == [[0]] and h.rollbacks == 0 and h.rebalances("revoked") == 1


def test_a_failed_commit_before_revoking_drops_the_span_uncounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness()

    def unreachable(*_: object) -> None:
        raise TransportError("flush timed out", kind=UNREACHABLE)

    monkeypatch.setattr(h.producer, "flush", unreachable)
    h.ownership.revoked({VOTES})  # no exception: the next owner reads from the committed offsets
    assert h.settlement.pending == 0 and h.consumer.committed(VOTES) is None
    assert h.settlement.stats.votes == 0 and h.rollbacks == 1
    assert h.revoked == [[]] and h.rebalances("revoked") == 1


def test_lost_partitions_drop_the_span_without_committing() -> None:
    h = Harness()
    h.ownership.lost({VOTES, OUTCOMES})
    assert h.settlement.pending == 0 and h.consumer.committed(VOTES) is None
    assert h.settlement.stats.votes == 0 and h.rollbacks == 1
    assert h.revoked == [[0]] and h.rebalances("lost") == 1


def test_assigned_outcome_partitions_reach_the_shadow() -> None:
    h = Harness()
    h.ownership.assigned({VOTES, OUTCOMES})
    assert h.assigned == [[0]] and h.rebalances("assigned") == 1
    assert h.settlement.pending == 2  # an assignment leaves the open span alone


def test_lost_partitions_stop_reporting_their_lag() -> None:
    h = Harness()
    h.consumer.poll(timeout_ms=0, max_records=1)  # joins the group: both partitions assigned
    h.ownership.lag.update(h.consumer)

    def lag(tp: TopicPartition) -> float | None:
        return h.metrics.registry.get_sample_value(
            "metasignal_consumer_lag", {"topic": tp.topic, "partition": str(tp.partition)}
        )

    assert lag(VOTES) == 0 and lag(OUTCOMES) == 0
    h.ownership.lost({VOTES})  # another replica reports it now
    assert lag(VOTES) is None and lag(OUTCOMES) == 0


def test_held_counts_never_commit_a_batch_that_raised_before_it_was_settled() -> None:
    # Exactly-once: a batch opened the transaction and sent a signal, then raised; the close
    # that follows has no span but held shadow counts. Committing would publish the signal
    # without its offsets: the transaction is dropped instead.
    bus = MemoryBus()
    bus.create_topics([TopicSpec("votes"), TopicSpec("signals")])
    consumer = bus.consumer(topics=["votes"], group_id="g")
    checkpoint = Checkpoint(
        producer=bus.producer(transactional_id="t"),
        consumer=consumer,
        exactly_once=True,
        policy=CommitPolicy(interval_s=3600.0),
    )
    sent: list[str] = []
    rollbacks: list[bool] = []
    settlement = Settlement(
        checkpoint=checkpoint,
        outage=Outage(),
        metrics=ScorerMetrics(),
        stats=ScorerStats(),
        rate_window=100,
        on_commit=lambda: None,
        on_rollback=lambda: rollbacks.append(True),
        evidence_held=lambda: True,
        send_evidence=lambda producer: sent.append("evidence"),
    )
    checkpoint.begin()
    checkpoint.producer.send("signals", key=b"e1", value=b"{}")
    assert checkpoint.in_transaction and checkpoint.pending == 0
    settlement.commit_all()
    assert rollbacks == [True] and not checkpoint.in_transaction and sent == []
    reader = bus.consumer(topics=["signals"], group_id="r", read_committed=True)
    assert reader.poll(timeout_ms=50, max_records=10) == []
