"""What a gate-passing candidate becomes on ``models``: versioned, staged, signed.

Versions only go up, shadows included (:func:`next_version`). With ``--shadow`` the
artifact is staged as a shadow, scored beside the champion until a signed decision;
otherwise it serves. The artifact records the request it answers, the gate's evidence
and its metrics on the gate rows, and is signed with the first signing key;
:func:`artifact_message` and :func:`decision_message` are its records on ``models``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from metasignal.stream.artifact import Artifact, dumps_artifact, sign_artifact
from metasignal.stream.decisions import decision_key, encode_decision
from metasignal.stream.lineup import Lineup
from metasignal.stream.messages import ControlRequest, ShadowDecision
from metasignal.stream.topics import model_key
from metasignal.trainer.challenge import Candidate
from metasignal.trainer.control_position import Message
from metasignal.trainer.fit import holdout_metrics

__all__ = [
    "REQUEST_FIELDS",
    "artifact_message",
    "decision_message",
    "next_version",
    "publishable_artifact",
]

REQUEST_FIELDS = ("id", "kind", "reason", "model_version", "evidence", "prior")
"""The request's fields an artifact records (``artifact["request"]``)."""


def next_version(lineup: Lineup, champion: Artifact) -> int:
    """One above every version seen (a shadow may be newer than the champion)."""
    return max(lineup.highest, int(champion["model"]["version"])) + 1


def _utc_now() -> str:
    """Now, to the second, as ``2026-01-31T12:00:00Z``."""
    return datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def publishable_artifact(
    candidate: Candidate,
    request: ControlRequest,
    *,
    model_name: str,
    version: int,
    shadow: bool,
    key: bytes,
) -> Artifact:
    """The candidate as published: named, versioned, staged, with its evidence, signed."""
    body = candidate.body
    body["model"] = {"name": model_name, "version": version}
    if shadow:
        body["stage"] = "shadow"  # scored beside the champion until a decision
    else:
        body.pop("stage", None)  # a candidate built from a promoted shadow serves
    body["created_at"] = _utc_now()
    body["request"] = {k: request[k] for k in REQUEST_FIELDS if k in request}  # type: ignore[literal-required]
    body["gate"] = candidate.gate
    metrics = dict(body.get("metrics") or {})
    gate = candidate.gate_rows
    metrics["gate"] = holdout_metrics(gate.labels, candidate.scores, candidate.threshold)
    body["metrics"] = metrics
    body.pop("signature", None)
    return sign_artifact(body, key)


def artifact_message(artifact: Artifact) -> Message:
    """The artifact's ``models`` record: keyed ``name@version``, pretty JSON."""
    key = model_key(artifact["model"]["name"], artifact["model"]["version"])
    return key, dumps_artifact(artifact).encode()


def decision_message(decision: ShadowDecision) -> Message:
    """A signed decision's ``models`` record: one key per decision (compaction keeps all)."""
    return decision_key(decision), encode_decision(decision)
