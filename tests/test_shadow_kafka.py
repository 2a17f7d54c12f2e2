"""The shadow path on the real broker: a shadow promoted, a promoted champion rolled back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from metasignal.stream.artifact import Artifact
from metasignal.stream.decisions import load_decision
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
