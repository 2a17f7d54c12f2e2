"""The closed loop's promises on the real Kafka broker."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import Artifact, load_artifact
from metasignal.stream.topics import Topics
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee, generate_committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    ServiceProcess,
    ServiceThread,
    publish_model,
    send_requests,
    send_training_rows,
    send_votes,
    versioned,
    wait_for,
)
from tests.test_scorer_kafka import ScorerThread

pytestmark = pytest.mark.kafka


def committed_models(transport: KafkaTransport, topics: Topics) -> list[Artifact]:
    consumer = transport.consumer(assign_all=[topics.models], read_committed=True)
    out = []
    for _ in range(10):
        out.extend(consumer.poll(timeout_ms=200, max_records=100))
    consumer.close()
    return [load_artifact(r.value or b"", keys=[TEST_KEY]) for r in out]


class TrainerThread(ServiceThread[TrainerService]):
    """A trainer on ``topics`` running in a thread for the length of a ``with`` block."""

    def __init__(self, transport: KafkaTransport, topics: Topics, **options: Any) -> None:
        trainer = TrainerService(
            transport=transport,
            options=TrainerOptions(topics=topics, group_id=f"{topics.prefix}trainer",
                                   transactional_id=f"{topics.prefix}trainer", **options),
            keys=[TEST_KEY],
        )  # fmt: skip
        super().__init__(trainer, join_timeout_s=60)


def test_duplicate_requests_give_one_model(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(transport, topics, committee, committee.labels)
    request = {"id": "dup", "kind": "retune", "reason": "test", "model_version": 1}
    send_requests(transport, topics, request, request, {**request, "id": "other"})
    with TrainerThread(transport, topics, force=True, window_rows=20_000) as trainer:
        assert wait_for(lambda: len(trainer.verdicts) == 3, timeout=90)
    assert [(v.request_id, v.outcome) for v in trainer.verdicts] == [
        ("dup", "published"), ("dup", "skipped"), ("other", "skipped")
    ]  # fmt: skip
    models = committed_models(transport, topics)
    assert [m["model"]["version"] for m in models] == [1, 2]
    assert models[1]["request"]["id"] == "dup"


def test_worse_candidate_refused(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    labels = committee.labels.copy()
    n_fit = int(len(labels) * 0.7)
    labels[:n_fit] = np.random.default_rng(0).permutation(labels[:n_fit])
    send_training_rows(transport, topics, committee, labels)
    send_requests(
        transport, topics, {"id": "x", "kind": "retrain", "reason": "t", "model_version": 1}
    )
    with TrainerThread(
        transport, topics, strategy="optimal_threshold", window_rows=20_000
    ) as trainer:
        assert wait_for(lambda: len(trainer.verdicts) == 1, timeout=90)
    assert trainer.verdicts[0].outcome == "refused"
    assert [m["model"]["version"] for m in committed_models(transport, topics)] == [1]


def test_join_cache_stays_bounded_under_a_flood(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    send_votes(transport, topics, committee, 0, 6000)
    with ScorerThread(
        transport, topics, group_id=f"{topics.prefix}g", join_max_entries=1000
    ) as scorer:
        assert wait_for(lambda: scorer.stats.votes >= 6000, timeout=90)
        assert len(scorer.join) == 1000
        assert scorer.join.evictions["size"] == 5000


def trainer_process(bootstrap: str, topics: Topics) -> ServiceProcess:
    return ServiceProcess(
        "trainer", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
        "--group-id", f"{topics.prefix}trainer", "--transactional-id", f"{topics.prefix}trainer",
        "--metrics-port", "-1", "--window-rows", "200000",
    )  # fmt: skip


def test_trainer_killed_mid_request_serves_it_once_after_restart(
    kafka: tuple[KafkaTransport, Topics], kafka_bootstrap: str, artifact_body: dict
) -> None:
    transport, topics = kafka
    big = generate_committee(n_events=120_000, positive_rate=0.03, seed=21)
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(transport, topics, big, big.labels)
    request = {"id": "once", "kind": "retrain", "reason": "t", "model_version": 1}
    send_requests(transport, topics, request)
    first = trainer_process(kafka_bootstrap, topics)
    try:
        handling = first.wait_for_output("handling request once", timeout=120)
    finally:
        first.stop()  # SIGKILL mid-request: the retrain on 120k rows takes seconds
    assert handling, first.output()[-2000:]
    assert "published v2" not in first.output()
    assert [m["model"]["version"] for m in committed_models(transport, topics)] == [1]
    second = trainer_process(kafka_bootstrap, topics)
    try:
        assert second.wait_for_output("published v2", timeout=150), second.output()[-2000:]
        time.sleep(3)  # time for a duplicate answer to show up, if there were one
        models = committed_models(transport, topics)
        assert second.terminate() == 0
    finally:
        second.stop()
    answered = [m for m in models if (m.get("request") or {}).get("id") == "once"]
    assert len(answered) == 1
    assert answered[0]["model"]["version"] == 2
