"""Forcing a candidate past the champion gate is an operator's act (issue 11 §4).

Measured before: the trainer honoured ``force`` from any control message, so anyone who
could write ``control`` got a model of their choosing signed. Now only a request signed with
the signing key (``metasignal control retrain --force``) forces; a bare or tampered ``force``
is ignored and counted, and the gate decides.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import Artifact, load_artifact
from metasignal.stream.topics import Topics
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.cli import main
from metasignal.trainer.control import encode, operator_request, sign_force
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import memory_bus, publish_model, send_training_rows, versioned

TOPICS = Topics(prefix="force.")


def gate_refuses(
    committee: Committee, artifact_body: Artifact, *, shuffle: bool = True
) -> MemoryBus:
    """A champion and training rows; with ``shuffle`` a retrained candidate is worse (its
    fit rows' labels are shuffled)."""
    bus = memory_bus(TOPICS, partitions=1)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    labels = committee.labels.copy()
    n_fit = int(len(labels) * 0.7)
    if shuffle:
        labels[:n_fit] = np.random.default_rng(0).permutation(labels[:n_fit])
    send_training_rows(bus, TOPICS, committee, labels)
    return bus


def answer(
    bus: MemoryBus, request: dict[str, Any], *, gate_tolerance: float = 0.0
) -> TrainerService:
    producer = bus.producer()
    producer.send(TOPICS.control, key=b"meta", value=encode(request))
    producer.flush()
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(
            topics=TOPICS,
            strategy="optimal_threshold",
            window_rows=20_000,
            gate_tolerance=gate_tolerance,
        ),
        keys=[TEST_KEY],
    )
    for _ in range(20):
        if trainer.step():
            break
    return trainer


def published_versions(bus: MemoryBus) -> list[int]:
    return [
        load_artifact(r.value or b"", keys=[TEST_KEY])["model"]["version"]
        for r in bus.records(TOPICS.models)
    ]


def refused_force(trainer: TrainerService, reason: str) -> float:
    value = trainer.metrics.registry.get_sample_value(
        "metasignal_trainer_force_refused_total", {"reason": reason}
    )
    return 0.0 if value is None else value


def now_ms() -> int:
    return int(time.time() * 1000)


def retrain_request() -> dict[str, Any]:
    return operator_request("retrain", reason="test", model_version=1, now_ms=now_ms())


def test_unsigned_force_is_ignored_and_counted(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = gate_refuses(committee, artifact_body)
    trainer = answer(bus, {**retrain_request(), "force": True})
    assert [v.outcome for v in trainer.verdicts] == ["refused"]
    assert refused_force(trainer, "unsigned") == 1
    assert published_versions(bus) == [1]


def test_tampered_signed_force_is_ignored(committee: Committee, artifact_body: Artifact) -> None:
    bus = gate_refuses(committee, artifact_body)
    signed = sign_force(retrain_request(), TEST_KEY, now_ms=now_ms())
    trainer = answer(bus, {**signed, "reason": "changed after signing"})
    assert [v.outcome for v in trainer.verdicts] == ["refused"]
    assert refused_force(trainer, "bad_signature") == 1
    assert published_versions(bus) == [1]


def test_force_signed_by_another_key_is_ignored(
    committee: Committee, artifact_body: Artifact
) -> None:
    bus = gate_refuses(committee, artifact_body)
    signed = sign_force(retrain_request(), b"someone-elses-key-0123456789abcdef", now_ms=now_ms())
    trainer = answer(bus, signed)
    assert [v.outcome for v in trainer.verdicts] == ["refused"]
    assert refused_force(trainer, "bad_signature") == 1


def test_operator_signed_force_passes_the_gate(
    committee: Committee, artifact_body: Artifact
) -> None:
    # Force skips the champion comparison, never the skill gate (issue 10): so the candidate
    # here is skilled (clean labels) and the comparison is made impossible to pass (it must
    # beat the champion by a whole F1 point).
    bus = gate_refuses(committee, artifact_body, shuffle=False)
    request = sign_force(retrain_request(), TEST_KEY, now_ms=now_ms())
    trainer = answer(bus, request, gate_tolerance=-1.0)
    [verdict] = trainer.verdicts
    assert verdict.outcome == "published", verdict.detail
    assert verdict.gate is not None and verdict.gate["forced"] is True
    # The gate's own figures say the comparison failed: forced, not earned.
    assert verdict.gate["candidate"] < verdict.gate["champion"] - verdict.gate["tolerance"]
    assert published_versions(bus) == [1, 2]
    assert refused_force(trainer, "unsigned") == 0


def test_control_force_without_a_key_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("METASIGNAL_SIGNING_KEY", raising=False)
    code = main(["control", "retrain", "--force", "--bootstrap", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "--force signs the request" in err


def test_signed_request_decodes_as_an_ordinary_request() -> None:
    from metasignal.stream.messages import decode_control_request

    signed = sign_force(retrain_request(), TEST_KEY, now_ms=now_ms())
    decoded = decode_control_request(json.dumps(signed).encode())
    assert decoded["kind"] == "retrain" and decoded["source"] == "operator"
