"""The shadow slot at work in a scorer: scored beside the champion, judged on outcomes.

The shadow (:class:`metasignal.stream.lineup.Lineup`) scores every vote the champion
scores, in one extra vectorised predict per batch; it emits no signal and trades
nothing. Its decisions are remembered in the join cache next to the champion's, and
each joined outcome of the current pair feeds a
:class:`~metasignal.stream.drift.promotion.ShadowComparison`:

* a ``challenger``: incumbent the champion, challenger the shadow; ``better``: ask
  the trainer to ``promote`` it, ``not_better``: to ``retire`` it;
* a ``predecessor`` (a promoted champion's, for its first ``rollback_outcomes``
  outcomes): incumbent the new champion, challenger the predecessor; ``better``:
  ask for a ``rollback`` (once: the slot empties with it), ``not_better``: ``retire``
  the predecessor (the promotion stands).

The verdict goes to the trainer as a control request carrying the comparison's
evidence; the trainer checks it against the state and publishes the signed decision,
which every scorer applies. The comparison starts afresh whenever the pair changes,
and after a restart (the join cache is in memory).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass

import numpy as np

from metasignal.stream.drift.promotion import ShadowComparison
from metasignal.stream.join import ScoredVote
from metasignal.stream.lineup import Role
from metasignal.stream.messages import ControlRequest, DecisionKind, vote_matrix
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.options import ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.step import ScoredBatch

log = logging.getLogger("metasignal.scorer")

# What a verdict asks for, by the shadow's role.
ASKS: dict[tuple[Role, str], DecisionKind] = {
    ("challenger", "better"): "promote",
    ("challenger", "not_better"): "retire",
    ("predecessor", "better"): "rollback",
    ("predecessor", "not_better"): "retire",
}


@dataclass(frozen=True, slots=True)
class ShadowScores:
    """The shadow's decisions for a scored batch (-1 where it could not score a vote) and
    its position sizes (0 where it does not trade)."""

    version: int
    decisions: np.ndarray
    sizes: np.ndarray


def f1(true_positives: int, false_positives: int, false_negatives: int) -> float:
    """F1 from counts; NaN when there is neither a trade nor a positive.

    >>> f1(3, 1, 2), f1(0, 0, 0)
    (0.6666666666666666, nan)
    """
    denominator = 2 * true_positives + false_positives + false_negatives
    return math.nan if denominator == 0 else 2 * true_positives / denominator


class ShadowSlot:
    """Scores the shadow, feeds its comparison, turns its verdict into a request."""

    def __init__(self, *, options: ScorerOptions, metrics: ScorerMetrics) -> None:
        self.options = options
        self.metrics = metrics
        self.champion: CompiledModel | None = None
        self.model: CompiledModel | None = None
        self.role: Role | None = None
        self.comparison: ShadowComparison | None = None
        self.requests: list[ControlRequest] = []
        self._asked = False
        self._since_asked = 0
        self._labels: list[int] = []
        self._incumbent: list[int] = []
        self._challenger: list[int] = []
        self._scores: list[float] = []  # the champion's, for its sizes
        self._shadow_sizes: list[float] = []
        self._last_ts: int | None = None
        self._counts = np.zeros((2, 3), dtype=np.int64)  # (champion, shadow) x (tp, fp, fn)
        self._pnl = np.zeros(2)  # (champion, shadow), when a payoff ratio is known

    @property
    def pair(self) -> tuple[int | None, int | None, Role | None]:
        """``(champion version, shadow version, role)`` being compared."""
        champion = None if self.champion is None else self.champion.version
        shadow = None if self.model is None else self.model.version
        return champion, shadow, self.role

    def describe(self) -> str | None:
        """One phrase for the status line: role, version, progress; ``None``: empty slot.

        >>> from metasignal.stream.artifact import example_artifact
        >>> slot = ShadowSlot(options=ScorerOptions(), metrics=ScorerMetrics())
        >>> model = CompiledModel.from_artifact(example_artifact())
        >>> slot.describe() is None
        True
        >>> slot.sync(model, model, "challenger"); slot.describe()
        'challenger v1, 0 of at most 50,000 outcomes compared'
        """
        comparison, model = self.comparison, self.model
        if model is None or comparison is None:
            return None
        if self._asked:
            return f"{self.role} v{model.version}, {self.requests[-1]['kind']} requested"
        return (
            f"{self.role} v{model.version}, {comparison.n_outcomes:,} of at most "
            f"{comparison.max_outcomes:,} outcomes compared"
        )

    def sync(
        self, champion: CompiledModel | None, shadow: CompiledModel | None, role: Role | None
    ) -> None:
        """The lineup changed: a new pair starts a fresh comparison."""
        before = self.pair
        self.champion, self.model, self.role = champion, shadow, role
        if self.pair == before:
            return
        self.metrics.shadow_info.clear()
        self._clear()
        self._counts[:] = 0
        self._pnl[:] = 0.0
        self._asked = False
        self._since_asked = 0
        self.comparison = None
        for gauge_role in ("champion", "shadow"):
            self.metrics.live_f1.labels(role=gauge_role).set(math.nan)
            self.metrics.live_pnl.labels(role=gauge_role).set(math.nan)
        if shadow is None or role is None:
            return
        self.metrics.shadow_info.labels(version=str(shadow.version), role=role).set(1)
        options = self.options
        if role == "challenger":
            self.comparison = ShadowComparison(
                alpha=options.shadow_alpha,
                margin=options.shadow_margin,
                min_outcomes=options.shadow_min_outcomes,
                max_outcomes=options.shadow_max_outcomes,
                look_every=options.shadow_look_every,
                min_improvement=options.shadow_min_improvement,
            )
        else:
            window = options.rollback_outcomes
            self.comparison = ShadowComparison(
                alpha=options.shadow_alpha,
                min_outcomes=min(options.shadow_min_outcomes, window),
                max_outcomes=window,
                look_every=min(options.shadow_look_every, window),
                min_improvement=options.shadow_min_improvement,
            )
        log.info(
            "shadow: comparing %s v%d with champion v%d on joined outcomes",
            role,
            shadow.version,
            self.pair[0],
        )

    def score(self, batch: ScoredBatch, champion: CompiledModel) -> ShadowScores | None:
        """The shadow's decisions for the batch's valid votes (stale votes: no trade)."""
        model = self.model
        if model is None or not batch.good or self.comparison is None:
            return None
        if model.members == champion.members:
            matrix = batch.matrix
            unusable = np.zeros(len(batch.good), dtype=bool)
        else:
            matrix, errors = vote_matrix(
                [vote for _, vote in batch.good],
                model.members,
                reject_unknown=False,
                reject_missing=False,
            )
            unusable = np.array([error is not None for error in errors], dtype=bool)
        scores = model.predict_proba(matrix)
        decisions, sizes = model.decide(scores), model.size(scores)
        stale = batch.stale if batch.stale is not None else False
        if batch.stale is not None or unusable.any():
            # Stale votes never trade, the champion's included; unusable ones are not compared.
            decisions = np.where(unusable, -1, np.where(stale, 0, decisions)).astype(np.int8)
            sizes = np.where(unusable | stale, 0.0, sizes)
        return ShadowScores(version=model.version, decisions=decisions, sizes=sizes)

    def observe(self, scored: ScoredVote, label: int) -> None:
        """One joined outcome; counted when both decisions were made by the current pair."""
        champion, shadow, _ = self.pair
        if (
            self.comparison is None
            or scored.shadow_decision < 0
            or scored.model_version != champion
            or scored.shadow_version != shadow
        ):
            return
        self._labels.append(label)
        self._incumbent.append(scored.decision)
        self._challenger.append(scored.shadow_decision)
        self._scores.append(scored.score)
        self._shadow_sizes.append(scored.shadow_size)
        self._last_ts = scored.ts_ms

    def _clear(self) -> None:
        self._labels, self._incumbent, self._challenger = [], [], []
        self._scores, self._shadow_sizes = [], []

    @property
    def payoff_ratio(self) -> float | None:
        """Mean win over mean loss of a trade, from the champion's artifact (else the
        shadow's): one yardstick for both PnL figures; ``None`` without a payoff."""
        for model in (self.champion, self.model):
            if model is not None and model.sizing.payoff_ratio is not None:
                return float(model.sizing.payoff_ratio)
        return None

    def flush(self) -> list[ControlRequest]:
        """Feed the outcomes gathered since the last call; a verdict becomes one request.

        Until the decision comes back, the request is sent again every ``shadow_min_outcomes``
        joined outcomes (the same id: the trainer answers it once), in case it was lost with a
        rolled-back batch.
        """
        comparison = self.comparison
        if comparison is None or not self._labels:
            return []
        if self._asked:
            self._since_asked += len(self._labels)
            self._clear()
            if self._since_asked < self.options.shadow_min_outcomes:
                return []
            self._since_asked = 0
            log.info("shadow: no decision yet, asking again (%s)", self.requests[-1]["kind"])
            return [self.requests[-1]]
        labels = np.array(self._labels, dtype=np.int8)
        incumbent = np.array(self._incumbent, dtype=np.int8)
        challenger = np.array(self._challenger, dtype=np.int8)
        scores, shadow_sizes = np.array(self._scores), np.array(self._shadow_sizes)
        self._clear()
        self._count(labels, incumbent, challenger)
        self._gain(labels, incumbent, scores, shadow_sizes)
        verdict = comparison.update(labels, incumbent, challenger)
        if verdict is None:
            return []
        self._asked = True
        return [self._request(verdict, comparison)]

    def _count(self, labels: np.ndarray, incumbent: np.ndarray, challenger: np.ndarray) -> None:
        self.metrics.shadow_outcomes.inc(len(labels))
        positive = labels == 1
        for row, decisions in enumerate((incumbent, challenger)):
            traded = decisions == 1
            self._counts[row] += (
                int(np.sum(traded & positive)),
                int(np.sum(traded & ~positive)),
                int(np.sum(~traded & positive)),
            )
        # The predecessor is the shadow in both roles' gauges: "shadow" is the slot.
        for role, counts in zip(("champion", "shadow"), self._counts.tolist(), strict=True):
            self.metrics.live_f1.labels(role=role).set(f1(*counts))

    def _gain(
        self, labels: np.ndarray, incumbent: np.ndarray, scores: np.ndarray, sizes: np.ndarray
    ) -> None:
        """PnL per role: a trade of size s wins ``payoff_ratio * s`` or loses ``s``."""
        ratio, champion = self.payoff_ratio, self.champion
        if ratio is None or champion is None:
            return
        outcome = np.where(labels == 1, ratio, -1.0)
        champion_sizes = np.where(incumbent == 1, champion.size(scores), 0.0)
        self._pnl += (float(champion_sizes @ outcome), float(sizes @ outcome))
        for role, pnl in zip(("champion", "shadow"), self._pnl.tolist(), strict=True):
            self.metrics.live_pnl.labels(role=role).set(pnl)

    def _request(self, verdict: str, comparison: ShadowComparison) -> ControlRequest:
        champion, shadow = self.champion, self.model
        assert champion is not None and shadow is not None and self.role is not None
        kind = ASKS[(self.role, verdict)]
        champion_f1, shadow_f1 = (f1(*counts) for counts in self._counts.tolist())
        evidence: dict[str, object] = {
            **comparison.evidence(),
            "verdict": verdict,
            "role": self.role,
            "live_f1": {"champion": champion_f1, "shadow": shadow_f1},
        }
        if self.payoff_ratio is not None:
            champion_pnl, shadow_pnl = self._pnl.tolist()
            evidence["live_pnl"] = {"champion": champion_pnl, "shadow": shadow_pnl}
        reason = (
            f"{self.role} v{shadow.version} {verdict.replace('_', ' ')} than champion "
            f"v{champion.version} over {comparison.n_outcomes} joined outcomes "
            f"(live F1 {shadow_f1:.4f} vs {champion_f1:.4f})"
        )
        request = ControlRequest(
            id=uuid.uuid4().hex,
            kind=kind,
            reason=reason,
            model=champion.name,
            model_version=champion.version,
            since_ts=None,
            at_event_ts=self._last_ts,
            at=int(time.time() * 1000),
            source=self.options.group_id,
            stats=_json_ready(evidence),
            evidence="outcomes",
            shadow_version=shadow.version,
        )
        self.metrics.shadow_requests.labels(kind=kind).inc()
        self.requests.append(request)
        (log.warning if kind == "rollback" else log.info)(
            "shadow: requesting %s (%s)", kind, reason
        )
        return request


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
