"""The label-free path end to end on the memory bus: votes only -> label_shift -> new model."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from metasignal.stream.artifact import load_artifact
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee, generate_committee
from tests.conftest import TEST_KEY
from tests.streaming import publish_model, send_requests, send_training_rows, send_votes, versioned

TOPICS = Topics(prefix="ls.")
BEFORE, AFTER = 8_000, 12_000


def label_shift_committee(pool: Committee, rates: np.ndarray, seed: int) -> Committee:
    """Events drawn class by class from ``pool``: p(x | y) fixed, positive rate ``rates[i]``."""
    rng = np.random.default_rng(seed)
    labels = rng.random(len(rates)) < rates
    index = np.empty(len(rates), dtype=np.int64)
    index[labels] = rng.choice(np.flatnonzero(pool.labels == 1), int(labels.sum()), replace=False)
    index[~labels] = rng.choice(np.flatnonzero(pool.labels == 0), int((~labels).sum()))
    n = len(rates)
    return Committee(
        ids=pool.ids[:n],
        time_ms=pool.time_ms[:n],
        members=pool.members,
        votes=pool.votes[index],
        labels=labels.astype(np.int8),
    )


def drain(*services: Any, rounds: int = 200) -> None:
    idle = 0
    while idle < 3 and rounds:
        idle = idle + 1 if sum(s.step() for s in services) == 0 else 0
        rounds -= 1


def control(bus: MemoryBus) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in bus.records(TOPICS.control) if r.value]


def test_a_label_shift_is_retuned_from_the_votes_alone(
    artifact_body: dict, committee: Committee
) -> None:
    """The model was fitted at 3 %; the live rate triples with no outcome arriving at all."""
    bus = MemoryBus()
    bus.create_topics(topic_specs(TOPICS, partitions=2))
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(bus, TOPICS, committee, committee.labels)  # joined before the shift
    pool = generate_committee(n_events=300_000, positive_rate=0.03, seed=21)
    rates = np.where(np.arange(BEFORE + AFTER) < BEFORE, 0.03, 0.09)
    live = label_shift_committee(pool, rates, seed=22)
    send_votes(bus, TOPICS, live, 0, len(live))
    scorer = Scorer(
        transport=bus,
        options=ScorerOptions(
            topics=TOPICS, poll_timeout_ms=5, model_check_interval_s=0.0, track_outcomes=False
        ),
        keys=[TEST_KEY],
    )
    drain(scorer)
    assert scorer.stats.votes == len(live)
    requests = control(bus)
    assert [(r["kind"], r["evidence"], r["model_version"]) for r in requests] == [
        ("label_shift", "label_free", 1)
    ]
    (request,) = requests
    step_ts = int(live.time_ms[BEFORE])
    assert request["at_event_ts"] > step_ts  # after the step, from votes only
    prior = request["prior"]
    assert 0.02 < prior["reference_rate"] < 0.04
    # Estimated from the few hundred votes since the located change: noisy, and biased up
    # (the detector stops on extreme evidence), but clearly above the old rate.
    assert 0.05 < prior["estimated_rate"] < 0.2
    metrics = scorer.metrics.registry
    labels = {"kind": "label_shift", "source": "label_free"}
    assert metrics.get_sample_value("metasignal_drift_events_total", labels) == 1
    assert (metrics.get_sample_value("metasignal_estimated_positive_rate") or 0) > 0.05
    for name in ("precision", "recall", "f1"):
        value = metrics.get_sample_value(f"metasignal_expected_{name}")
        assert value is not None and 0 < value < 1
    assert scorer.stats.drift_requests[0]["source"] == "label_free"

    trainer = TrainerService(
        transport=bus, options=TrainerOptions(topics=TOPICS, window_rows=20_000), keys=[TEST_KEY]
    )
    drain(trainer)
    (verdict,) = trainer.verdicts
    assert verdict.outcome == "published", verdict.detail
    assert verdict.gate is not None and verdict.gate["candidate"] >= verdict.gate["champion"]
    (_, record) = bus.records(TOPICS.models)
    v2 = load_artifact(record.value or b"", keys=[TEST_KEY])
    assert v2["request"]["kind"] == "label_shift" and v2["request"]["evidence"] == "label_free"
    shift = math.log(prior["estimated_rate"] / (1 - prior["estimated_rate"])) - math.log(
        prior["reference_rate"] / (1 - prior["reference_rate"])
    )
    assert v2["calibration"]["intercept"] == (artifact_body["calibration"]["intercept"] + shift)
    assert v2["linear"] == artifact_body["linear"]  # the weights are kept
    assert v2["threshold"]["value"] != artifact_body["threshold"]["value"]
    drain(scorer)
    assert scorer.models.current is not None and scorer.models.current.version == 2


def test_the_trainer_refuses_a_label_shift_request_without_a_usable_prior(
    artifact_body: dict, committee: Committee
) -> None:
    bus = MemoryBus()
    bus.create_topics(topic_specs(TOPICS, partitions=2))
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(bus, TOPICS, committee, committee.labels)
    send_requests(
        bus,
        TOPICS,
        {"id": "a", "kind": "label_shift", "model_version": 1, "prior": {"reference_rate": 0.03}},
        {
            "id": "b",
            "kind": "label_shift",
            "model_version": 1,
            "prior": {"reference_rate": 0.03, "estimated_rate": 1.5},
        },
    )
    trainer = TrainerService(
        transport=bus, options=TrainerOptions(topics=TOPICS, window_rows=20_000), keys=[TEST_KEY]
    )
    drain(trainer)
    assert [v.outcome for v in trainer.verdicts] == ["failed", "failed"]
    assert "estimated_rate" in trainer.verdicts[0].detail + trainer.verdicts[1].detail
    assert len(bus.records(TOPICS.models)) == 1


def test_with_label_free_requests_off_the_estimates_are_still_exported(
    artifact_body: dict,
) -> None:
    bus = MemoryBus()
    bus.create_topics(topic_specs(TOPICS, partitions=2))
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    pool = generate_committee(n_events=300_000, positive_rate=0.03, seed=21)
    rates = np.where(np.arange(BEFORE + AFTER) < BEFORE, 0.03, 0.09)
    live = label_shift_committee(pool, rates, seed=22)
    send_votes(bus, TOPICS, live, 0, len(live))
    scorer = Scorer(
        transport=bus,
        options=ScorerOptions(
            topics=TOPICS,
            poll_timeout_ms=5,
            model_check_interval_s=0.0,
            track_outcomes=False,
            drift_label_free=False,
        ),
        keys=[TEST_KEY],
    )
    drain(scorer)
    assert scorer.stats.votes == len(live)
    assert control(bus) == []
    assert (
        scorer.metrics.registry.get_sample_value("metasignal_estimated_positive_rate") or 0
    ) > 0.05
