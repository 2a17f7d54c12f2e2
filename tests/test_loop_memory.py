"""Outcomes, the join, drift requests and the trainer, on the embedded memory bus."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from metasignal.stream.artifact import Artifact, load_artifact
from metasignal.stream.topics import Topics
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee, RateStep, generate_committee
from tests.conftest import TEST_KEY, vote_table
from tests.streaming import (
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    outcome_records,
    publish_model,
    send_raw,
    send_requests,
    send_training_rows,
    send_votes,
    versioned,
)

TOPICS = Topics(prefix="loop.")

make_bus = partial(memory_bus, TOPICS)
# Batches and commits on the event clock, not the wall clock: a poll linger or a commit
# interval makes what a batch holds, and so when a request is made and which rows the
# trainer's gate sees, depend on the machine's load.
scorer_for = partial(memory_scorer, topics=TOPICS, poll_linger_ms=0.0, commit_interval_s=0.0)


def send_outcomes(bus: MemoryBus, committee: Committee, start: int, stop: int) -> None:
    send_raw(bus, TOPICS.outcomes, outcome_records(committee, start, stop))


def test_outcomes_join_their_votes_into_training_rows(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 500)
    drain(scorer)
    send_outcomes(bus, committee, 0, 500)
    producer = bus.producer()
    producer.send(TOPICS.outcomes, key=b"ghost", value=b'{"id": "ghost", "ts": 1, "label": 1}')
    producer.send(TOPICS.outcomes, key=b"bad", value=b'{"id": "bad", "ts": 1, "label": 3}')
    drain(scorer)
    rows = {row["id"]: row for row in decoded(bus, TOPICS.training)}
    assert len(rows) == 500
    signals = {s["id"]: s for s in decoded(bus, TOPICS.signals)}
    for i in range(0, 500, 37):
        row = rows[str(committee.ids[i])]
        assert row["label"] == committee.labels[i]
        assert row["score"] == signals[row["id"]]["score"]
        assert row["votes"] == dict(
            zip(committee.members, committee.votes[i].tolist(), strict=True)
        )
    assert scorer.stats.joined == 500
    assert scorer.join.claim("ghost") == 1  # parked, waiting for a vote that never comes
    assert [dict(r.headers)["reason"] for r in bus.records(TOPICS.dlq)] == [b"bad_label"]


def test_join_cache_stays_bounded_under_a_flood_without_outcomes(
    committee: Committee, artifact_body: dict
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus, join_max_entries=1000)
    send_votes(bus, TOPICS, committee, 0, 6000)
    drain(scorer)
    assert len(scorer.join) == 1000
    assert scorer.join.evictions["size"] == 5000
    evicted = scorer.metrics.join_evictions.labels(reason="size")._value.get()
    assert evicted == 5000


def drifting_committee() -> Committee:
    return generate_committee(
        n_events=60_000, positive_rate=0.01, rate_steps=[RateStep(0.5, 0.04)], seed=5
    )


def first_model(committee: Committee, stop: int) -> Artifact:
    table = vote_table(committee, slice(stop))
    return fit_meta_model(table, FitConfig(estimator={"strategy": "optimal_threshold"})).artifact


def stream_with_outcomes(
    bus: MemoryBus, committee: Committee, services: list[Any], start: int, stop: int
) -> None:
    chunk = 2000
    for lo in range(start, stop, chunk):
        hi = min(lo + chunk, stop)
        send_votes(bus, TOPICS, committee, lo, hi)
        drain(*services)
        send_outcomes(bus, committee, lo, hi)
        drain(*services)


def test_rate_step_triggers_one_request_and_the_trainer_publishes_a_better_model() -> None:
    committee = drifting_committee()
    body = first_model(committee, 20_000)
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(body, 1, TEST_KEY))
    scorer = scorer_for(bus, drift_min_outcomes=2000, drift_cooldown_outcomes=4000)
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, window_rows=12_000, splits=3),
        keys=[TEST_KEY],
    )
    stream_with_outcomes(bus, committee, [scorer, trainer], 20_000, 50_000)
    requests = decoded(bus, TOPICS.control)
    assert requests, "no drift request after a 1 % -> 4 % step"
    assert requests[0]["kind"] in ("retune", "retrain")
    assert requests[0]["model_version"] == 1
    assert requests[0]["stats"]["window_outcomes"] > 0
    published = [v for v in trainer.verdicts if v.outcome == "published"]
    assert published, [v.detail for v in trainer.verdicts]
    assert scorer.models.current is not None and scorer.models.current.version >= 2
    latest = load_artifact(bus.records(TOPICS.models)[-1].value or b"", keys=[TEST_KEY])
    assert latest["request"]["id"] == published[-1].request_id
    assert latest["gate"]["candidate"] >= latest["gate"]["champion"]
    later = [s for s in decoded(bus, TOPICS.signals) if s["model_version"] >= 2]
    assert later, "signals never carried the new version"
    # One change -> one request per kind and model version.
    kinds = [(r["kind"], r["model_version"]) for r in requests]
    assert len(kinds) == len(set(kinds))


def test_duplicate_and_superseded_requests_give_one_model(
    artifact_body: dict, committee: Committee
) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(bus, TOPICS, committee, committee.labels)
    request = {"id": "r1", "kind": "retune", "reason": "test", "model_version": 1}
    for item in (request, request, {**request, "id": "r2"}):
        send_requests(bus, TOPICS, item)
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, force=True, window_rows=20_000),
        keys=[TEST_KEY],
    )
    drain(trainer)
    outcomes = [(v.request_id, v.outcome) for v in trainer.verdicts]
    assert outcomes == [("r1", "published"), ("r1", "skipped"), ("r2", "skipped")]
    assert len(bus.records(TOPICS.models)) == 2


def test_a_worse_candidate_is_refused(artifact_body: dict, committee: Committee) -> None:
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    rng = np.random.default_rng(0)
    labels = committee.labels.copy()
    n_fit = int(len(labels) * 0.7)
    labels[:n_fit] = rng.permutation(labels[:n_fit])  # the candidate learns from noise
    send_training_rows(bus, TOPICS, committee, labels)
    send_requests(
        bus, TOPICS, {"id": "bad", "kind": "retrain", "reason": "test", "model_version": 1}
    )
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, strategy="optimal_threshold", window_rows=20_000),
        keys=[TEST_KEY],
    )
    drain(trainer)
    assert [v.outcome for v in trainer.verdicts] == ["refused"]
    assert trainer.verdicts[0].gate is not None
    assert trainer.verdicts[0].gate["candidate"] < trainer.verdicts[0].gate["champion"]
    assert len(bus.records(TOPICS.models)) == 1
    assert trainer.metrics.refusals._value.get() == 1
