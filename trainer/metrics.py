"""The one metrics engine: confusion counts and threshold objectives from sorted scores.

Every number the trainer reports about a decision rule ``trade iff score >= t``
(precision, recall, F-beta, profit from a constant gain/cost or from a payoff
column) is computed here, for one threshold or for many at once. The threshold
search (:mod:`metasignal.trainer.thresholds`), the walk-forward grading
(:class:`metasignal.trainer.objective.Objective`), the skill gate and the report
all call these functions, so a formula can only be wrong in one place.

Counts are cumulative sums over the scores sorted once (O(n log n)); a
threshold between two scores admits the same events as the next score above.

Examples
--------
>>> import numpy as np
>>> y = np.array([1, 0, 1, 0])
>>> s = np.array([0.9, 0.8, 0.3, 0.1])
>>> c = counts_at(y, s, np.array([0.5, 0.3]))
>>> c.tp.tolist(), c.fp.tolist()
([1, 2], [1, 1])
>>> values, allowed = objective_values(c, MetricSpec(metric="f1"))
>>> values.round(3).tolist()
[0.5, 0.8]
>>> payoff = np.array([2.0, -1.0, 0.5, -3.0])
>>> objective_values(counts_at(y, s, np.array([0.8]), payoff), MetricSpec("profit"))[0].tolist()
[1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RTOL",
    "Counts",
    "MetricSpec",
    "counts_at",
    "decision_metrics",
    "objective_values",
    "sweep",
]

# Mathematically equal objectives can differ in the last few ulps depending on how they
# were computed; constraints and ties must not depend on that.
RTOL: Final = 1e-12

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class MetricSpec:
    """A threshold metric and its parameters (``profit`` uses ``gain``/``cost`` without payoff)."""

    metric: str = "f1"
    beta: float = 1.0
    min_recall: float = 0.0
    min_precision: float = 0.0
    gain: float = 1.0
    cost: float = 1.0


@dataclass(frozen=True)
class Counts:
    """Confusion counts (and traded payoff) at each threshold of ``thresholds``."""

    thresholds: Floats
    tp: NDArray[Any]  # integer counts, or weighted (bootstrap) counts
    fp: NDArray[Any]
    n_pos: float
    n: float
    payoff: Floats | None = None

    @property
    def precision(self) -> Floats:
        traded = self.tp + self.fp
        return np.where(traded > 0, self.tp / np.maximum(traded, 1), 0.0)

    @property
    def recall(self) -> Floats:
        return self.tp / self.n_pos if self.n_pos else np.zeros(self.tp.shape)

    def fbeta(self, beta: float) -> Floats:
        # The count form is 0 (not 0/0) when nothing true is traded.
        b2 = beta * beta
        denominator = (1.0 + b2) * self.tp + b2 * (self.n_pos - self.tp) + self.fp
        return np.where(denominator > 0, (1.0 + b2) * self.tp / np.maximum(denominator, 1), 0.0)


def _sorted(
    y: NDArray[np.bool_], scores: Floats, payoff: Floats | None
) -> tuple[Floats, Ints, Floats | None]:
    """Scores descending with cumulative true positives (and payoff) in that order."""
    order = np.argsort(scores, kind="stable")[::-1]
    cum_payoff = None if payoff is None else np.cumsum(payoff[order])
    return scores[order], np.cumsum(y[order], dtype=np.int64), cum_payoff


def sweep(y: NDArray[np.bool_], scores: Floats, payoff: Floats | None = None) -> Counts:
    """Counts at every distinct score, highest first: the only thresholds that differ."""
    s_desc, tp, cum_payoff = _sorted(y, scores, payoff)
    # A threshold equal to a tied score admits the whole run of ties.
    last = np.append(np.flatnonzero(s_desc[1:] != s_desc[:-1]), s_desc.size - 1)
    n_pos = int(tp[-1]) if tp.size else 0
    return Counts(
        thresholds=s_desc[last],
        tp=tp[last],
        fp=last + 1 - tp[last],
        n_pos=n_pos,
        n=int(scores.size),
        payoff=None if cum_payoff is None else cum_payoff[last],
    )


def counts_at(
    y: NDArray[np.bool_] | NDArray[np.integer],
    scores: Floats,
    thresholds: Floats,
    payoff: Floats | None = None,
) -> Counts:
    """Counts of the decisions ``scores >= t`` for each ``t`` in ``thresholds``."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    ascending = np.sort(scores)
    traded = scores.size - np.searchsorted(ascending, thresholds, side="left")
    tp = np.asarray(y.sum() - np.searchsorted(np.sort(scores[y]), thresholds, side="left"))
    cum_payoff = None
    if payoff is not None:
        order = np.argsort(scores, kind="stable")[::-1]
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(payoff, dtype=np.float64)[order])])
        cum_payoff = cum[traded]
    return Counts(
        thresholds=thresholds,
        tp=tp.astype(np.int64),
        fp=(traded - tp).astype(np.int64),
        n_pos=int(y.sum()),
        n=int(scores.size),
        payoff=cum_payoff,
    )


def objective_values(c: Counts, spec: MetricSpec) -> tuple[Floats, Mask]:
    """The metric at each threshold of ``c`` and the mask of thresholds meeting its constraint.

    ``profit`` is the summed payoff of the traded events when ``c`` carries a payoff,
    else ``gain * TP - cost * FP``; both are totals over the sample. ``pr_auc`` has no
    threshold of its own: its curve is F1.
    """
    everywhere = np.ones(c.thresholds.shape, dtype=bool)
    if spec.metric == "fbeta":
        return c.fbeta(spec.beta), everywhere
    if spec.metric == "precision":
        return c.precision, c.recall >= spec.min_recall * (1.0 - RTOL)
    if spec.metric == "recall":
        return c.recall, c.precision >= spec.min_precision * (1.0 - RTOL)
    if spec.metric == "profit":
        if c.payoff is not None:
            return c.payoff.astype(np.float64), everywhere
        return (spec.gain * c.tp - spec.cost * c.fp).astype(np.float64), everywhere
    return c.fbeta(1.0), everywhere


def decision_metrics(
    y: NDArray[np.integer] | NDArray[np.bool_],
    scores: Floats,
    threshold: float,
    payoff: Floats | None = None,
) -> dict[str, float | int]:
    """Precision, recall, F1 and trade counts of ``scores >= threshold`` (plain Python)."""
    c = counts_at(y, scores, np.array([threshold]), payoff)
    tp, fp = int(c.tp[0]), int(c.fp[0])
    out: dict[str, float | int] = {
        "f1": float(c.fbeta(1.0)[0]),
        "precision": float(c.precision[0]),
        "recall": float(c.recall[0]),
        "true_positives": tp,
        "predicted_positives": tp + fp,
    }
    if c.payoff is not None:
        out["payoff"] = float(c.payoff[0])
    return out
