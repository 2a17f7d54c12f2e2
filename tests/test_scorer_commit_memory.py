"""Lean commits on the memory bus: the bounds a crash keeps, in both delivery modes.

A scorer commits every ``commit_interval_s`` or ``commit_max_records``, whichever comes
first. A scorer that dies before its commit re-delivers at most that many votes plus one
batch (at-least-once) and never loses one; exactly-once, its open transaction is dropped and
every vote still has exactly one committed signal. The same loop runs on Kafka in
tests/test_scorer_kafka.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics
from metasignal.stream.transport.base import UNREACHABLE, TopicPartition, TransportError
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    publish_model,
    send_votes,
    versioned,
)

TOPICS = Topics(prefix="c.")
BATCH = 50
VOTES = TopicPartition(TOPICS.votes, 0)


class Clock:
    """The checkpoint's clock: each scorer step is 0.1 s apart (fake time, so the interval
    is tested without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_bus(committee: Committee, artifact_body: dict, n_votes: int) -> tuple[MemoryBus, list]:
    bus = memory_bus(TOPICS, partitions=1)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    return bus, send_votes(bus, TOPICS, committee, 0, n_votes)


def scorer_for(bus: MemoryBus, **options: Any) -> Scorer:
    options = {"batch_size": BATCH, "poll_timeout_ms": 10, **options}
    scorer = memory_scorer(bus, topics=TOPICS, **options)
    scorer.load_models(timeout_s=5)
    return scorer


def with_clock(scorer: Scorer, clock: Clock) -> Scorer:
    scorer._votes = scorer._subscribe()
    assert scorer._checkpoint is not None
    scorer._checkpoint.clock = clock
    return scorer


def crash(scorer: Scorer) -> int:
    """Die without committing: leave the group; the open span (and transaction) is lost."""
    assert scorer._checkpoint is not None and scorer._votes is not None
    pending = scorer._checkpoint.pending
    scorer._votes.close()
    return pending


def signal_ids(bus: MemoryBus) -> Counter[str]:
    return Counter(s["id"] for s in decoded(bus, TOPICS.signals))


@pytest.mark.parametrize("steps", [1, 3, 4, 5, 6, 9])
def test_at_least_once_crash_redelivers_at_most_one_count_plus_one_batch(
    committee: Committee, artifact_body: dict, steps: int
) -> None:
    bus, ids = make_bus(committee, artifact_body, 1000)
    max_records = 175
    first = scorer_for(bus, commit_interval_s=3600.0, commit_max_records=max_records)
    for _ in range(steps):
        assert first.step() == BATCH
    redelivered = crash(first)
    assert redelivered <= max_records - 1 + BATCH
    committed = first._checkpoint.consumer.committed(VOTES)  # type: ignore[union-attr]
    assert (committed or 0) + redelivered == steps * BATCH
    second = scorer_for(bus, commit_interval_s=0.0)
    drain(second)
    seen = signal_ids(bus)
    assert set(seen) == set(ids)  # none lost
    assert sum(seen.values()) - len(ids) == redelivered  # exactly the open span again


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 7])
def test_at_least_once_crash_redelivers_at_most_one_interval_plus_one_batch(
    committee: Committee, artifact_body: dict, steps: int
) -> None:
    # A steady 500 votes/s: one batch of 50 each 0.1 s; commits every 0.3 s.
    bus, ids = make_bus(committee, artifact_body, 1000)
    interval, rate, clock = 0.3, 500.0, Clock()
    first = with_clock(scorer_for(bus, commit_interval_s=interval, commit_max_records=0), clock)
    for _ in range(steps):
        assert first.step() == BATCH
        clock.now += 0.1
    redelivered = crash(first)
    # Batches settle at 0, 0.1, 0.2 s; the one at 0.3 s makes the span due: 4 per commit.
    assert redelivered == BATCH * (steps % 4)
    assert redelivered <= rate * interval + BATCH
    second = scorer_for(bus, commit_interval_s=0.0)
    drain(second)
    seen = signal_ids(bus)
    assert set(seen) == set(ids)
    assert sum(seen.values()) - len(ids) == redelivered


@pytest.mark.parametrize("steps", [1, 2, 4, 6])
def test_exactly_once_crash_mid_span_shows_nothing_of_it_and_loses_nothing(
    committee: Committee, artifact_body: dict, steps: int
) -> None:
    bus, ids = make_bus(committee, artifact_body, 600)
    clock = Clock()
    first = with_clock(
        scorer_for(bus, exactly_once=True, transactional_id="a", commit_interval_s=0.25), clock
    )
    for _ in range(steps):
        assert first.step() == BATCH
        clock.now += 0.1
    open_span = crash(first)
    # Only committed transactions are visible: the open span's signals are not.
    assert sum(signal_ids(bus).values()) == steps * BATCH - open_span
    assert open_span <= 0.25 * 500 + BATCH
    second = scorer_for(bus, exactly_once=True, transactional_id="a")
    drain(second)
    assert signal_ids(bus) == Counter(ids)  # each vote once


def test_exactly_once_failed_commit_rewinds_the_whole_span(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, ids = make_bus(committee, artifact_body, 400)
    scorer = scorer_for(
        bus, exactly_once=True, transactional_id="a", commit_interval_s=3600.0,
        commit_max_records=200,
    )  # fmt: skip
    commit = scorer._producer.commit_transaction
    failures = iter([True])

    def flaky_commit(offsets: Any, consumer: Any) -> None:
        if next(failures, False):
            raise TransportError("transaction commit timed out", kind=UNREACHABLE)
        commit(offsets, consumer)

    monkeypatch.setattr(scorer._producer, "commit_transaction", flaky_commit)
    monkeypatch.setattr("metasignal.stream.outage.Outage.backoff", lambda self: 0.0)
    for _ in range(4):  # four batches: the fourth makes the span due and its commit fails
        scorer.step()
    assert signal_ids(bus) == Counter()
    assert scorer._checkpoint is not None and scorer._checkpoint.pending == 0
    assert scorer.metrics.transaction_aborts._value.get() == 1
    drain(scorer)
    assert signal_ids(bus) == Counter(ids)
    assert scorer.stats.votes == 400 and scorer.stats.signals == 400  # counted once


def test_a_failed_at_least_once_commit_replays_the_span_and_counts_it_once(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, ids = make_bus(committee, artifact_body, 300)
    scorer = scorer_for(bus, commit_interval_s=3600.0, commit_max_records=0)
    failures = iter([True])

    def flaky_flush(timeout_s: float = 30.0) -> None:
        if next(failures, False):
            raise TransportError("flush timed out", kind=UNREACHABLE)

    monkeypatch.setattr(scorer._producer, "flush", flaky_flush)
    monkeypatch.setattr("metasignal.stream.outage.Outage.backoff", lambda self: 0.0)
    drain(scorer)
    seen = signal_ids(bus)
    # The whole span (all 300, committed when the poll came back empty) was read again.
    assert set(seen) == set(ids) and sum(seen.values()) == 600
    assert scorer.stats.votes == 300
    assert scorer._checkpoint is not None
    assert scorer._checkpoint.consumer.committed(VOTES) == 300


def test_commits_are_lean_and_nothing_new_commits_nothing(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, _ = make_bus(committee, artifact_body, 1000)
    counts: dict[str, Counter[str]] = {}
    for label, options in (
        ("every batch", {"commit_interval_s": 0.0}),
        ("count", {"commit_interval_s": 3600.0, "commit_max_records": 200}),
    ):
        scorer = scorer_for(bus, group_id=f"lean-{label}", **options)
        scorer._votes = scorer._subscribe()
        calls: Counter[str] = Counter()
        producer, consumer = scorer._producer, scorer._votes
        flush, commit = producer.flush, consumer.commit
        monkeypatch.setattr(
            producer, "flush", lambda *a, f=flush, c=calls: (c.update(["flush"]), f(*a))[1]
        )
        monkeypatch.setattr(
            consumer, "commit", lambda o, f=commit, c=calls: (c.update(["commit"]), f(o))[1]
        )
        drain(scorer)
        for _ in range(20):  # idle: nothing new consumed, nothing committed
            assert scorer.step() == 0
        counts[label] = calls
        assert scorer.stats.votes == 1000
    assert counts["every batch"] == Counter(flush=20, commit=20)  # 1000 / 50, as before
    assert counts["count"] == Counter(flush=5, commit=5)  # a flush only with a commit


def test_a_rebalance_commits_the_open_span_before_giving_partitions_away(
    committee: Committee, artifact_body: dict
) -> None:
    bus = memory_bus(TOPICS)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(bus, TOPICS, committee, 0, 1000)
    first = scorer_for(bus, commit_interval_s=3600.0, commit_max_records=0)
    for _ in range(4):
        first.step()
    assert first._checkpoint is not None and first._checkpoint.pending == 4 * BATCH
    second = scorer_for(bus, commit_interval_s=3600.0, commit_max_records=0)
    second._votes = second._subscribe()  # joins the group (the memory bus has no barrier:
    # on Kafka the first replica's revoke completes before the second is assigned anything)
    first.step()  # the rebalance: the open span is committed in the revoke callback first
    assert first.stats.votes >= 4 * BATCH
    for _ in range(100):
        first.step(), second.step()
    first.close()
    second.close()
    assert signal_ids(bus) == Counter(ids)  # no crash: nothing repeated, nothing lost
    assert first.stats.votes + second.stats.votes == 1000


def test_after_a_partial_batch_the_next_poll_waits_the_linger_and_after_a_full_one_not(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus, _ = make_bus(committee, artifact_body, 2 * BATCH + 10)
    # A long linger: the time the test itself takes between two steps (a few ms on a loaded
    # machine) must not eat it, or the wait measured below would be shorter.
    scorer = scorer_for(bus, poll_linger_ms=200.0)
    slept: list[float] = []
    monkeypatch.setattr("metasignal.stream.scorer.time.sleep", slept.append)
    assert scorer.step() == BATCH and scorer.step() == BATCH
    assert slept == []  # full batches: the votes are there, poll again at once
    assert scorer.step() == 10
    assert scorer.step() == 0  # the poll after the partial batch waited first
    assert len(slept) == 1 and 0.1 < slept[0] <= 0.2  # the linger, less the time since


def test_the_commit_defaults_follow_the_mode_and_bad_values_name_their_flag() -> None:
    from metasignal.stream.errors import MetasignalError

    assert ScorerOptions().commit_policy.interval_s == 0.25
    assert ScorerOptions(exactly_once=True).commit_policy.interval_s == 0.02
    assert ScorerOptions(commit_interval_s=0.0).commit_policy.interval_s == 0.0  # every batch
    assert ScorerOptions().commit_policy.max_records == 2000
    with pytest.raises(MetasignalError, match="--commit-interval-s"):
        ScorerOptions(commit_interval_s=-0.1)
    with pytest.raises(MetasignalError, match="--commit-max-records"):
        ScorerOptions(commit_max_records=-1)
    with pytest.raises(MetasignalError, match="--poll-linger-ms"):
        ScorerOptions(poll_linger_ms=float("nan"))
