"""Lean commits on the broker, both clients: what a kill -9 between commits costs.

A scorer committing every 1,000 records (batches of 200, the interval out of the way) is
killed mid-stream and restarted: at-least-once, every vote has a signal and at most
999 + 200 are repeated (the open span); exactly-once, each vote has exactly one committed
signal although each transaction spans five poll batches.
"""

from __future__ import annotations

from collections import Counter

import pytest

from metasignal.stream.topics import Topics
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import publish_model, send_votes, versioned, wait_for
from tests.test_scorer_kafka import committed_signals, scorer_process

pytestmark = pytest.mark.kafka

MAX_RECORDS, BATCH = 1000, 200  # scorer_process polls batches of 200


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_kill_9_between_commits_repeats_at_most_the_open_span(
    kafka: tuple[KafkaTransport, Topics],
    kafka_bootstrap: str,
    committee: Committee,
    artifact_body: dict,
    exactly_once: bool,
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    n = 20_000
    ids = send_votes(transport, topics, committee, 0, n)
    extra = ["--commit-interval-s", "3600", "--commit-max-records", str(MAX_RECORDS)]
    if exactly_once:
        extra += ["--exactly-once", "--transactional-id", f"{topics.prefix}tx"]
    first = scorer_process(kafka_bootstrap, topics, *extra)
    # read_uncommitted: at-least-once signals are out before their commit.
    probe = transport.consumer(assign_all=[topics.signals])
    seen = 0

    def some_progress() -> bool:
        nonlocal seen
        seen += len(probe.poll(timeout_ms=100, max_records=5000))
        return seen >= 3000

    try:
        progressed = wait_for(some_progress, timeout=90, interval=0)
    finally:
        first.stop()  # SIGKILL
        probe.close()
    assert progressed, f"no signal in 90 s; scorer said:\n{first.output()[-2000:]}"
    assert seen < n, "the scorer finished before it could be killed mid-stream"
    second = scorer_process(kafka_bootstrap, topics, *extra)
    try:
        out = committed_signals(transport, topics, expect=n, timeout=150)
        assert second.terminate() == 0
    finally:
        second.stop()
    counts = Counter(s["id"] for s in out)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} votes without a signal"
    repeated = sum(counts.values()) - n
    if exactly_once:
        assert repeated == 0, "duplicate signals in exactly-once mode"
    else:
        assert repeated <= MAX_RECORDS - 1 + BATCH, f"{repeated} signals repeated"
