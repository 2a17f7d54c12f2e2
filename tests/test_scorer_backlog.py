"""A backlog never trades as live (issue 11 §5), on the memory bus."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytest

from metasignal.stream.topics import Topics
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

TOPICS = Topics(prefix="backlog.")
make_bus = partial(memory_bus, TOPICS)
scorer_for = partial(memory_scorer, topics=TOPICS)


def signals(bus: MemoryBus) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in decoded(bus, TOPICS.signals)}


def send_old_votes(
    bus: MemoryBus, committee: Committee, start: int, stop: int, age_s: float, monkeypatch: Any
) -> list[str]:
    """Votes written ``age_s`` ago (the memory bus stamps records with time.time())."""
    written = time.time() - age_s
    with monkeypatch.context() as patch:
        patch.setattr("metasignal.stream.transport.memory.time.time", lambda: written)
        return send_votes(bus, TOPICS, committee, start, stop)


def test_old_votes_get_no_trade_signals_marked_stale(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a scorer in a new group re-scored the whole votes topic and emitted every old
    signal as if it were live (78,724 stale signals in one run)."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    old = send_old_votes(bus, committee, 0, 1000, 3600, monkeypatch)
    fresh = send_votes(bus, TOPICS, committee, 1000, 2000)
    scorer = scorer_for(bus)  # the default max vote age: on
    drain(scorer)
    out = signals(bus)
    assert set(out) == set(old) | set(fresh)
    assert all(out[i]["stale"] is True and out[i]["decision"] == 0 for i in old)
    assert not any("stale" in out[i] for i in fresh)
    assert any(out[i]["decision"] == 1 for i in fresh)
    # The old ones would have traded as often as the fresh ones, had they been live.
    assert any(out[i]["score"] >= out[i]["threshold"] for i in old)
    assert scorer.stats.stale == 1000
    assert scorer.metrics.registry.get_sample_value("metasignal_stale_votes_total") == 1000


def test_a_zero_max_vote_age_scores_a_backlog_as_live(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    old = send_old_votes(bus, committee, 0, 500, 3600, monkeypatch)
    scorer = scorer_for(bus, max_vote_age_s=0)
    drain(scorer)
    out = signals(bus)
    assert set(out) == set(old) and not any("stale" in s for s in out.values())
    assert all(s["decision"] == int(s["score"] >= s["threshold"]) for s in out.values())


def test_a_fresh_group_can_start_from_the_latest_votes(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_votes(bus, TOPICS, committee, 0, 500)
    scorer = scorer_for(bus, start_from="latest")
    drain(scorer)  # joins the group at the end of the topic
    assert signals(bus) == {}
    later = send_votes(bus, TOPICS, committee, 500, 600)
    drain(scorer)
    assert set(signals(bus)) == set(later)
