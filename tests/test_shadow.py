"""The shadow challenger, its signed promote/retire records and the rollback, on the memory bus."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import Artifact, dumps_artifact, load_artifact, sign_artifact
from metasignal.stream.decisions import (
    decision_key,
    encode_decision,
    load_decision,
    new_decision,
    sign_decision,
)
from metasignal.stream.messages import ShadowDecision
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics, model_key, topic_specs
from metasignal.stream.transport.base import Transport
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.cli import main
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import send_requests, send_training_rows, send_votes

TOPICS = Topics(prefix="shadow.")
OTHER_KEY = b"another-signing-key-0123456789abcdef"

# No drift requests, so nothing else publishes meanwhile; and (the trainer's) small looks and
# horizons, so a verdict comes within a few thousand outcomes of strongly different models.
FAST: dict[str, Any] = {
    "model_check_interval_s": 0.0,
    "poll_timeout_ms": 5,
    "drift_min_outcomes": 10**9,
    "drift_label_free": False,
}
FAST_TEST: dict[str, Any] = {
    "shadow_min_outcomes": 500,
    "shadow_look_every": 500,
    "shadow_max_outcomes": 3000,
    "rollback_outcomes": 3000,
}


def make_bus() -> MemoryBus:
    bus = MemoryBus()
    bus.create_topics(topic_specs(TOPICS, partitions=2))
    return bus


def artifact(
    body: Artifact,
    version: int,
    *,
    stage: str = "champion",
    threshold: float | None = None,
    key: bytes | None = TEST_KEY,
) -> bytes:
    """``body`` as version ``version``; a high ``threshold`` makes a much worse model
    (F1 0.12 instead of 0.50 on the session committee at 0.9)."""
    doc: dict[str, Any] = copy.deepcopy(dict(body))
    doc["model"] = {"name": "meta", "version": version}
    if stage == "shadow":
        doc["stage"] = "shadow"
    if threshold is not None:
        doc["threshold"] = {**doc["threshold"], "value": threshold}
    return dumps_artifact(sign_artifact(doc, key)).encode()


def publish(transport: Transport, *records: tuple[bytes, bytes], topics: Topics = TOPICS) -> None:
    producer = transport.producer()
    for key, value in records:
        producer.send(topics.models, key=key, value=value)
    producer.flush()
    producer.close()


def model(raw: bytes) -> tuple[bytes, bytes]:
    version = json.loads(raw)["model"]["version"]
    return model_key("meta", version), raw


def decision(
    kind: str, champion: int, shadow: int, key: bytes | None = TEST_KEY
) -> tuple[bytes, bytes]:
    record = new_decision(
        kind,  # type: ignore[arg-type]
        model="meta",
        champion=champion,
        shadow=shadow,
        evidence={"verdict": "better"},
        request_id=f"hand-{kind}-{champion}-{shadow}",
        source="test",
        decided_at="2026-01-01T00:00:00Z",
    )
    signed: ShadowDecision = record if key is None else sign_decision(record, key)
    return decision_key(record), encode_decision(signed)


def scorer_for(transport: Transport, topics: Topics = TOPICS, **options: Any) -> Scorer:
    return Scorer(
        transport=transport,
        options=ScorerOptions(topics=topics, **{**FAST, **options}),
        keys=[TEST_KEY],
    )


def trainer_for(transport: Transport, topics: Topics = TOPICS, **options: Any) -> TrainerService:
    return TrainerService(
        transport=transport,
        options=TrainerOptions(topics=topics, **{**FAST_TEST, **options}),
        keys=[TEST_KEY],
    )


def drain(*services: Any, rounds: int = 400) -> None:
    idle = 0
    while idle < 3 and rounds:
        idle = idle + 1 if sum(service.step() for service in services) == 0 else 0
        rounds -= 1


def send_outcomes(bus: MemoryBus, committee: Committee, start: int, stop: int) -> None:
    producer = bus.producer()
    for i in range(start, stop):
        event_id = str(committee.ids[i])
        value = json.dumps(
            {"id": event_id, "ts": int(committee.time_ms[i]), "label": int(committee.labels[i])}
        ).encode()
        producer.send(TOPICS.outcomes, key=event_id.encode(), value=value)


def stream(
    bus: MemoryBus,
    committee: Committee,
    services: list[Any],
    start: int,
    stop: int,
    *,
    until: Any = None,
) -> None:
    """Votes, then their outcomes, 500 at a time, to ``stop`` or until ``until()`` holds."""
    for lo in range(start, stop, 500):
        hi = min(lo + 500, stop)
        send_votes(bus, TOPICS, committee, lo, hi)
        drain(*services)
        send_outcomes(bus, committee, lo, hi)
        drain(*services)
        if until is not None and until():
            return


def decisions_on(transport: MemoryBus) -> list[ShadowDecision]:
    out = []
    for record in transport.records(TOPICS.models):
        if record.value and b'"decision"' in record.value:
            out.append(load_decision(record.value, keys=[TEST_KEY]))
    return out


def signals(bus: MemoryBus) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in bus.records(TOPICS.signals) if r.value]


def refused(scorer: Scorer, reason: str) -> float:
    value = scorer.metrics.registry.get_sample_value(
        "metasignal_models_refused_total", {"reason": reason}
    )
    return value or 0.0


def test_a_shadow_scores_beside_the_champion_and_never_trades(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    # The shadow trades far more often (threshold 0.05): had it any say, signals would show it.
    publish(
        bus,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow", threshold=0.05)),
    )
    scorer = scorer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 1000)
    drain(scorer)
    out = signals(bus)
    assert len(out) == 1000 and {s["model_version"] for s in out} == {1}
    champion = scorer.models.current
    assert champion is not None and champion.version == 1
    assert sum(s["decision"] for s in out) == int(
        (champion.predict_proba(committee.votes[:1000]) >= champion.threshold).sum()
    )
    assert scorer.feedback.shadow.pair == (1, 2, "challenger")
    describe = scorer.feedback.shadow.describe()
    assert describe == (
        "challenger v2, 0 joined outcomes counted on this replica (the trainer judges)"
    )  # no outcome yet
    registry = scorer.metrics.registry
    assert (
        registry.get_sample_value("metasignal_shadow_info", {"version": "2", "role": "challenger"})
        == 1
    )
    # Its decisions wait in the join cache beside the champion's.
    scored = scorer.join.match(str(committee.ids[10]))
    assert scored is not None and (scored.model_version, scored.shadow_version) == (1, 2)
    assert scored.shadow_decision in (0, 1)


def test_a_better_shadow_is_promoted_by_a_signed_record_and_a_restart_replays_it(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    publish(
        bus,
        model(artifact(artifact_body, 1, threshold=0.9)),
        model(artifact(artifact_body, 2, stage="shadow")),
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    stream(bus, committee, [scorer, trainer], 0, 12_000, until=lambda: len(decisions_on(bus)) > 1)
    records = decisions_on(bus)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records][:1] == [("promote", 1, 2)]
    evidence: dict[str, Any] = records[0]["evidence"]
    assert evidence["verdict"] == "better"
    assert evidence["challenger_f1"] > evidence["incumbent_f1"] + 0.2
    # The trainer decided on the evidence itself: no scorer asked.
    assert records[0]["request_id"] == "evidence:1:2:promote"
    assert evidence["partitions"] == [0, 1] and evidence["summed_outcomes"] >= 500
    assert scorer.models.current is not None and scorer.models.current.version == 2
    later = [s for s in signals(bus) if s["model_version"] == 2]
    assert later, "signals never came from the promoted model"
    # The predecessor was watched over the rollback window, not found better, and retired.
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records[1:]] == [("retire", 2, 1)]
    assert scorer.models.shadow is None and trainer.lineup.versions == (2, None, None)
    kinds = ("promote", "retire", "rollback")
    counts = [
        trainer.metrics.registry.get_sample_value(
            "metasignal_trainer_shadow_decisions_total", {"kind": k}
        )
        for k in kinds
    ]
    assert counts == [1.0, 1.0, 0.0]
    compared = scorer.metrics.registry.get_sample_value("metasignal_shadow_outcomes_total")
    assert compared is not None and compared >= 500
    restarted = scorer_for(bus, group_id="restarted")
    restarted.load_models(timeout_s=5)
    assert restarted.models.lineup.versions == (2, None, None)
    assert refused(restarted, "decision_stale") == 0


def test_a_shadow_no_better_is_retired(committee: Committee, artifact_body: Artifact) -> None:
    bus = make_bus()
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    stream(bus, committee, [scorer, trainer], 0, 5000)
    records = decisions_on(bus)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records] == [("retire", 1, 2)]
    evidence = records[0]["evidence"]
    assert evidence["verdict"] == "not_better" and evidence["stopped_by"] == "futility"
    # Same decisions on every outcome: its F1 is the champion's, so the min improvement is
    # ruled out at the first look (500 outcomes), reached within one commit span.
    n_outcomes = evidence["n_outcomes"]
    assert isinstance(n_outcomes, int) and 500 <= n_outcomes < 1000
    assert scorer.models.lineup.versions == (1, None, None)


def test_without_futility_a_shadow_no_better_is_retired_at_the_horizon(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus, shadow_min_improvement=0.0)
    stream(bus, committee, [scorer, trainer], 0, 5000)
    records = decisions_on(bus)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records] == [("retire", 1, 2)]
    evidence = records[0]["evidence"]
    assert evidence["verdict"] == "not_better" and evidence["stopped_by"] == "horizon"
    # Same decisions: no evidence either way until the horizon, reached within one commit.
    n_outcomes = evidence["n_outcomes"]
    assert isinstance(n_outcomes, int) and 3000 <= n_outcomes < 3500
    assert scorer.models.lineup.versions == (1, None, None)
    assert {s["model_version"] for s in signals(bus)} == {1}


def test_a_promoted_champion_worse_than_its_predecessor_is_rolled_back_once(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    # A promotion that turned out badly: v2 is much worse than the v1 it replaced.
    publish(
        bus,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow", threshold=0.9)),
        decision("promote", 1, 2),
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    stream(bus, committee, [scorer, trainer], 0, 6000, until=lambda: len(decisions_on(bus)) > 1)
    records = decisions_on(bus)
    assert [(r["decision"], r["champion"], r["shadow"]) for r in records] == [
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]
    assert records[1]["evidence"]["verdict"] == "better"
    assert scorer.models.lineup.versions == (1, None, None)
    after = set(send_votes(bus, TOPICS, committee, 10_000, 10_100))
    drain(scorer)
    assert {s["model_version"] for s in signals(bus) if s["id"] in after} == {1}
    # Once: a request for the same rollback (an operator's, an old replica's) is stale.
    second = {
        "id": "another-replica",
        "kind": "rollback",
        "model": "meta",
        "model_version": 2,
        "shadow_version": 1,
        "stats": {"verdict": "better"},
    }
    producer = bus.producer()
    producer.send(TOPICS.control, key=b"meta", value=json.dumps(second).encode())
    drain(scorer, trainer)
    assert trainer.verdicts[-1].outcome == "skipped" and trainer.verdicts[-1].detail.startswith(
        "stale"
    )
    assert len(decisions_on(bus)) == 2
    rollbacks = trainer.metrics.registry.get_sample_value(
        "metasignal_trainer_shadow_decisions_total", {"kind": "rollback"}
    )
    assert rollbacks == 1.0
    restarted = scorer_for(bus, group_id="restarted")
    restarted.load_models(timeout_s=5)
    assert restarted.models.lineup.versions == (1, None, None)


def test_forged_unsigned_and_stale_decisions_are_refused_one_at_a_time(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    bad = decision("promote", 1, 2)[1].replace(b'"champion": 1', b'"champion": 3')
    publish(
        bus,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        decision("promote", 1, 2, key=None),  # unsigned
        decision("promote", 1, 2, key=OTHER_KEY),  # signed with a key nobody trusts
        (b"meta@2:promote", bad),  # tampered after signing
        decision("rollback", 1, 2),  # about a state that is not the topic's
        (b"meta@x", b'{"decision": "promote", "model": "meta"}'),  # no signature, no fields
    )
    scorer, trainer = scorer_for(bus), trainer_for(bus)
    send_votes(bus, TOPICS, committee, 0, 200)
    drain(scorer, trainer)
    assert scorer.models.lineup.versions == (1, 2, "challenger")
    assert [
        refused(scorer, r)
        for r in ("decision_unsigned", "decision_bad_signature", "decision_stale")
    ] == [2.0, 2.0, 1.0]
    assert len(signals(bus)) == 200  # the service went on
    trainer.refresh()
    assert trainer.lineup.versions == (1, 2, "challenger")
    counted = trainer.metrics.registry.get_sample_value(
        "metasignal_trainer_refused_records_total",
        {"topic": TOPICS.models, "reason": "decision_bad_signature"},
    )
    assert counted == 2.0
    # The genuine record still applies after all that.
    publish(bus, decision("promote", 1, 2))
    drain(scorer)
    assert scorer.models.lineup.versions == (2, 1, "predecessor")


def test_a_restarted_scorer_replays_artifacts_and_decisions_to_the_same_lineup(
    artifact_body: Artifact,
) -> None:
    bus = make_bus()
    publish(
        bus,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        decision("promote", 1, 2),
        decision("retire", 2, 1),  # the watch ended: the promotion stands
        model(artifact(artifact_body, 3, stage="shadow")),
        decision("retire", 2, 3),
        model(artifact(artifact_body, 4, stage="shadow")),
        decision("promote", 2, 3),  # stale: v3 was retired
    )
    scorer = scorer_for(bus)
    scorer.load_models(timeout_s=5)
    assert scorer.models.lineup.versions == (2, 4, "challenger")
    assert scorer.models.current is not None and scorer.models.current.version == 2
    assert scorer.models.shadow is not None and scorer.models.shadow.version == 4
    assert refused(scorer, "decision_stale") == 1
    # A shadow not newer than every version published is refused (versions only go up).
    publish(bus, model(artifact(artifact_body, 3, stage="shadow")))
    scorer.refresh_models()
    assert refused(scorer, "not_newer") == 1


def test_the_trainer_in_shadow_mode_publishes_candidates_as_shadows(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = make_bus()
    publish(
        bus, model(artifact(artifact_body, 1)), model(artifact(artifact_body, 2, stage="shadow"))
    )
    send_training_rows(bus, TOPICS, committee, committee.labels)
    send_requests(bus, TOPICS, {"id": "r1", "kind": "retune", "reason": "test", "model_version": 1})
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, force=True, shadow=True, window_rows=20_000),
        keys=[TEST_KEY],
    )
    drain(trainer)
    (verdict,) = trainer.verdicts
    assert verdict.outcome == "published" and verdict.version == 3, verdict.detail
    published = load_artifact(bus.records(TOPICS.models)[-1].value or b"", keys=[TEST_KEY])
    assert published["stage"] == "shadow" and published["model"]["version"] == 3
    assert trainer.lineup.versions == (1, 3, "challenger")  # the newer shadow took the slot
    scorer = scorer_for(bus)
    scorer.load_models(timeout_s=5)
    assert scorer.models.lineup.versions == (1, 3, "challenger")


def test_publish_shadow_without_a_key_is_a_one_line_error(
    tmp_path: Path,
    artifact_body: Artifact,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("METASIGNAL_SIGNING_KEY", raising=False)
    path = tmp_path / "model.json"
    path.write_bytes(artifact(artifact_body, 2, key=None))
    argv = ["publish", str(path), "--shadow", "--unsigned", "--bootstrap", "127.0.0.1:1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "metasignal: error: --shadow signs the artifact again: a signing key is required"


def test_a_manual_rollback_to_a_retired_shadow_serves_it_as_a_champion(
    artifact_body: Artifact,
) -> None:
    from metasignal.stream.model_store import rollback_artifact

    bus = make_bus()
    publish(
        bus,
        model(artifact(artifact_body, 1)),
        model(artifact(artifact_body, 2, stage="shadow")),
        decision("retire", 1, 2),
    )
    assert rollback_artifact(bus, TOPICS, name="meta", to_version=2, keys=[TEST_KEY]) == ("meta", 3)
    scorer = scorer_for(bus)
    scorer.load_models(timeout_s=5)
    assert scorer.models.lineup.versions == (3, None, None)
    assert scorer.models.artifact is not None and "stage" not in scorer.models.artifact


def test_live_f1_and_pnl_per_role_from_joined_outcomes() -> None:
    from metasignal.stream.artifact import example_artifact
    from metasignal.stream.join import ScoredVote
    from metasignal.stream.messages import decode_shadow_evidence
    from metasignal.stream.metrics import ScorerMetrics
    from metasignal.stream.scoring import CompiledModel
    from metasignal.stream.shadow import ShadowSlot

    def compiled(version: int) -> CompiledModel:
        doc: dict[str, Any] = dict(example_artifact())
        doc["model"] = {"name": "meta", "version": version}
        doc["sizing"] = {"method": "fixed", "cap": 0.5, "step": 0.0, "payoff_ratio": 2.0}
        return CompiledModel.from_artifact(doc)

    metrics = ScorerMetrics()
    slot = ShadowSlot(options=ScorerOptions(**FAST), metrics=metrics)
    slot.sync(compiled(1), compiled(2), "challenger")
    # (label, champion decision, champion score, shadow decision, shadow size)
    rows = [(1, 1, 0.9, 1, 0.5), (0, 1, 0.8, 0, 0.0), (1, 0, 0.2, 1, 0.5), (0, 0, 0.1, 0, 0.0)]
    for i, (label, decision, score, shadow_decision, size) in enumerate(rows):
        scored = ScoredVote(
            f"e{i}", 0, ("a", "b"), np.zeros(2), score, decision, 1, 2, shadow_decision, size
        )
        slot.observe(scored, label, partition=i % 2)
    other_pair = ScoredVote("old", 0, ("a",), np.zeros(1), 0.9, 1, 1, 3, 1, 0.5)
    slot.observe(other_pair, 1, partition=0)
    slot.flush()
    value = metrics.registry.get_sample_value
    # Champion: one win (0.5 x 2), one loss (0.5); F1 2/4. Shadow: two wins, F1 1.
    assert [value("metasignal_live_pnl", {"role": r}) for r in ("champion", "shadow")] == [0.5, 2.0]
    assert [value("metasignal_live_f1", {"role": r}) for r in ("champion", "shadow")] == [0.5, 1.0]
    assert value("metasignal_shadow_outcomes_total") == 4
    # One evidence record per partition, cumulative, keyed by pair and partition.
    records = slot.evidence()
    assert [key for key, _ in records] == [b"meta@1:2:0", b"meta@1:2:1"]
    decoded = [decode_shadow_evidence(raw) for _, raw in records]
    # Cells 4 y + 2 b + c: partition 0 saw (1, 1, 1), (1, 0, 1); partition 1 (0, 1, 0), (0, 0, 0).
    assert [d["counts"] for d in decoded] == [[0, 0, 0, 0, 0, 1, 0, 1], [1, 0, 1, 0, 0, 0, 0, 0]]
    assert decoded[0]["pnl"] == [1.0, 2.0] and decoded[1]["pnl"] == [-0.5, 0.0]
    slot.committed()
    assert slot.evidence() == []  # nothing changed since the commit
    slot.observe(ScoredVote("e9", 0, ("a",), np.zeros(1), 0.9, 1, 1, 2, 1, 0.5), 1, partition=1)
    slot.flush()
    # One new outcome a moment after the last record: held back until a second has passed
    # (the default evidence_interval_s), then only the partition that changed goes out.
    assert slot.n_outcomes == 5 and slot.evidence() == [] and not slot.held()
    now = slot.clock()
    slot.clock = lambda: now + 1.0
    assert slot.held() and [k for k, _ in slot.evidence()] == [b"meta@1:2:1"]
    slot.rolled_back()  # the span is read again: its count goes with it
    assert slot.n_outcomes == 4 and slot.evidence() == []
