"""The trainer judges the shadow: one sequential test on every scorer's summed evidence.

Scorer replicas only count (:mod:`metasignal.stream.shadow`): each publishes its
outcomes partitions' cumulative paired counts for the current champion/shadow pair on
the compacted ``evidence`` topic. :class:`ShadowJudge` sums the latest counts of every
partition for the pair the ``models`` topic is in and runs ONE
:class:`~metasignal.stream.drift.promotion.ShadowComparison` on the sum, looking where
the summed count reaches the look schedule (:meth:`ShadowComparison.look_at`). Two
replicas never run two tests (twice the false promotions, each on half the data), and a
scorer's claim is never the reason for a decision: the verdict and the evidence in the
signed record are the trainer's, computed from the counts.

* a ``challenger``: incumbent the champion, challenger the shadow; ``better``:
  ``promote`` it, ``not_better``: ``retire`` it;
* a ``predecessor`` (a promoted champion's, for its first ``rollback_outcomes``
  summed outcomes): incumbent the new champion, challenger the predecessor;
  ``better``: ``rollback`` (once: the slot empties with it), ``not_better``: ``retire``
  the predecessor (the promotion stands).

Once a pair is over (decided; or its shadow or champion replaced, which versions that only
go up never undo), nobody reads its counts again: :func:`finished_keys` names its keys on
the ``evidence`` topic, which the trainer tombstones (with the decision, in its
transaction), so compaction and every :class:`~metasignal.stream.evidence.EvidenceLog`
forget them.

A ``promote``/``retire``/``rollback`` request on ``control`` (an operator's, or an older
scorer's) is answered from the same judgement: published when the trainer's own verdict
supports it, refused otherwise, whatever the request's ``stats`` say.

Examples
--------
>>> import numpy as np
>>> from metasignal.stream.artifact import example_artifact
>>> from metasignal.stream.evidence import SummedEvidence
>>> from metasignal.stream.lineup import Lineup
>>> lineup = Lineup(model_name="meta")
>>> champion, shadow = example_artifact(), example_artifact()
>>> shadow["model"]["version"], shadow["stage"] = 2, "shadow"
>>> _ = lineup.offer_artifact(champion), lineup.offer_artifact(shadow)
>>> judge = ShadowJudge(alpha=0.05, margin=0.0, min_outcomes=500, max_outcomes=2000,
...                     look_every=500, rollback_outcomes=1000, min_improvement=0.03)
>>> # 2,000 outcomes, 100 positives: the champion catches 20, the shadow 80.
>>> counts = np.array([1880, 10, 10, 0, 15, 65, 5, 15])
>>> judgement = judge.judge(lineup, SummedEvidence(counts, None, [0, 1]))
>>> judgement.kind, judgement.evidence["verdict"], judgement.evidence["n_outcomes"]
('promote', 'better', 2000)
>>> request = {"id": "r1", "kind": "retire", "model": "meta", "model_version": 1,
...     "shadow_version": 2, "reason": "", "source": "x", "stats": {"verdict": "not_better"}}
>>> answer_shadow_request(request, lineup, judgement, key=b"k" * 32)[:2]
('refused', 'refused: retire is not what the summed evidence supports (promote, 2,000 outcomes)')
>>> outcome, detail, record = answer_shadow_request(
...     {**request, "kind": "promote"}, lineup, judgement, key=b"k" * 32)
>>> outcome, record["decision"], record["champion"], record["shadow"]
('published', 'promote', 1, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metasignal.stream.decisions import new_decision, sign_decision
from metasignal.stream.drift.promotion import ShadowComparison
from metasignal.stream.evidence import EvidenceLog, Pair, SummedEvidence
from metasignal.stream.lineup import Lineup, Role
from metasignal.stream.messages import DecisionKind, ShadowDecision
from metasignal.stream.shadow import role_f1

# What a verdict decides, by the shadow's role.
DECIDES: dict[tuple[Role, str], DecisionKind] = {
    ("challenger", "better"): "promote",
    ("challenger", "not_better"): "retire",
    ("predecessor", "better"): "rollback",
    ("predecessor", "not_better"): "retire",
}


@dataclass(frozen=True)
class Judgement:
    """The decision the summed evidence supports, with the figures it rests on."""

    kind: DecisionKind
    champion: int
    shadow: int
    role: Role
    evidence: dict[str, object]

    @property
    def request_id(self) -> str:
        """One id per pair and decision: a trainer that restarts decides it once."""
        return f"evidence:{self.champion}:{self.shadow}:{self.kind}"

    @property
    def reason(self) -> str:
        evidence = self.evidence
        verdict = str(evidence["verdict"]).replace("_", " ")
        live = evidence["live_f1"]
        assert isinstance(live, dict)
        return (
            f"{self.role} v{self.shadow} {verdict} than champion v{self.champion} over "
            f"{evidence['n_outcomes']:,} joined outcomes summed over partitions "
            f"{evidence['partitions']} (live F1 {_fmt(live['shadow'])} vs {_fmt(live['champion'])})"
        )


class ShadowJudge:
    """Runs the sequential test of the current pair on summed evidence (module docstring).

    Parameters
    ----------
    alpha, margin, min_outcomes, max_outcomes, look_every, min_improvement
        The challenger's test (:class:`ShadowComparison`); ``min_improvement`` also
        bounds the predecessor's watch (``None``: futility only at the horizon).
    rollback_outcomes
        The predecessor's watch: its horizon (first look and spacing no larger).
    """

    def __init__(
        self,
        *,
        alpha: float,
        margin: float,
        min_outcomes: int,
        max_outcomes: int,
        look_every: int,
        rollback_outcomes: int,
        min_improvement: float | None,
    ) -> None:
        self.alpha, self.margin, self.min_improvement = alpha, margin, min_improvement
        self.min_outcomes, self.max_outcomes = min_outcomes, max_outcomes
        self.look_every, self.rollback_outcomes = look_every, rollback_outcomes
        self.pair: tuple[int, int, Role] | None = None
        self.comparison: ShadowComparison | None = None
        self.n_outcomes = 0

    def _comparison(self, role: Role) -> ShadowComparison:
        if role == "challenger":
            return ShadowComparison(
                alpha=self.alpha,
                margin=self.margin,
                min_outcomes=self.min_outcomes,
                max_outcomes=self.max_outcomes,
                look_every=self.look_every,
                min_improvement=self.min_improvement,
            )
        window = self.rollback_outcomes
        return ShadowComparison(
            alpha=self.alpha,
            min_outcomes=min(self.min_outcomes, window),
            max_outcomes=window,
            look_every=min(self.look_every, window),
            min_improvement=self.min_improvement,
        )

    def judge(self, lineup: Lineup, summed: SummedEvidence) -> Judgement | None:
        """The decision ``summed`` (every partition's counts for the lineup's pair)
        supports, once the test reaches a verdict; ``None`` meanwhile or without a shadow."""
        champion, shadow, role = lineup.versions
        if champion is None or shadow is None or role is None:
            self.pair, self.comparison, self.n_outcomes = None, None, 0
            return None
        if self.pair != (champion, shadow, role) or self.comparison is None:
            self.pair, self.comparison = (champion, shadow, role), self._comparison(role)
        comparison = self.comparison
        verdict = comparison.look_at(summed.counts)
        self.n_outcomes = int(summed.counts.sum())
        if verdict is None:
            return None
        champion_f1, shadow_f1 = role_f1(summed.counts)
        evidence: dict[str, object] = {
            **comparison.evidence(),
            "role": role,
            "partitions": summed.partitions,
            "summed_outcomes": self.n_outcomes,
            "live_f1": {"champion": champion_f1, "shadow": shadow_f1},
        }
        if summed.pnl is not None:
            evidence["live_pnl"] = {
                "champion": float(summed.pnl[0]),
                "shadow": float(summed.pnl[1]),
            }
        return Judgement(
            kind=DECIDES[(role, verdict)],
            champion=champion,
            shadow=shadow,
            role=role,
            evidence=_json_ready(evidence),
        )


def pair_over(lineup: Lineup, pair: Pair) -> bool:
    """Whether ``pair``'s comparison is over for ``lineup`` (module docstring): another
    model's pairs are not; the current pair is not; a pair of versions the lineup has not
    seen yet is not (a scorer that read a new shadow first).

    >>> from metasignal.stream.artifact import example_artifact
    >>> lineup = Lineup(model_name="meta")
    >>> _ = lineup.offer_artifact(example_artifact())  # champion v1, no shadow
    >>> [pair_over(lineup, p) for p in [("meta", 1, 1), ("meta", 1, 2), ("other", 0, 1)]]
    [True, False, False]
    """
    name, champion, shadow = pair
    if name != lineup.model_name or (champion, shadow) == lineup.versions[:2]:
        return False
    return max(champion, shadow) <= lineup.highest


def finished_keys(log: EvidenceLog, lineup: Lineup, judgement: Judgement | None) -> list[bytes]:
    """The ``evidence`` keys to tombstone: those of the pair ``judgement`` decides (if any)
    and of every pair already over for ``lineup``."""
    decided = None
    if judgement is not None:
        decided = (lineup.model_name, judgement.champion, judgement.shadow)
    return log.keys_where(lambda pair: pair == decided or pair_over(lineup, pair))


def sign_judgement(
    judgement: Judgement,
    lineup: Lineup,
    *,
    key: bytes,
    request_id: str | None = None,
    source: str = "trainer",
    now: datetime | None = None,
) -> ShadowDecision:
    """The signed decision record of ``judgement`` (for the state it was judged in)."""
    decided_at = (now or datetime.now(tz=UTC)).isoformat(timespec="seconds")
    record = new_decision(
        judgement.kind,
        model=lineup.model_name,
        champion=judgement.champion,
        shadow=judgement.shadow,
        evidence={**judgement.evidence, "reason": judgement.reason},
        request_id=request_id or judgement.request_id,
        source=source,
        decided_at=decided_at.replace("+00:00", "Z"),
    )
    return sign_decision(record, key)


def answer_shadow_request(
    request: Mapping[str, Any],
    lineup: Lineup,
    judgement: Judgement | None,
    *,
    key: bytes,
    now: datetime | None = None,
) -> tuple[str, str, ShadowDecision | None]:
    """``(outcome, detail, signed record or None)`` for a promote/retire/rollback request:
    ``published`` when the trainer's own ``judgement`` of the current pair is that decision,
    ``skipped`` (stale: about another state) or ``refused``. The request's ``stats`` are
    never read."""
    kind = request["kind"]
    champion, shadow, _ = lineup.versions
    asked = (request.get("model_version"), request.get("shadow_version"))
    if shadow is None or asked != (champion, shadow):
        return (
            "skipped",
            f"stale: {kind} of champion v{asked[0]} and shadow v{asked[1]}; {lineup.describe()}",
            None,
        )
    if judgement is None or judgement.kind != kind:
        found = (
            "undecided"
            if judgement is None
            else f"{judgement.kind}, {judgement.evidence['n_outcomes']:,} outcomes"
        )
        detail = f"refused: {kind} is not what the summed evidence supports ({found})"
        return "refused", detail, None
    record = sign_judgement(
        judgement,
        lineup,
        key=key,
        request_id=str(request["id"]),
        source=str(request.get("source", "")),
        now=now,
    )
    detail = f"{kind}: champion v{champion}, {judgement.role} v{shadow} ({judgement.reason})"
    return "published", detail, record


def _fmt(value: object) -> str:
    return "undefined" if not isinstance(value, float) else f"{value:.4f}"


def _json_ready(evidence: dict[str, object]) -> dict[str, object]:
    """NaN is not JSON: an undefined F1 travels as null."""
    out: dict[str, object] = {}
    for key, value in evidence.items():
        if isinstance(value, dict):
            out[key] = _json_ready(value)
        elif isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        else:
            out[key] = value
    return out
