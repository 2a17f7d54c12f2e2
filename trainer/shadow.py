"""The trainer's answer to a shadow verdict: a signed ``promote``/``retire``/``rollback``.

A scorer's live comparison (:mod:`metasignal.stream.shadow`) asks; the trainer checks
that the request is about the state the ``models`` topic is in (the champion and
shadow versions, the shadow's role) and that its verdict is the one the decision
needs, then signs the decision record (:mod:`metasignal.stream.decisions`). Several
scorer replicas may ask for the same decision: the first is published, the others
are stale by then and skipped.

Examples
--------
>>> from metasignal.stream.artifact import example_artifact
>>> from metasignal.stream.lineup import Lineup
>>> lineup = Lineup(model_name="meta")
>>> champion, shadow = example_artifact(), example_artifact()
>>> shadow["model"]["version"], shadow["stage"] = 2, "shadow"
>>> _ = lineup.offer_artifact(champion), lineup.offer_artifact(shadow)
>>> request = {"id": "r1", "kind": "promote", "model": "meta", "model_version": 1,
...     "shadow_version": 2, "reason": "better", "source": "scorer", "stats": {"verdict": "better"}}
>>> outcome, detail, record = answer_shadow_request(request, lineup, key=b"k" * 32)
>>> outcome, record["decision"], record["champion"], record["shadow"]
('published', 'promote', 1, 2)
>>> answer_shadow_request({**request, "shadow_version": 3}, lineup, key=b"k" * 32)[:2]
('skipped', 'stale: promote of champion v1 and shadow v3; serving champion v1, challenger v2')
>>> answer_shadow_request({**request, "stats": {}}, lineup, key=b"k" * 32)[:2]
('refused', 'refused: promote needs the verdict better, the request has None')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from metasignal.stream.decisions import new_decision, sign_decision
from metasignal.stream.lineup import Lineup
from metasignal.stream.messages import DecisionKind, ShadowDecision

# The verdict each decision needs (ShadowComparison's: challenger vs incumbent).
NEEDED_VERDICT = {"promote": "better", "rollback": "better", "retire": "not_better"}
# The role the shadow must have; retire applies to either.
NEEDED_ROLE = {"promote": "challenger", "rollback": "predecessor"}


def answer_shadow_request(
    request: Mapping[str, Any], lineup: Lineup, *, key: bytes, now: datetime | None = None
) -> tuple[str, str, ShadowDecision | None]:
    """``(outcome, detail, signed record or None)``; outcome ``published``, ``skipped``
    (stale: about another state) or ``refused`` (the verdict does not support it)."""
    kind = cast(DecisionKind, request["kind"])
    champion, shadow, role = lineup.versions
    asked = (request.get("model_version"), request.get("shadow_version"))
    if shadow is None or asked != (champion, shadow) or role != NEEDED_ROLE.get(kind, role):
        return (
            "skipped",
            f"stale: {kind} of champion v{asked[0]} and shadow v{asked[1]}; {lineup.describe()}",
            None,
        )
    stats = request.get("stats") or {}
    verdict = stats.get("verdict")
    if verdict != NEEDED_VERDICT[kind]:
        detail = f"refused: {kind} needs the verdict {NEEDED_VERDICT[kind]}, the request has "
        return "refused", detail + repr(verdict), None
    decided_at = (now or datetime.now(tz=UTC)).isoformat(timespec="seconds")
    assert champion is not None
    record = new_decision(
        kind,
        model=lineup.model_name,
        champion=champion,
        shadow=shadow,
        evidence={**stats, "reason": str(request.get("reason", ""))},
        request_id=str(request["id"]),
        source=str(request.get("source", "")),
        decided_at=decided_at.replace("+00:00", "Z"),
    )
    detail = f"{kind}: champion v{champion}, {role} v{shadow} ({request.get('reason', '')})"
    return "published", detail, sign_decision(record, key)
