"""Honest gauges and memory bounded by bytes (issue 11 §6), on the memory bus."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np

from metasignal.stream.join import JoinCache
from metasignal.stream.scorer import Scorer
from metasignal.stream.topics import Topics
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    outcome_records,
    publish_model,
    send_raw,
    send_votes,
    versioned,
)

TOPICS = Topics(prefix="gauges.")
ROLLING = (
    "metasignal_realized_positive_rate",
    "metasignal_rolling_f1",
    "metasignal_rolling_precision",
    "metasignal_rolling_recall",
    "metasignal_rolling_pr_auc",
)

make_bus = partial(memory_bus, TOPICS)
scorer_for = partial(memory_scorer, topics=TOPICS)


def gauge(scorer: Scorer, name: str, labels: dict[str, str] | None = None) -> float:
    value = scorer.metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


def test_rolling_gauges_are_nan_while_their_window_is_empty(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: rolling_f1 (and the others) exported 0.0 with no outcome at all: a collapse."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus, drift_snapshot_every=10)
    assert all(math.isnan(gauge(scorer, name)) for name in ROLLING)
    assert math.isnan(gauge(scorer, "metasignal_predicted_positive_rate"))
    send_votes(bus, TOPICS, committee, 0, 300)
    drain(scorer)
    assert all(math.isnan(gauge(scorer, name)) for name in ROLLING)
    assert not math.isnan(gauge(scorer, "metasignal_predicted_positive_rate"))
    # Outcomes, all negative, on votes the model did not trade: F1, precision, recall and
    # PR-AUC are undefined (no trade predicted, none happened), the realized rate is 0.
    signals = decoded(bus, TOPICS.signals)
    trades = {s["id"] for s in signals if s["decision"] == 1}
    quiet = [i for i in range(300) if str(committee.ids[i]) not in trades][:100]
    send_raw(
        bus, TOPICS.outcomes, [outcome_records(committee, i, i + 1, label=0)[0] for i in quiet]
    )
    drain(scorer)
    assert gauge(scorer, "metasignal_realized_positive_rate") == 0.0
    assert all(math.isnan(gauge(scorer, name)) for name in ROLLING[1:])
    # A new model starts an empty window: its gauges are NaN again, not the old model's.
    publish_model(bus, TOPICS, versioned(artifact_body, 2, TEST_KEY))
    drain(scorer)
    assert scorer.models.current is not None and scorer.models.current.version == 2
    assert all(math.isnan(gauge(scorer, name)) for name in ROLLING)


def test_join_cache_entries_gauge_follows_the_cache_every_batch(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: the entries gauge was only set when outcomes were joined (0 during a flood)."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 700)
    drain(scorer)
    assert gauge(scorer, "metasignal_join_cache_entries") == len(scorer.join) == 700
    assert gauge(scorer, "metasignal_join_cache_bytes") == scorer.join.nbytes


def test_long_ids_are_bounded_by_bytes_not_only_entries(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: 60 KB ids grew RSS by 91 MB per 1,000 votes within the entry bound. Ids are
    now limited to 256 characters, and non-ASCII ids (up to 4 bytes a character) are bounded
    by the cache's byte budget."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    columns = JoinCache(max_entries=1000).nbytes
    budget = columns + 200 * 1200  # room for ~200 ids of 256 four-byte characters
    scorer = scorer_for(bus, join_max_entries=1000, join_max_bytes=budget)
    members = dict(zip(committee.members, committee.votes[0].tolist(), strict=True))
    votes = [
        (b"k%d" % i, json.dumps({"id": f"{i:04d}" + "\U0001f600" * 250, "ts": 1,
                                 "votes": members}).encode())
        for i in range(1000)
    ]  # fmt: skip
    send_raw(bus, TOPICS.votes, votes)
    drain(scorer)
    assert scorer.stats.signals == 1000
    assert scorer.join.nbytes <= budget
    assert 100 < len(scorer.join) < 300
    assert scorer.join.evictions["bytes"] == 1000 - len(scorer.join)
    evicted = gauge(scorer, "metasignal_join_cache_evictions_total", {"reason": "bytes"})
    assert evicted == scorer.join.evictions["bytes"]


def test_outcomes_for_unknown_events_are_counted_unmatched(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: an outcome whose vote never came was parked without bound in time and never
    counted (only when the parked set overflowed max_entries)."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus)
    now = [0.0]
    scorer.join.clock = lambda: now[0]
    send_votes(bus, TOPICS, committee, 0, 100)
    drain(scorer)
    ghosts = [(b"g%d" % i, json.dumps({"id": f"ghost{i}", "ts": 1, "label": 1}).encode())
              for i in range(40)]  # fmt: skip
    send_raw(bus, TOPICS.outcomes, ghosts)
    drain(scorer)
    assert scorer.join.parked == 40  # their votes may still be on the way
    now[0] += scorer.join.park_ttl_s + 1
    send_raw(bus, TOPICS.outcomes, outcome_records(committee, 0, 10))
    drain(scorer)
    assert scorer.join.parked == 0
    unmatched = gauge(scorer, "metasignal_outcomes_unmatched_total", {"reason": "no_vote"})
    assert unmatched == 40
    assert scorer.stats.joined == 10


def test_join_cache_nbytes_is_released_as_entries_leave() -> None:
    cache = JoinCache(max_entries=10)
    cache.remember("first", ts_ms=0, votes=np.zeros(2), score=0, decision=0, model_version=1,
                   members=("a", "b"))  # fmt: skip
    assert cache.match("first") is not None
    empty = cache.nbytes  # the columns, now two members wide
    ids = [f"e{i}" * 20 for i in range(5)]
    cache.remember_batch(
        ids,
        ts_ms=np.arange(5),
        votes=np.zeros((5, 2)),
        scores=np.zeros(5),
        decisions=np.zeros(5, dtype=np.int8),
        model_version=1,
        members=("a", "b"),
    )
    cache.park("early", 1)
    assert cache.nbytes > empty
    for event_id in ids:
        assert cache.match(event_id) is not None
    assert cache.claim("early") == 1
    assert cache.nbytes == empty
