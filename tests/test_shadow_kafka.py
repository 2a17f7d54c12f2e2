"""The shadow path on the real broker: a shadow promoted, a promoted champion rolled back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from metasignal.stream.artifact import Artifact
from metasignal.stream.decisions import load_decision
from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.messages import ShadowDecision
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.cli import main
from metasignal.trainer.service import TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import send_raw, send_votes, wait_for
from tests.test_loop_kafka import TrainerThread
from tests.test_scorer_kafka import ScorerThread
from tests.test_shadow import FAST, FAST_TEST, artifact, decision, model, publish

pytestmark = pytest.mark.kafka

OPTIONS = {k: v for k, v in FAST.items() if k != "poll_timeout_ms"}


def decisions_on(transport: KafkaTransport, topics: Topics) -> list[ShadowDecision]:
    consumer = transport.consumer(assign_all=[topics.models], read_committed=True)
    records = []
    for _ in range(10):
        records.extend(consumer.poll(timeout_ms=200, max_records=100))
    consumer.close()
    return [
        load_decision(r.value, keys=[TEST_KEY])
        for r in records
        if r.value and b'"decision"' in r.value
    ]


def stream_until(
    transport: KafkaTransport,
    topics: Topics,
    committee: Committee,
    scorers: Scorer | list[Scorer],
    done: Any,
    *,
    stop: int,
) -> None:
    """Votes, then their outcomes, 500 at a time, until ``done()`` or ``stop`` events."""
    replicas = scorers if isinstance(scorers, list) else [scorers]

    def handled(field: str, n: int) -> bool:
        return sum(getattr(scorer.stats, field) for scorer in replicas) >= n

    for lo in range(0, stop, 500):
        hi = min(lo + 500, stop)
        send_votes(transport, topics, committee, lo, hi)
        assert wait_for(lambda: handled("votes", hi))  # noqa: B023 (called here)
        send_raw(
            transport,
            topics.outcomes,
            (
                (
                    str(committee.ids[i]).encode(),
                    json.dumps(
                        {
                            "id": str(committee.ids[i]),
                            "ts": int(committee.time_ms[i]),
                            "label": int(committee.labels[i]),
                        }
                    ).encode(),
                )
                for i in range(lo, hi)
            ),
        )
        assert wait_for(lambda: handled("outcomes", hi))  # noqa: B023 (called here)
        if done():
            return


def shadow_decisions(trainer: TrainerService, kind: str) -> float | None:
    return trainer.metrics.registry.get_sample_value(
        "metasignal_trainer_shadow_decisions_total", {"kind": kind}
    )


def test_a_better_shadow_is_promoted_on_the_broker(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: Artifact
) -> None:
    transport, topics = kafka
    publish(
        transport,
        model(artifact(artifact_body, 1, threshold=0.9)),
        model(artifact(artifact_body, 2, stage="shadow")),
        topics=topics,
    )
    with (
        ScorerThread(transport, topics, group_id=f"{topics.prefix}scorer", **OPTIONS) as scorer,
        TrainerThread(transport, topics, **FAST_TEST) as trainer,
    ):
        promoted = lambda: scorer.models.lineup.versions[0] == 2  # noqa: E731
        stream_until(transport, topics, committee, scorer, promoted, stop=10_000)
        assert wait_for(promoted, timeout=30), trainer.verdicts
    (promote, *_) = decisions_on(transport, topics)
    assert (promote["decision"], promote["champion"], promote["shadow"]) == ("promote", 1, 2)
    assert promote["evidence"]["verdict"] == "better"
    assert scorer.models.shadow is not None and scorer.models.shadow_role == "predecessor"
    assert shadow_decisions(trainer, "promote") == 1.0
    # The decided pair's keys were tombstoned in the decision's transaction: a reader of the
    # committed evidence holds nothing of it, and the trainer forgot it.
    log = EvidenceLog(
        transport.consumer(assign_all=[topics.evidence], read_committed=True),
        keys=[TEST_KEY],
        on_refused=lambda record, error: pytest.fail(f"refused {error}"),
    )
    assert log.catch_up()
    log.close()
    assert ("meta", 1, 2) not in log.pairs and ("meta", 1, 2) not in trainer.evidence.pairs
    assert tombstones(transport, topics) >= {b"meta@1:2:0", b"meta@1:2:1", b"meta@1:2:2"}


def test_a_worse_promoted_champion_is_rolled_back_on_the_broker(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: Artifact
) -> None:
    transport, topics = kafka
    publish(
        transport,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow", threshold=0.9)),
        decision("promote", 1, 2),  # a promotion that turned out badly
        topics=topics,
    )
    with (
        ScorerThread(transport, topics, group_id=f"{topics.prefix}scorer", **OPTIONS) as scorer,
        TrainerThread(transport, topics, **FAST_TEST) as trainer,
    ):
        assert wait_for(lambda: scorer.models.lineup.versions == (2, 1, "predecessor"))
        rolled_back = lambda: scorer.models.lineup.versions == (1, None, None)  # noqa: E731
        stream_until(transport, topics, committee, scorer, rolled_back, stop=10_000)
        assert wait_for(rolled_back, timeout=30), trainer.verdicts
    records = decisions_on(transport, topics)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records] == [
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]
    assert records[1]["evidence"]["verdict"] == "better"
    assert shadow_decisions(trainer, "rollback") == 1.0


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_two_scorer_replicas_feed_one_test_and_the_shadow_is_promoted_on_the_broker(
    kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: Artifact,
    exactly_once: bool,
) -> None:
    transport, topics = kafka
    publish(
        transport,
        model(artifact(artifact_body, 1, threshold=0.9)),
        model(artifact(artifact_body, 2, stage="shadow")),
        topics=topics,
    )
    group = f"{topics.prefix}scorer"
    with (
        ScorerThread(
            transport, topics, group_id=group, exactly_once=exactly_once,
            transactional_id=f"{group}-a", **OPTIONS,
        ) as first,
        ScorerThread(
            transport, topics, group_id=group, exactly_once=exactly_once,
            transactional_id=f"{group}-b", **OPTIONS,
        ) as second,
        TrainerThread(transport, topics, **FAST_TEST) as trainer,
    ):  # fmt: skip
        replicas = [first, second]
        assert wait_for(lambda: all(scorer.assignment() for scorer in replicas), timeout=60)
        promoted = lambda: all(s.models.lineup.versions[0] == 2 for s in replicas)  # noqa: E731
        stream_until(transport, topics, committee, replicas, promoted, stop=10_000)
        assert wait_for(promoted, timeout=30), trainer.verdicts
    (promote, *_) = decisions_on(transport, topics)
    assert (promote["decision"], promote["champion"], promote["shadow"]) == ("promote", 1, 2)
    evidence: dict[str, Any] = promote["evidence"]
    # One test on the sum of both replicas' partitions, decided by the trainer.
    assert evidence["verdict"] == "better" and evidence["partitions"] == [0, 1, 2, 3]
    assert promote["request_id"] == "evidence:1:2:promote"
    counted = [
        s.metrics.registry.get_sample_value("metasignal_shadow_outcomes_total") for s in replicas
    ]
    assert all(counted), counted  # both replicas counted outcomes
    assert shadow_decisions(trainer, "promote") == 1.0


def test_publish_shadow_stages_a_hand_made_artifact(
    kafka: tuple[KafkaTransport, Topics],
    kafka_bootstrap: str,
    artifact_body: Artifact,
    signing_key: bytes,
    tmp_path: Path,
) -> None:
    transport, topics = kafka
    publish(transport, model(artifact(artifact_body, 1)), topics=topics)
    path = tmp_path / "model.json"
    path.write_bytes(artifact(artifact_body, 2))  # signed, a champion as written
    argv = ["publish", str(path), "--shadow", "--bootstrap", kafka_bootstrap]
    assert main([*argv, "--topic-prefix", topics.prefix]) == 0
    scorer = Scorer(transport=transport, options=ScorerOptions(topics=topics), keys=[signing_key])
    try:
        scorer.load_models(timeout_s=10)
        assert scorer.models.lineup.versions == (1, 2, "challenger")
        shadow = scorer.models.shadow_artifact
        assert shadow is not None and shadow["stage"] == "shadow"
    finally:
        scorer.close()


def step_until(scorer: Scorer, done: Any, *, timeout: float = 60.0) -> bool:
    """Run ``scorer``'s loop here (so it can be killed between two steps) until ``done()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scorer.step()
        if done():
            return True
    return False


def feed(
    transport: KafkaTransport,
    topics: Topics,
    committee: Committee,
    scorer: Scorer,
    lo: int,
    hi: int,
) -> None:
    """Events ``lo:hi``' votes, then their outcomes, 500 at a time; each chunk is handled and
    committed before the next."""
    for start in range(lo, hi, 500):
        stop = min(start + 500, hi)
        votes, outcomes = scorer.stats.votes, scorer.stats.outcomes
        send_votes(transport, topics, committee, start, stop)
        assert step_until(scorer, lambda: scorer.stats.votes >= votes + stop - start)  # noqa: B023
        send_raw(transport, topics.outcomes, outcome_records(committee, start, stop))
        assert step_until(scorer, lambda: scorer.stats.outcomes >= outcomes + stop - start)  # noqa: B023
        checkpoint = scorer._checkpoint
        assert checkpoint is not None
        assert step_until(scorer, lambda: not checkpoint.pending)  # noqa: B023


def outcome_records(committee: Committee, lo: int, hi: int) -> list[tuple[bytes, bytes]]:
    return [
        (
            str(committee.ids[i]).encode(),
            json.dumps(
                {
                    "id": str(committee.ids[i]),
                    "ts": int(committee.time_ms[i]),
                    "label": int(committee.labels[i]),
                }
            ).encode(),
        )
        for i in range(lo, hi)
    ]


def kill(scorer: Scorer) -> None:
    """The process dies between two steps: no commit, no evidence, no abort; the broker
    sees its consumer leave (as after a kill once the session expires, without the wait)."""
    checkpoint = scorer._checkpoint
    assert checkpoint is not None and scorer._votes is not None
    scorer._ownership.settlement = None  # the revocation leaving the group runs commits nothing
    scorer._votes.close()
    checkpoint.producer.close()
    scorer.model_feed.close()
    scorer._evidence.close()


@pytest.mark.parametrize("held_back", [False, True], ids=["every-commit", "held-back"])
def test_a_killed_scorer_is_continued_from_its_partitions_published_counts_on_the_broker(
    kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: Artifact,
    exactly_once: bool,
    held_back: bool,
) -> None:
    transport, topics = kafka
    # The same model twice and no futility stop: retired at the horizon, 3,000 summed outcomes.
    publish(
        transport,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        topics=topics,
    )
    group = f"{topics.prefix}scorer"
    policy: dict[str, Any] = (
        {"evidence_min_outcomes": 200, "evidence_interval_s": 3600.0}  # never due by time
        if held_back
        else {"evidence_min_outcomes": 0, "evidence_interval_s": 0.0}
    )
    options = {
        **OPTIONS,
        **policy,
        "group_id": group,
        "exactly_once": exactly_once,
        "transactional_id": f"{group}-tx",
    }
    seen: list[int] = []  # the trainer's summed outcomes, as it goes
    with TrainerThread(transport, topics, **FAST_TEST, shadow_min_improvement=0.0) as trainer:
        first = Scorer(
            transport=transport, options=ScorerOptions(topics=topics, **options), keys=[TEST_KEY]
        )
        assert step_until(first, lambda: len(first.assignment()) == 8)  # votes and outcomes
        feed(transport, topics, committee, first, 0, 1500)
        slot = first.feedback.shadow
        truth = {p: int(counts.sum()) for p, counts in slot._counts.items()}
        assert sum(truth.values()) == 1500  # every outcome joined and counted
        published = latest_counts(transport, topics)
        assert wait_for(lambda: trainer.judge.n_outcomes == sum(published.values()))
        seen.append(trainer.judge.n_outcomes)
        kill(first)

        second = Scorer(
            transport=transport, options=ScorerOptions(topics=topics, **options), keys=[TEST_KEY]
        )
        assert step_until(second, lambda: len(second.assignment()) == 8)
        after = {p: int(c.sum()) for p, c in second.feedback.shadow._counts.items()}
        # Continued from every partition's published counts: nothing counted twice.
        assert after == {p: published.get(p, 0) for p in after} and len(after) == 4
        lost = {p: truth[p] - after[p] for p in truth}
        if held_back:  # the committed outcomes since each partition's last record
            assert all(0 <= n < 200 for n in lost.values()), lost
        else:  # published in every commit: the counts are the true total
            assert not any(lost.values()), lost
        for lo in range(1500, 6000, 500):
            feed(transport, topics, committee, second, lo, lo + 500)
            time.sleep(0.5)  # the trainer reads what was published
            summed = trainer.judge.n_outcomes  # read first: 0 again once the pair is decided
            if trainer.verdicts:
                break
            seen.append(summed)
        assert wait_for(lambda: bool(trainer.verdicts), timeout=30)
        second.close()
    assert seen == sorted(seen) and seen[-1] > seen[0], seen  # it never fell back
    (retire,) = decisions_on(transport, topics)
    assert (retire["decision"], retire["champion"], retire["shadow"]) == ("retire", 1, 2)
    n_outcomes = retire["evidence"]["n_outcomes"]
    # At the horizon, within one 500-outcome chunk (the kill's loss is outcomes not counted,
    # so the horizon is reached later in events, not with fewer outcomes).
    assert isinstance(n_outcomes, int) and 3000 <= n_outcomes < 3500


def latest_counts(transport: KafkaTransport, topics: Topics) -> dict[int, int]:
    """Each outcomes partition's latest published (committed) count of the pair 1/2."""
    consumer = transport.consumer(assign_all=[topics.evidence], read_committed=True)
    latest: dict[int, int] = {}
    for _ in range(10):
        for record in consumer.poll(timeout_ms=200, max_records=1000):
            if record.value is not None:
                document = json.loads(record.value)
                latest[document["partition"]] = sum(document["counts"])
    consumer.close()
    return latest


def test_a_rebalance_sends_the_held_back_counts_and_the_new_owner_continues_on_the_broker(
    kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: Artifact,
    exactly_once: bool,
) -> None:
    transport, topics = kafka
    publish(
        transport,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        topics=topics,
    )
    group = f"{topics.prefix}scorer"
    # Nothing is ever due by count or time: only what leaving partitions sends goes out.
    never = {"evidence_min_outcomes": 10**9, "evidence_interval_s": 3600.0}
    options = {**OPTIONS, **never, "group_id": group, "exactly_once": exactly_once}
    with ScorerThread(transport, topics, transactional_id=f"{group}-a", **options) as first:
        assert wait_for(lambda: len(first.assignment()) == 8, timeout=60)
        stream_until(transport, topics, committee, first, lambda: False, stop=1500)
        assert wait_for(lambda: first.feedback.shadow.n_outcomes == 1500)
        assert latest_counts(transport, topics) == {}  # all held back so far
        with ScorerThread(transport, topics, transactional_id=f"{group}-b", **options) as second:
            slots = [first.feedback.shadow, second.feedback.shadow]
            assert wait_for(lambda: all(slot.owned for slot in slots), timeout=60)
            # The moved partitions' counts went out at the revocation and were read back by
            # their new owner: none lost, none twice.
            assert wait_for(lambda: sum(slot.n_outcomes for slot in slots) == 1500)
            assert second.feedback.shadow.n_outcomes > 0
            moved = latest_counts(transport, topics)
            assert set(moved) >= second.feedback.shadow.owned
    # Both closed: every partition's counts are out, exactly the outcomes counted.
    assert sum(latest_counts(transport, topics).values()) == 1500


def tombstones(transport: KafkaTransport, topics: Topics) -> set[bytes]:
    """The keys tombstoned on the evidence topic (committed)."""
    consumer = transport.consumer(assign_all=[topics.evidence], read_committed=True)
    keys: set[bytes] = set()
    for _ in range(10):
        for record in consumer.poll(timeout_ms=200, max_records=1000):
            if record.value is None and record.key is not None:
                keys.add(record.key)
    consumer.close()
    return keys


class Crash(Exception):
    """The process dies here."""


def test_a_scorer_killed_inside_a_transaction_leaves_no_count_on_the_broker(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: Artifact
) -> None:
    transport, topics = kafka
    publish(
        transport,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        topics=topics,
    )
    group = f"{topics.prefix}scorer"
    options = {
        **OPTIONS,
        "evidence_min_outcomes": 0,  # counts in every transaction that counted outcomes
        "evidence_interval_s": 0.0,
        "group_id": group,
        "exactly_once": True,
        "transactional_id": f"{group}-tx",
    }
    first = Scorer(
        transport=transport, options=ScorerOptions(topics=topics, **options), keys=[TEST_KEY]
    )
    assert step_until(first, lambda: len(first.assignment()) == 8)
    feed(transport, topics, committee, first, 0, 1000)
    assert sum(latest_counts(transport, topics).values()) == 1000

    def crash(*_: object, **__: object) -> None:
        raise Crash

    # The next transaction carries the counts of 1,000 + its outcomes, and dies uncommitted.
    checkpoint = first._checkpoint
    assert checkpoint is not None
    checkpoint.producer.commit_transaction = crash  # type: ignore[method-assign]
    send_votes(transport, topics, committee, 1000, 1500)
    send_raw(transport, topics.outcomes, outcome_records(committee, 1000, 1500))
    with pytest.raises(Crash):
        step_until(first, lambda: False, timeout=60)
    assert first.feedback.shadow.n_outcomes > 1000  # counted, sent, never committed
    kill(first)
    second = Scorer(
        transport=transport, options=ScorerOptions(topics=topics, **options), keys=[TEST_KEY]
    )
    try:  # the same transactional id: the dead transaction is aborted (fenced)
        assert step_until(second, lambda: len(second.assignment()) == 8)
        assert step_until(second, lambda: second.stats.outcomes >= 500, timeout=90)
        assert step_until(second, lambda: not second._checkpoint or not second._checkpoint.pending)
        # The span is read again and counted once: the true total, published and read back.
        assert second.feedback.shadow.n_outcomes == 1500
        assert sum(latest_counts(transport, topics).values()) == 1500
    finally:
        second.close()
