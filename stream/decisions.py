"""Signed decisions about the shadow slot: ``promote``, ``retire``, ``rollback``.

The trainer's sequential test on every scorer's summed evidence
(:mod:`metasignal.trainer.shadow`) reaches a verdict about the pair the ``models`` topic is
in; the trainer publishes the decision as a record signed like an artifact (HMAC-SHA256
over its canonical JSON), under its own key (:func:`decision_key`). Scorers verify the
signature before applying it, so a scorer that restarts and replays the topic ends on the
same champion and shadow.

Examples
--------
>>> key = b"k" * 32
>>> record = new_decision("promote", model="meta", champion=1, shadow=2,
...     evidence={"verdict": "better"}, request_id="r1", source="scorer",
...     decided_at="2026-01-01T00:00:00Z")
>>> raw = encode_decision(sign_decision(record, key))
>>> load_decision(raw, keys=[key])["shadow"], decision_key(record)
(2, b'meta@2:promote')
>>> load_decision(raw, keys=[b"x" * 32])
Traceback (most recent call last):
...
metasignal.stream.decisions.DecisionError: decision_bad_signature: artifact signature does not ...
>>> load_decision(encode_decision(record), keys=[key])
Traceback (most recent call last):
...
metasignal.stream.decisions.DecisionError: decision_unsigned: artifact has no signature block
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

from metasignal.stream.artifact import dumps_artifact, sign_artifact, verify_signature
from metasignal.stream.errors import ArtifactError
from metasignal.stream.messages import DECISION_KINDS, DecisionKind, ShadowDecision

DECISION_SCHEMA_VERSION = 1


class DecisionError(ValueError):
    """A decision record that is not applied: ``reason`` is a short label for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def is_decision(document: object) -> bool:
    """Whether a parsed ``models`` record is a decision (artifacts have no ``decision`` field)."""
    return isinstance(document, dict) and "decision" in document


def new_decision(
    kind: DecisionKind,
    *,
    model: str,
    champion: int,
    shadow: int,
    evidence: Mapping[str, object],
    request_id: str,
    source: str,
    decided_at: str,
) -> ShadowDecision:
    """An unsigned decision about the state ``champion`` / ``shadow`` (versions)."""
    return ShadowDecision(
        schema_version=DECISION_SCHEMA_VERSION,
        decision=kind,
        model=model,
        champion=champion,
        shadow=shadow,
        evidence=dict(evidence),
        request_id=request_id,
        source=source,
        decided_at=decided_at,
    )


def sign_decision(record: ShadowDecision, key: bytes) -> ShadowDecision:
    return cast(ShadowDecision, sign_artifact(record, key))


def encode_decision(record: Mapping[str, Any]) -> bytes:
    return dumps_artifact(record).encode()


def decision_key(record: Mapping[str, Any]) -> bytes:
    """The record's key on ``models``: one per decision, so compaction keeps them all.

    Promote and retire are about the shadow version, rollback about the champion's.
    """
    version = record["champion"] if record["decision"] == "rollback" else record["shadow"]
    return f"{record['model']}@{version}:{record['decision']}".encode()


def load_decision(source: bytes | Mapping[str, Any], *, keys: Iterable[bytes]) -> ShadowDecision:
    """Verify the signature, then the fields; :class:`DecisionError` names why not."""
    if isinstance(source, Mapping):
        document: Any = dict(source)
    else:
        try:
            document = json.loads(source)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise DecisionError("decision_invalid", f"not JSON: {str(exc)[:200]}") from None
    if not is_decision(document):
        raise DecisionError("decision_invalid", "not a decision record")
    try:
        verify_signature(document, keys)
    except ArtifactError as exc:
        text = str(exc)
        reason = "decision_unsigned" if "unsigned" in text or "no signature" in text else None
        raise DecisionError(reason or "decision_bad_signature", text) from None
    return _validated(document)


def _validated(document: dict[str, Any]) -> ShadowDecision:
    def bad(detail: str) -> DecisionError:
        return DecisionError("decision_invalid", detail)

    if document.get("schema_version") != DECISION_SCHEMA_VERSION:
        raise bad(
            f"schema_version {document.get('schema_version')!r} is not {DECISION_SCHEMA_VERSION}"
        )
    if document["decision"] not in DECISION_KINDS:
        raise bad(f"decision must be one of {', '.join(DECISION_KINDS)}")
    for name in ("model", "request_id", "source", "decided_at"):
        if type(document.get(name)) is not str:
            raise bad(f"{name} must be a string")
    for name in ("champion", "shadow"):
        value = document.get(name)
        if type(value) is not int or value < 1:
            raise bad(f"{name} must be a positive version")
    if type(document.get("evidence")) is not dict:
        raise bad("evidence must be an object")
    return cast(ShadowDecision, document)
