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
from tests.streaming import publish_model, send_votes, versioned
from tests.test_scorer_kafka import kill_9_mid_stream, scorer_process, signals_then_sigterm

pytestmark = pytest.mark.kafka

MAX_RECORDS, BATCH = 1000, 200  # scorer_process polls batches of 200


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
    kill_9_mid_stream(
        scorer_process(kafka_bootstrap, topics, *extra), transport, topics, after=3000, of=n
    )
    second = scorer_process(kafka_bootstrap, topics, *extra)
    out = signals_then_sigterm(second, transport, topics, expect=n, timeout=150)
    counts = Counter(s["id"] for s in out)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} votes without a signal"
    repeated = sum(counts.values()) - n
    if exactly_once:
        assert repeated == 0, "duplicate signals in exactly-once mode"
    else:
        assert repeated <= MAX_RECORDS - 1 + BATCH, f"{repeated} signals repeated"
