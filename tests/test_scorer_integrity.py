"""Model integrity (issue 11 §4) on the memory bus: versions only go up, across restarts and
compaction; publish refuses a version that is not newer; a model for other members is
refused while the current one serves; a vote with no known member is a dead letter; a
control message cannot force the champion gate."""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest

from metasignal.stream.errors import ArtifactError
from metasignal.stream.model_store import publish_artifact
from metasignal.stream.scorer import Scorer
from metasignal.stream.topics import Topics
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    publish_model,
    send_raw,
    send_requests,
    send_training_rows,
    send_votes,
    versioned,
)

TOPICS = Topics(prefix="integrity.")

make_bus = partial(memory_bus, TOPICS)
scorer_for = partial(memory_scorer, topics=TOPICS)


def refused(scorer: Scorer, reason: str) -> float:
    value = scorer.metrics.registry.get_sample_value(
        "metasignal_models_refused_total", {"reason": reason}
    )
    return value or 0.0


def compacted(bus: MemoryBus) -> MemoryBus:
    """What Kafka's compaction leaves of ``models``: the last record of each key, in order."""
    records = bus.records(TOPICS.models)
    last = {record.key: record.offset for record in records}
    fresh = make_bus()
    send_raw(fresh, TOPICS.models, [(r.key or b"", r.value or b"") for r in records
                                    if last[r.key] == r.offset])  # fmt: skip
    return fresh


def test_an_older_version_published_later_is_refused_counted_and_survives_no_restart(
    artifact_body: dict,
) -> None:
    """Before: the late older version was dropped in memory with no log or metric; with the
    model name as key, compaction kept only it, and a restarted scorer served it."""
    bus = make_bus()
    for version in (1, 2):
        publish_artifact(bus, TOPICS, versioned(artifact_body, version, TEST_KEY), keys=[TEST_KEY])
    scorer = scorer_for(bus)
    scorer.load_models(timeout_s=1)
    assert scorer.models.current is not None and scorer.models.current.version == 2
    # A validly signed v1 sent again later (a replayed record, a misconfigured publisher).
    (v1,) = [r for r in bus.records(TOPICS.models) if r.key == b"meta@1"]
    send_raw(bus, TOPICS.models, [(b"meta@1", v1.value or b"")])
    scorer.refresh_models()
    assert scorer.models.current.version == 2
    assert refused(scorer, "not_newer") == 1
    restarted = scorer_for(compacted(bus))
    restarted.load_models(timeout_s=1)
    assert restarted.models.current is not None and restarted.models.current.version == 2


def test_publish_refuses_a_version_that_is_not_newer(artifact_body: dict) -> None:
    """Before: publish accepted a different model under an existing name and version."""
    bus = make_bus()
    assert publish_artifact(
        bus, TOPICS, versioned(artifact_body, 2, TEST_KEY), keys=[TEST_KEY]
    ) == ("meta", 2)
    other = copy.deepcopy(artifact_body)
    other["linear"]["intercept"] += 1.0
    for body, version in ((other, 2), (artifact_body, 1)):
        with pytest.raises(ArtifactError, match="already holds meta v2"):
            publish_artifact(bus, TOPICS, versioned(body, version, TEST_KEY), keys=[TEST_KEY])
    publish_artifact(bus, TOPICS, versioned(other, 3, TEST_KEY), keys=[TEST_KEY])
    assert [r.key for r in bus.records(TOPICS.models)] == [b"meta@2", b"meta@3"]


def test_a_model_for_other_members_is_refused_while_the_current_one_serves(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: a validly signed model for other members was swapped in and every vote got
    one constant score (all members imputed)."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    scorer = scorer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 1000)
    drain(scorer)
    strangers = copy.deepcopy(artifact_body)
    strangers["members"] = [f"other{i}" for i in range(len(strangers["members"]))]
    publish_model(bus, TOPICS, versioned(strangers, 2, TEST_KEY))
    send_votes(bus, TOPICS, committee, 1000, 2000)
    drain(scorer)
    assert scorer.models.current is not None and scorer.models.current.version == 1
    assert refused(scorer, "member_mismatch") == 1
    scores = [s["score"] for s in decoded(bus, TOPICS.signals)]
    assert len(scores) == 2000 and len(set(np.round(scores[1000:], 9))) > 100


def test_a_vote_with_no_known_member_is_a_dead_letter(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: it was scored with every member imputed, one constant score for all."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_raw(bus, TOPICS.votes, [(b"s", b'{"id": "s", "ts": 1, "votes": {"stranger": 0.9}}')])
    good = send_votes(bus, TOPICS, committee, 0, 20)
    scorer = scorer_for(bus)
    drain(scorer)
    assert {s["id"] for s in decoded(bus, TOPICS.signals)} == set(good)
    (dead,) = bus.records(TOPICS.dlq)
    assert dict(dead.headers)["reason"] == b"unknown_member"


def test_a_control_message_cannot_force_a_refused_candidate(
    artifact_body: dict, committee: Committee
) -> None:
    """Before: the trainer honoured 'force' from any control message, bypassing the gate."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    rng = np.random.default_rng(0)
    labels = committee.labels.copy()
    n_fit = int(len(labels) * 0.7)
    labels[:n_fit] = rng.permutation(labels[:n_fit])  # the candidate learns from noise
    send_training_rows(bus, TOPICS, committee, labels)
    send_requests(
        bus,
        TOPICS,
        {"id": "f", "kind": "retrain", "reason": "x", "model_version": 1, "force": True},
    )
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, strategy="optimal_threshold", window_rows=20_000),
        keys=[TEST_KEY],
    )
    drain(trainer)
    assert [v.outcome for v in trainer.verdicts] == ["refused"]
    assert len(bus.records(TOPICS.models)) == 1


def test_a_downgrade_is_an_explicit_signed_rollback_to_a_new_version(
    committee: Committee, artifact_body: dict
) -> None:
    from metasignal.stream.model_store import rollback_artifact

    bus = make_bus()
    second = copy.deepcopy(artifact_body)
    second["threshold"]["value"] = 0.99
    publish_artifact(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY), keys=[TEST_KEY])
    publish_artifact(bus, TOPICS, versioned(second, 2, TEST_KEY), keys=[TEST_KEY])
    scorer = scorer_for(bus)
    scorer.load_models(timeout_s=1)
    assert scorer.models.current is not None and scorer.models.current.threshold == 0.99
    for version, match in ((7, "not on"), (2, "already the newest")):
        with pytest.raises(ArtifactError, match=match):
            rollback_artifact(bus, TOPICS, name="meta", to_version=version, keys=[TEST_KEY])
    with pytest.raises(ArtifactError, match="signing key is required"):
        rollback_artifact(bus, TOPICS, name="meta", to_version=1, keys=[])
    assert rollback_artifact(bus, TOPICS, name="meta", to_version=1, keys=[TEST_KEY]) == (
        "meta",
        3,
    )
    scorer.refresh_models()
    assert scorer.models.current.version == 3
    assert scorer.models.current.threshold == artifact_body["threshold"]["value"]
    assert scorer.models.artifact is not None
    assert scorer.models.artifact["rollback"] == {"to": 1, "from": 2}
