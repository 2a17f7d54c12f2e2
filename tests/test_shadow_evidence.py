"""One shadow test on every scorer's summed evidence (memory bus): two replicas, a restart,
a crash, and hostile evidence records."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import Artifact
from metasignal.stream.drift.promotion import ShadowComparison
from metasignal.stream.evidence import EvidenceLog, sign_evidence
from metasignal.stream.messages import ShadowEvidence, encode_shadow_evidence
from metasignal.stream.topics import Topics, evidence_key, topic_specs
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import send_votes
from tests.test_shadow import (
    FAST_TEST,
    TOPICS,
    artifact,
    decisions_on,
    drain,
    model,
    publish,
    scorer_for,
    send_outcomes,
    stream,
    trainer_for,
)


def make_bus(partitions: int = 4) -> MemoryBus:
    bus = MemoryBus()
    bus.create_topics(topic_specs(TOPICS, partitions=partitions))
    return bus


def summed_on(bus: MemoryBus, champion: int, shadow: int) -> np.ndarray:
    """What the evidence topic holds for the pair, summed as the trainer sums it."""
    log = EvidenceLog(
        bus.consumer(assign_all=[TOPICS.evidence]), keys=None, on_refused=lambda *_: None
    )
    log.catch_up()
    return log.summed("meta", champion, shadow).counts


def sources_on(bus: MemoryBus) -> set[tuple[str, int]]:
    """(source, partition) of every evidence record published."""
    return {
        (json.loads(r.value)["source"], json.loads(r.value)["partition"])
        for r in bus.records(TOPICS.evidence)
        if r.value
    }


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_two_replicas_feed_one_test_and_the_trainer_promotes_on_the_sum(
    committee: Committee, artifact_body: Artifact, exactly_once: bool
) -> None:
    bus = make_bus()
    publish(
        bus,
        model(artifact(artifact_body, 1, threshold=0.9)),
        model(artifact(artifact_body, 2, stage="shadow")),
    )
    first = scorer_for(bus, exactly_once=exactly_once, transactional_id="a")
    second = scorer_for(bus, exactly_once=exactly_once, transactional_id="b")
    trainer = trainer_for(bus)
    replicas = [first, second]
    drain(*replicas, trainer)
    owned = [sorted(tp.partition for tp in s.assignment() if tp.topic == TOPICS.outcomes)
             for s in replicas]  # fmt: skip
    assert sorted(owned[0] + owned[1]) == [0, 1, 2, 3] and all(owned), owned
    stream(bus, committee, [*replicas, trainer], 0, 12_000, until=lambda: decisions_on(bus))
    (promote,) = [r for r in decisions_on(bus) if r["decision"] == "promote"]
    assert (promote["champion"], promote["shadow"]) == (1, 2)
    evidence: dict[str, Any] = promote["evidence"]
    # One test, on the sum of both replicas' partitions: the trainer's, no scorer asked.
    assert evidence["verdict"] == "better" and evidence["partitions"] == [0, 1, 2, 3]
    assert promote["request_id"] == "evidence:1:2:promote"
    assert not bus.records(TOPICS.control)
    assert {partition for _, partition in sources_on(bus)} == {0, 1, 2, 3}
    counted = [s.feedback.shadow for s in replicas]
    assert all(slot.pair[0] == 2 for slot in counted)  # both apply the signed decision
    # The decision's sample is both replicas' counts: more than either had alone.
    n_outcomes = evidence["n_outcomes"]
    latest = latest_by_partition(bus, [0, 1, 2, 3])
    assert isinstance(n_outcomes, int) and n_outcomes == sum(sum(r["counts"]) for r in latest)
    assert not summed_on(bus, 1, 2).any()  # tombstoned with the decision
    shares = [sum(sum(r["counts"]) for r in latest_by_partition(bus, p)) for p in owned]
    assert all(0 < share < n_outcomes for share in shares), shares
    assert (
        trainer.metrics.registry.get_sample_value(
            "metasignal_trainer_shadow_decisions_total", {"kind": "promote"}
        )
        == 1.0
    )


def latest_by_partition(bus: MemoryBus, partitions: list[int]) -> list[ShadowEvidence]:
    latest: dict[int, ShadowEvidence] = {}
    for record in bus.records(TOPICS.evidence):
        if record.value is None:  # a tombstone: the pair was decided
            continue
        document = json.loads(record.value)
        if (document["champion"], document["shadow"]) == (1, 2):
            latest[document["partition"]] = document
    return [latest[p] for p in partitions if p in latest]


def evidence_record(
    partition: int, counts: list[int], source: str, key: bytes | None = TEST_KEY
) -> tuple[bytes, bytes]:
    record = ShadowEvidence(
        schema_version=1,
        model="meta",
        champion=1,
        shadow=2,
        partition=partition,
        counts=counts,
        pnl=None,
        source=source,
        at=0,
    )
    signed = record if key is None else sign_evidence(record, key)
    return evidence_key("meta", 1, 2, partition), encode_shadow_evidence(signed)


def send_evidence(bus: MemoryBus, *records: tuple[bytes | None, bytes | None]) -> None:
    producer = bus.producer()
    for key, value in records:
        producer.send(TOPICS.evidence, key=key, value=value)


# 250 outcomes, 25 positives: the shadow catches 20, the champion 5 (cells 4 y + 2 b + c).
SHADOW_BETTER = [225, 0, 0, 0, 5, 15, 0, 5]
SHADOW_WORSE = [225, 0, 0, 0, 5, 0, 15, 5]


def test_the_trainer_decides_on_the_sum_not_on_a_replicas_half_or_claim(
    artifact_body: Artifact,
) -> None:
    bus = make_bus()
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    trainer = trainer_for(bus)
    # Replica a's partitions favour the shadow, replica b's the champion: no difference overall.
    send_evidence(
        bus,
        evidence_record(0, SHADOW_BETTER, "a"),
        evidence_record(1, SHADOW_BETTER, "a"),
        evidence_record(2, SHADOW_WORSE, "b"),
        evidence_record(3, SHADOW_WORSE, "b"),
    )
    # A test per replica (the old design) would have promoted on a's half alone...
    half = ShadowComparison(
        min_outcomes=FAST_TEST["shadow_min_outcomes"],
        max_outcomes=FAST_TEST["shadow_max_outcomes"],
        look_every=FAST_TEST["shadow_look_every"],
    )
    assert half.look_at(np.array(SHADOW_BETTER) * 2) == "better"
    # ... and replica a asks for it, claiming a "better" verdict in its stats.
    claim = {
        "id": "claim-a",
        "kind": "promote",
        "model": "meta",
        "model_version": 1,
        "shadow_version": 2,
        "source": "a",
        "reason": "better on my partitions",
        "stats": {"verdict": "better", "lower_bound": 0.4},
    }
    bus.producer().send(TOPICS.control, key=b"meta", value=json.dumps(claim).encode())
    drain(trainer)
    assert decisions_on(bus) == []
    (answer,) = trainer.verdicts
    assert answer.outcome == "refused" and "not what the summed evidence supports" in answer.detail
    assert trainer.judge.n_outcomes == 1000
    gauge = trainer.metrics.registry.get_sample_value("metasignal_trainer_shadow_outcomes")
    assert gauge == 1000.0
    # A trainer that restarts reads the evidence back: the test goes on from the same sum.
    trainer.close()
    trainer = trainer_for(bus)
    drain(trainer)
    assert trainer.judge.n_outcomes == 1000 and decisions_on(bus) == []
    # More of the same on every partition: the sum reaches the horizon, the shadow is retired.
    send_evidence(
        bus,
        *(evidence_record(p, [3 * c for c in SHADOW_BETTER], "a") for p in (0, 1)),
        *(evidence_record(p, [3 * c for c in SHADOW_WORSE], "b") for p in (2, 3)),
    )
    drain(trainer)
    (retire,) = decisions_on(bus)
    assert (retire["decision"], retire["champion"], retire["shadow"]) == ("retire", 1, 2)
    assert retire["evidence"]["n_outcomes"] == 3000
    assert retire["evidence"]["verdict"] == "not_better"


def test_a_restarted_scorer_continues_from_its_partitions_counts(
    committee: Committee, artifact_body: Artifact
) -> None:
    def run(restart_at: int | None) -> tuple[int, int | None]:
        bus = make_bus()
        # Same model twice: no evidence either way; without the futility stop (which would
        # retire it at the first look) it is retired at the horizon (3,000 outcomes).
        publish(
            bus,
            model(artifact(artifact_body, 1)),
            model(artifact(artifact_body, 2, stage="shadow")),
        )
        scorer, trainer = scorer_for(bus), trainer_for(bus, shadow_min_improvement=0.0)
        before = None
        if restart_at is not None:
            stream(bus, committee, [scorer, trainer], 0, restart_at)
            before = scorer.feedback.shadow.n_outcomes
            assert before == restart_at  # every outcome joined and counted
            scorer.close()
            scorer = scorer_for(bus)
            drain(scorer)  # assigned every partition: continues from their counts
            assert scorer.feedback.shadow.n_outcomes == before
            assert int(summed_on(bus, 1, 2).sum()) == before
        stream(bus, committee, [scorer, trainer], restart_at or 0, 5000)
        (retire,) = decisions_on(bus)
        assert retire["decision"] == "retire"
        n_outcomes = retire["evidence"]["n_outcomes"]
        assert isinstance(n_outcomes, int)
        return n_outcomes, before

    reference, _ = run(None)
    restarted, before = run(1500)
    assert before == 1500
    # The same total number of outcomes within one commit span (here at most 500 outcomes).
    assert 3000 <= restarted < 3500 and abs(restarted - reference) <= 500


def test_a_rebalance_mid_comparison_loses_and_repeats_no_count(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    # Same model twice, no futility stop: retired at the horizon (3,000 summed outcomes),
    # none double-counted.
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    first, trainer = scorer_for(bus), trainer_for(bus, shadow_min_improvement=0.0)
    stream(bus, committee, [first, trainer], 0, 1500)
    assert first.feedback.shadow.n_outcomes == 1500
    second = scorer_for(bus)  # joins the group: two of the four partitions move to it
    drain(first, second, trainer)
    slots = [first.feedback.shadow, second.feedback.shadow]
    assert all(slot.owned for slot in slots) and not slots[0].owned & slots[1].owned
    # The moved partitions' counts went with them: nothing lost, nothing counted twice.
    assert sum(slot.n_outcomes for slot in slots) == 1500
    assert second.feedback.shadow.n_outcomes > 0
    stream(bus, committee, [first, second, trainer], 1500, 2500)
    assert int(summed_on(bus, 1, 2).sum()) == 2500
    stream(bus, committee, [first, second, trainer], 2500, 5000)
    (retire,) = decisions_on(bus)
    assert retire["decision"] == "retire"
    n_outcomes = retire["evidence"]["n_outcomes"]
    assert isinstance(n_outcomes, int) and 3000 <= n_outcomes < 3500


# The shadow's counts go out at every commit that counted outcomes (no holding back).
EVERY_COMMIT: dict[str, Any] = {"evidence_min_outcomes": 0, "evidence_interval_s": 0.0}


class Crash(Exception):
    """The process dies here."""


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_a_crash_counts_at_most_one_commit_span_twice(
    committee: Committee, artifact_body: Artifact, exactly_once: bool
) -> None:
    bus = make_bus(partitions=2)
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    # Long spans: the crashed span is exactly the 1,000 records sent after the patch; counts
    # published at every commit (the bound of held-back counts is tested below).
    options: dict[str, Any] = {
        "exactly_once": exactly_once,
        "commit_interval_s": 60.0,
        "transactional_id": "crashing",
        **EVERY_COMMIT,
    }
    scorer = scorer_for(bus, **options)
    stream(bus, committee, [scorer], 0, 1000)
    assert scorer._settlement is not None
    scorer._settlement.commit()
    assert scorer.feedback.shadow.n_outcomes == 1000

    def crash(*_: object, **__: object) -> None:
        raise Crash

    # The process dies at the commit: after the evidence is flushed (at-least-once), or
    # before its transaction commits (exactly-once).
    checkpoint = scorer._checkpoint
    assert checkpoint is not None
    if exactly_once:
        checkpoint.producer.commit_transaction = crash  # type: ignore[method-assign]
    else:
        checkpoint.consumer.commit = crash  # type: ignore[method-assign]
    send_votes(bus, TOPICS, committee, 1000, 1500)
    send_outcomes(bus, committee, 1000, 1500)
    with pytest.raises(Crash):
        for _ in range(100):
            scorer.step()
    span = scorer.feedback.shadow.n_outcomes - 1000
    assert span == 500  # the span's joined outcomes
    assert scorer._votes is not None
    scorer._votes.close()  # gone from the group without committing
    successor = scorer_for(bus, **options)
    drain(successor)
    assert successor._settlement is not None
    successor._settlement.commit()
    double_counted = successor.feedback.shadow.n_outcomes - 1500
    if exactly_once:
        assert double_counted == 0  # the aborted span's counts were never visible
    else:
        assert 0 < double_counted <= span  # the bound stated in stream/shadow.py
    assert int(summed_on(bus, 1, 2).sum()) == successor.feedback.shadow.n_outcomes


HOSTILE: list[tuple[bytes | None, bytes | None]] = [
    (b"meta@1:2:0", b"not json"),
    (b"meta@1:2:0", b"[1, 2]"),
    (b"meta@1:2:0", b'{"model": "meta", "champion": 1, "shadow": 2, "partition": 0}'),
    evidence_record(0, [-1, 0, 0, 0, 0, 0, 0, 0], "x"),
    evidence_record(0, [1] * 9, "x"),
    evidence_record(0, [10**13] + [0] * 7, "x"),
    (b"meta@1:2:9", evidence_record(0, [5] * 8, "x")[1]),  # another partition's key
    (
        b"meta@1:2:0",
        b'{"model": "meta", "champion": 1, "shadow": 2, "partition": 0, '
        b'"counts": [1, 0, 0, 0, 0, 0, 0, 0], "pnl": [1e999, 0]}',
    ),
    (b"meta@1:2:0", b"x" * 70_000),
    evidence_record(0, [5000, 0, 0, 0, 0, 0, 0, 5000], "forger", key=None),  # unsigned
    evidence_record(0, [5000, 0, 0, 0, 0, 0, 0, 5000], "forger", key=b"f" * 32),  # forged
    (None, b"\xff\xfe"),
    (b"meta@1:2:3", None),  # a tombstone: deletes nothing that is there, refuses nothing
]


def test_hostile_evidence_records_are_refused_with_a_reason_and_nothing_stops(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    send_evidence(bus, *HOSTILE, evidence_record(1, [100, 0, 0, 0, 0, 0, 0, 0], "ok"))
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 200)
    drain(scorer, trainer)
    refused_total = "metasignal_trainer_refused_records_total"
    value = trainer.metrics.registry.get_sample_value
    by_reason = {
        reason: value(refused_total, {"topic": TOPICS.evidence, "reason": reason}) or 0.0
        for reason in (
            "invalid_json",
            "not_object",
            "bad_evidence",
            "non_finite",
            "oversize",
            "evidence_unsigned",
            "evidence_bad_signature",
        )
    }
    assert by_reason == {
        "invalid_json": 2.0,  # garbage, and bytes that are not UTF-8
        "not_object": 1.0,
        "bad_evidence": 5.0,  # no counts, negative, nine, too large, a key naming another
        "non_finite": 1.0,
        "oversize": 1.0,
        "evidence_unsigned": 1.0,  # well-formed counts, but nobody with the key wrote them
        "evidence_bad_signature": 1.0,
    }
    scorer_refused = scorer.metrics.registry.get_sample_value(
        "metasignal_shadow_evidence_refused_total", {"reason": "bad_evidence"}
    )
    assert scorer_refused == 5.0
    # Both carried on: signals for every vote, and the valid record counts.
    assert len(bus.records(TOPICS.signals)) == 200
    assert trainer.judge.n_outcomes == 100
    assert scorer.feedback.shadow.n_outcomes == 100  # it owns partition 1: continues from it
    assert decisions_on(bus) == []


def test_the_shadow_settings_are_the_trainers_flags() -> None:
    from metasignal.stream.errors import MetasignalError
    from metasignal.stream.options import SCORER_SETTINGS
    from metasignal.trainer.settings import TRAINER_SETTINGS, TrainerOptions

    shadow = {"shadow_alpha", "shadow_margin", "shadow_min_outcomes", "shadow_max_outcomes",
              "shadow_look_every", "rollback_outcomes"}  # fmt: skip
    trainer = {s.name: s.env for s in TRAINER_SETTINGS}
    assert shadow <= set(trainer) and trainer["shadow_alpha"] == "METASIGNAL_SHADOW_ALPHA"
    assert not shadow & {s.name for s in SCORER_SETTINGS}
    with pytest.raises(MetasignalError, match="--shadow-alpha must be in"):
        TrainerOptions(topics=Topics(), shadow_alpha=0.7)
    with pytest.raises(MetasignalError, match="--shadow-min-outcomes"):
        TrainerOptions(topics=Topics(), shadow_min_outcomes=10, shadow_max_outcomes=5)


def test_a_partition_whose_counts_cannot_be_read_back_publishes_nothing_until_they_are(
    artifact_body: Artifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metasignal.stream.artifact import load_artifact
    from metasignal.stream.join import ScoredVote
    from metasignal.stream.messages import decode_shadow_evidence
    from metasignal.stream.metrics import ScorerMetrics
    from metasignal.stream.options import ScorerOptions
    from metasignal.stream.scoring import CompiledModel
    from metasignal.stream.shadow import ShadowSlot
    from metasignal.stream.transport.base import TransportError

    bus = make_bus()
    send_evidence(bus, evidence_record(0, [100, 0, 0, 0, 0, 0, 0, 0], "before-a-restart"))
    slot = ShadowSlot(options=ScorerOptions(topics=TOPICS, **EVERY_COMMIT), metrics=ScorerMetrics())
    log = EvidenceLog(
        bus.consumer(assign_all=[TOPICS.evidence]), keys=None, on_refused=lambda *_: None
    )
    slot.log = log
    caught_up = log.catch_up

    def outage(**_: object) -> bool:
        raise TransportError("broker unreachable", kind="unreachable")

    monkeypatch.setattr(log, "catch_up", outage)
    versions = [
        CompiledModel.from_artifact(load_artifact(artifact(artifact_body, v), keys=[TEST_KEY]))
        for v in (1, 2)
    ]
    slot.sync(versions[0], versions[1], "challenger")
    slot.assigned([0])
    seen = ScoredVote("e", 0, ("a",), np.zeros(1), 0.1, 0, 1, 2, 0, 0.0)
    slot.observe(seen, 0, partition=0)
    # Counted, but not published: zeros plus one must not overwrite the published 100.
    assert slot.evidence() == [] and slot.n_outcomes == 1
    slot.committed()
    monkeypatch.setattr(log, "catch_up", caught_up)
    ((key, value),) = slot.evidence()  # read back at the next commit: 100 + 1
    assert key == b"meta@1:2:0" and decode_shadow_evidence(value)["counts"][0] == 101
    assert slot.n_outcomes == 101


def evidence_counts(bus: MemoryBus) -> dict[int, list[int]]:
    """The summed counts of each evidence record published, by partition, in order."""
    out: dict[int, list[int]] = {}
    for r in bus.records(TOPICS.evidence):
        if r.value:
            record = json.loads(r.value)
            out.setdefault(record["partition"], []).append(sum(record["counts"]))
    return out


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_counts_are_held_back_to_a_bound_and_all_go_out_at_close(
    committee: Committee, artifact_body: Artifact, exactly_once: bool
) -> None:
    bus = make_bus(partitions=2)
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    # A commit after every batch; counts go out every 300 new outcomes (the clock never
    # makes them due here).
    options: dict[str, Any] = {
        "exactly_once": exactly_once,
        "commit_interval_s": 0.0,
        "transactional_id": "held",
        "evidence_min_outcomes": 300,
        "evidence_interval_s": 3600.0,
    }
    scorer = scorer_for(bus, **options)
    for lo in range(0, 2000, 100):
        stream(bus, committee, [scorer], lo, lo + 100)
    slot = scorer.feedback.shadow
    assert slot.n_outcomes == 2000
    published = evidence_counts(bus)
    for steps in published.values():
        # The first count goes out at once, then each record carries >= 300 new outcomes.
        assert all(b - a >= 300 for a, b in itertools.pairwise(steps)), steps
    # About 2,000 / 300 records instead of one per partition per commit (40 commits).
    assert sum(map(len, published.values())) <= 2 + 2000 // 300
    truth = {p: int(c.sum()) for p, c in slot._counts.items()}
    # Killed: offsets are committed, the counts since each partition's last record are lost
    # (fewer than 300 per partition); none is counted twice.
    assert scorer._votes is not None
    scorer._votes.close()
    successor = scorer_for(bus, **options)
    drain(successor)
    after = {p: int(c.sum()) for p, c in successor.feedback.shadow._counts.items()}
    assert after == {p: steps[-1] for p, steps in published.items()}
    assert all(0 <= truth[p] - after[p] < 300 for p in truth), (truth, after)
    # Closed: every held-back count goes out, the next replica continues from all of them.
    stream(bus, committee, [successor], 2000, 2100)
    held = successor.feedback.shadow.n_outcomes
    assert held > int(summed_on(bus, 1, 2).sum())  # some held back before the close
    successor.close()
    assert int(summed_on(bus, 1, 2).sum()) == held
    third = scorer_for(bus, **options)
    drain(third)
    assert third.feedback.shadow.n_outcomes == held
    third.close()


def test_a_decided_pairs_counts_are_tombstoned_with_the_decision_and_forgotten(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus(partitions=2)
    publish(
        bus,
        model(artifact(artifact_body, 1, threshold=0.9)),
        model(artifact(artifact_body, 2, stage="shadow")),
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    promoted = lambda: bool(decisions_on(bus))  # noqa: E731
    stream(bus, committee, [scorer, trainer], 0, 12_000, until=promoted)
    (promote, *_) = decisions_on(bus)
    assert (promote["decision"], promote["champion"], promote["shadow"]) == ("promote", 1, 2)
    # Every key of the decided pair is tombstoned, after its counts: the topic compacts them
    # away, and neither the trainer's log nor a fresh one holds the pair.
    tombstones = [r.key for r in bus.records(TOPICS.evidence) if r.value is None]
    assert set(tombstones) == {b"meta@1:2:0", b"meta@1:2:1"} and len(tombstones) == 2
    assert ("meta", 1, 2) not in trainer.evidence.pairs
    fresh = EvidenceLog(
        bus.consumer(assign_all=[TOPICS.evidence]), keys=None, on_refused=lambda *_: None
    )
    fresh.catch_up()
    assert ("meta", 1, 2) not in fresh.pairs
    # The scorer reads the tombstones, forgets the pair and refuses nothing.
    drain(scorer, trainer)
    assert scorer._evidence.log is not None and ("meta", 1, 2) not in scorer._evidence.log.pairs
    refused = scorer.metrics.registry.get_sample_value
    assert not refused("metasignal_shadow_evidence_refused_total", {"reason": "bad_evidence"})
    # The predecessor's watch (the next pair) is decided too: its keys go the same way.
    retired = lambda: len(decisions_on(bus)) > 1  # noqa: E731
    stream(bus, committee, [scorer, trainer], scorer.stats.votes, 20_000, until=retired)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in decisions_on(bus)][1] == (
        "retire",
        2,
        1,
    )
    tombstones = [r.key for r in bus.records(TOPICS.evidence) if r.value is None]
    assert set(tombstones) == {b"meta@1:2:0", b"meta@1:2:1", b"meta@2:1:0", b"meta@2:1:1"}
    drain(scorer, trainer)
    assert trainer.evidence.pairs == [] and scorer._evidence.log.pairs == []
    # A late record of a decided pair (a replica that had not read the decision yet) is
    # tombstoned again at the trainer's next look.
    send_evidence(bus, evidence_record(0, [5] * 8, "late"))
    drain(trainer)
    last = bus.records(TOPICS.evidence)[-1]
    assert (last.key, last.value) == (b"meta@1:2:0", None)
    assert trainer.evidence.pairs == []


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_an_idle_scorer_publishes_its_held_back_counts_when_they_are_due(
    committee: Committee, artifact_body: Artifact, exactly_once: bool
) -> None:
    bus = make_bus(partitions=2)
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    scorer = scorer_for(bus, exactly_once=exactly_once, transactional_id="idle")
    slot = scorer.feedback.shadow
    now = [1000.0]
    slot.clock = lambda: now[0]
    drain(scorer)  # assigned: each partition's bound starts now
    stream(bus, committee, [scorer], 0, 500)
    assert slot.n_outcomes == 500 and not summed_on(bus, 1, 2).any()  # held back: 0 s, < 1,000
    drain(scorer)
    assert not summed_on(bus, 1, 2).any()  # idle, not due yet: nothing committed for it
    now[0] += 1.0  # a second later, no new record: the idle loop commits the counts alone
    drain(scorer)
    assert int(summed_on(bus, 1, 2).sum()) == 500 and not slot.held()
    assert scorer._checkpoint is not None and not scorer._checkpoint.pending
    scorer.close()
