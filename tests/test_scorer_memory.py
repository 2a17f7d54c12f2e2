"""The scorer loop on the embedded memory bus (fast); the same promises run on Kafka too."""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import load_artifact
from metasignal.stream.messages import REASONS
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.topics import Topics
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    ServiceThread,
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    publish_model,
    send_raw,
    send_votes,
    versioned,
    wait_for,
)

TOPICS = Topics(prefix="t.")
make_bus = functools.partial(memory_bus, TOPICS, partitions=4)
scorer_for = functools.partial(memory_scorer, topics=TOPICS, poll_timeout_ms=10)


def signals(bus: MemoryBus) -> list[dict[str, Any]]:
    return decoded(bus, TOPICS.signals)


def test_no_model_means_not_ready_and_nothing_consumed(committee: Committee) -> None:
    bus = make_bus()
    send_votes(bus, TOPICS, committee, 0, 50)
    scorer = scorer_for(bus)
    assert scorer.step() == 0
    assert not scorer.ready
    assert signals(bus) == []


def test_every_vote_gets_one_signal_matching_the_numpy_scorer(
    committee: Committee, artifact_body: dict, exactly_once: bool
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(bus, TOPICS, committee, 0, 1200)
    scorer = scorer_for(bus, exactly_once=exactly_once, transactional_id="s1")
    drain(scorer)
    assert scorer.ready
    out = {s["id"]: s for s in signals(bus)}
    assert len(signals(bus)) == 1200 and set(out) == set(ids)
    model = CompiledModel.from_artifact(
        load_artifact(versioned(artifact_body, 1, TEST_KEY), keys=[TEST_KEY])
    )
    expected = model.predict_proba(committee.votes[:1200])
    got = np.array([out[i]["score"] for i in ids])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert {s["model_version"] for s in out.values()} == {1}
    assert all(s["decision"] == int(s["score"] >= s["threshold"]) for s in out.values())
    assert scorer.stats.trades == sum(s["decision"] for s in out.values())


def test_hot_swap_between_batches_loses_nothing(committee: Committee, artifact_body: dict) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_votes(bus, TOPICS, committee, 0, 600)
    scorer = scorer_for(bus, batch_size=100)
    drain(scorer)
    publish_model(bus, TOPICS, versioned(artifact_body, 2, TEST_KEY))
    send_votes(bus, TOPICS, committee, 600, 1200)
    drain(scorer)
    out = signals(bus)
    assert len(out) == 1200
    assert [s["model_version"] for s in out[-10:]] == [2] * 10
    assert scorer.stats.model_versions == [1, 2]
    # An older version arriving late never replaces a newer one.
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    drain(scorer)
    assert scorer.models.current is not None and scorer.models.current.version == 2


def test_tampered_and_unsigned_models_refused_while_current_keeps_serving(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus)
    drain(scorer)
    tampered = json.loads(versioned(artifact_body, 5, TEST_KEY))
    tampered["threshold"]["value"] = 0.0  # would make every vote a trade
    publish_model(bus, TOPICS, json.dumps(tampered).encode())
    publish_model(bus, TOPICS, versioned(artifact_body, 6, None))
    publish_model(bus, TOPICS, versioned(artifact_body, 7, b"some-other-key"))
    send_votes(bus, TOPICS, committee, 0, 300)
    drain(scorer)
    out = signals(bus)
    assert len(out) == 300
    assert {s["model_version"] for s in out} == {1}
    refused = {
        s.labels["reason"]: s.value
        for metric in scorer.metrics.refused.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert refused == {"bad_signature": 2.0, "unsigned": 1.0}


def test_poison_messages_go_to_dlq_with_reasons_and_good_ones_are_scored(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    good = send_votes(bus, TOPICS, committee, 0, 20)
    members = list(committee.members)
    full = {m: 0.5 for m in members}
    poison = [
        (b"p1", b"{not json"),
        (b"p2", b"[1, 2]"),
        (b"p3", json.dumps({"ts": 1, "votes": full}).encode()),
        (b"p4", json.dumps({"id": "p4", "votes": full}).encode()),
        (b"p5", json.dumps({"id": "p5", "ts": "yesterday", "votes": full}).encode()),
        (b"p6", json.dumps({"id": "p6", "ts": 1}).encode()),
        (b"p7", json.dumps({"id": "p7", "ts": 1, "votes": {**full, members[0]: 1.5}}).encode()),
        (b"p8", b'{"id": "p8", "ts": 1, "votes": {"m1": NaN}}'),
        (b"p9", json.dumps({"id": "p9", "ts": 1, "votes": full, "pad": "x" * 70_000}).encode()),
    ]
    send_raw(bus, TOPICS.votes, poison)
    scorer = scorer_for(bus)
    drain(scorer)
    assert {s["id"] for s in signals(bus)} == set(good)
    dead = bus.records(TOPICS.dlq)
    reasons = {r.key: dict(r.headers)["reason"].decode() for r in dead}
    assert reasons == {
        b"p1": "invalid_json",
        b"p2": "not_object",
        b"p3": "missing_id",
        b"p4": "missing_ts",
        b"p5": "bad_ts",
        b"p6": "missing_votes",
        b"p7": "out_of_range",
        b"p8": "non_finite",
        b"p9": "oversize",
    }
    assert set(reasons.values()) <= set(REASONS)
    original = dict(poison)
    for record in dead:
        headers = dict(record.headers)
        assert record.key is not None
        assert record.value == original[record.key]  # the payload is kept byte for byte
        assert headers["source_topic"] == TOPICS.votes.encode()
        assert int(headers["source_offset"]) >= 0
    assert scorer.stats.dlq == 9


def test_missing_and_unknown_members_follow_policy(
    committee: Committee, artifact_body: dict
) -> None:
    members = list(committee.members)
    partial = {m: 0.4 for m in members[1:]}
    extra = {**{m: 0.4 for m in members}, "intruder": 0.9}
    items = [
        (b"missing", json.dumps({"id": "missing", "ts": 1, "votes": partial}).encode()),
        (b"unknown", json.dumps({"id": "unknown", "ts": 1, "votes": extra}).encode()),
    ]
    lenient = make_bus()
    publish_model(lenient, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_raw(lenient, TOPICS.votes, items)
    drain(scorer_for(lenient))
    assert {s["id"] for s in signals(lenient)} == {"missing", "unknown"}
    strict = make_bus()
    publish_model(strict, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_raw(strict, TOPICS.votes, items)
    drain(scorer_for(strict, strict_members=True))
    assert signals(strict) == []
    reasons = sorted(dict(r.headers)["reason"].decode() for r in strict.records(TOPICS.dlq))
    assert reasons == ["missing_member", "unknown_member"]


def test_two_scorers_split_partitions_and_cover_every_vote(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus(partitions=4)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(bus, TOPICS, committee, 0, 2000)
    first, second = scorer_for(bus, batch_size=50), scorer_for(bus, batch_size=50)
    first.step(), second.step()
    for _ in range(200):
        first.step(), second.step()
    a, b = first.assignment(), second.assignment()
    assert len(a) == 4 and len(b) == 4 and not a & b
    # Co-partitioned: each scorer owns the same partition numbers of votes and outcomes.
    assert {tp.partition for tp in a if tp.topic == TOPICS.votes} == {
        tp.partition for tp in a if tp.topic == TOPICS.outcomes
    }
    assert first.stats.signals > 0 and second.stats.signals > 0
    assert sorted(s["id"] for s in signals(bus)) == sorted(ids)


def test_run_stops_cleanly_after_the_batch(committee: Committee, artifact_body: dict) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_votes(bus, TOPICS, committee, 0, 500)
    with ServiceThread(scorer_for(bus), join_timeout_s=10) as scorer:
        assert wait_for(lambda: len(signals(bus)) == 500, timeout=20)
    assert not scorer.ready


def test_a_failed_batch_is_replayed_and_a_dead_producer_stops_the_loop(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metasignal.stream.transport.base import TransportError

    bus = make_bus(partitions=1)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(bus, TOPICS, committee, 0, 300)
    scorer = scorer_for(bus, batch_size=100, max_failed_batches=3)
    failures = iter([True, True, False])  # two failed flushes, then the broker is back

    def flaky_flush(timeout_s: float = 30.0) -> None:
        if next(failures, False):
            raise TransportError("broker unreachable")

    monkeypatch.setattr(scorer._producer, "flush", flaky_flush)
    drain(scorer)
    # The memory bus delivered the failed batches' signals anyway: at-least-once repeats them.
    assert {s["id"] for s in signals(bus)} == set(ids)
    assert scorer.stats.votes == 300

    def dead_flush(timeout_s: float = 30.0) -> None:
        raise TransportError("producer is in a fatal state")

    monkeypatch.setattr(scorer._producer, "flush", dead_flush)
    send_votes(bus, TOPICS, committee, 300, 400)
    with pytest.raises(TransportError, match="3 batches in a row"):
        drain(scorer)


def test_new_models_are_looked_for_at_the_check_interval_not_every_batch(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("metasignal.stream.scorer.time.monotonic", lambda: now[0])
    bus = make_bus(partitions=1)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_votes(bus, TOPICS, committee, 0, 300)
    scorer = scorer_for(bus, batch_size=100, model_check_interval_s=0.5)
    scorer.step()  # no model yet: looks at once
    publish_model(bus, TOPICS, versioned(artifact_body, 2, TEST_KEY))
    now[0] += 0.4
    scorer.step()
    assert scorer.models.current is not None and scorer.models.current.version == 1
    now[0] += 0.2  # 0.6 s after the last look
    scorer.step()
    assert scorer.models.current.version == 2
    assert [s["model_version"] for s in signals(bus)] == [1] * 200 + [2] * 100
