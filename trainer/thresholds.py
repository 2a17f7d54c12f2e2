"""Decision-threshold selection for the meta-model's trade/no-trade scores.

The decision rule everywhere is: trade iff ``score >= threshold``. Trades are rare and cost
money, so whenever two thresholds are equally good we keep the *higher* one (fewer trades).

Every search is exact and O(n log n): sort the scores once, take cumulative TP/FP counts and
evaluate the objective at every distinct score, which are the only thresholds that produce
different decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from metasignal.stream import quality
from metasignal.trainer.metrics import RTOL, Counts, MetricSpec, objective_values, sweep

__all__ = [
    "METRICS",
    "ThresholdResult",
    "average_precision",
    "confusion_at",
    "elkan_threshold",
    "find_optimal_threshold",
    "threshold_curve",
]

METRICS: Final[tuple[str, ...]] = ("f1", "fbeta", "precision", "recall", "profit", "pr_auc")

_RTOL: Final = RTOL

_Floats = NDArray[np.float64]
_Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class ThresholdResult:
    """Chosen threshold and the classification quality it induces.

    ``value`` is the objective at ``threshold`` (for ``pr_auc``: the average precision of the
    scores). ``feasible`` is False when a constraint could not be met or, for ``profit``, when
    no threshold makes a profit.
    """

    threshold: float
    metric: str
    value: float
    precision: float
    recall: float
    f1: float
    n_predicted: int
    feasible: bool

    def to_dict(self) -> dict[str, float | int | str | bool]:
        """Plain-Python mapping of the fields, for JSON reports."""
        return {
            "threshold": self.threshold,
            "metric": self.metric,
            "value": self.value,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "n_predicted": self.n_predicted,
            "feasible": self.feasible,
        }


@dataclass(frozen=True)
class _Options:
    metric: str
    beta: float
    min_recall: float
    min_precision: float
    gain: float
    cost: float

    @property
    def spec(self) -> MetricSpec:
        return MetricSpec(
            self.metric, self.beta, self.min_recall, self.min_precision, self.gain, self.cost
        )


def elkan_threshold(gain: float, cost: float) -> float:
    """Cost-optimal threshold on calibrated probabilities (Elkan, 2001).

    Trading at probability ``p`` is worth ``p * gain - (1 - p) * cost``, which is positive
    iff ``p > cost / (cost + gain)``.

    Examples
    --------
    >>> elkan_threshold(gain=3.0, cost=1.0)
    0.25
    """
    _check_positive("gain", gain)
    _check_positive("cost", cost)
    return cost / (cost + gain)


def confusion_at(
    y_true: ArrayLike, scores: ArrayLike, threshold: float
) -> tuple[int, int, int, int]:
    """Confusion counts ``(tp, fp, fn, tn)`` when predicting ``scores >= threshold``.

    Examples
    --------
    >>> confusion_at([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1], 0.5)
    (1, 1, 1, 1)
    """
    y, s = _validate_data(y_true, scores)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    return tp, fp, fn, y.size - tp - fp - fn


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Step-wise average precision, identical to ``sklearn.metrics.average_precision_score``.

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the distinct scores in descending order; no
    interpolation, so it is not the trapezoidal area under the PR curve.

    Examples
    --------
    >>> average_precision([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1])
    0.8333333333333333
    """
    y, s = _validate_data(y_true, scores)
    if not y.any():
        raise ValueError("y_true has no positive labels, so precision and recall are undefined")
    return quality.average_precision(y, s)


def threshold_curve(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    metric: str = "f1",
    beta: float = 1.0,
    min_recall: float = 0.0,
    min_precision: float = 0.0,
    gain: float = 1.0,
    cost: float = 1.0,
    payoff: ArrayLike | None = None,
) -> tuple[_Floats, _Floats]:
    """Objective at every distinct score, for plotting.

    Returns ``(thresholds, values)`` with thresholds strictly descending. Thresholds that
    violate the ``min_recall`` / ``min_precision`` constraint get NaN so plots show only the
    feasible region. For ``pr_auc`` the curve is F1, the objective its threshold is chosen by.

    Examples
    --------
    >>> t, v = threshold_curve([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1], metric="profit")
    >>> t.tolist(), v.tolist()
    ([0.9, 0.8, 0.3, 0.1], [1.0, 0.0, 1.0, 0.0])
    """
    opts = _validate_options(metric, beta, min_recall, min_precision, gain, cost)
    y, s = _validate_data(y_true, scores)
    c = sweep(y, s, _validate_payoff(payoff, s.size))
    _require_positives(c)
    values, allowed = objective_values(c, opts.spec)
    return c.thresholds, np.where(allowed, values, np.nan)


def find_optimal_threshold(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    metric: str = "f1",
    beta: float = 1.0,
    min_recall: float = 0.0,
    min_precision: float = 0.0,
    gain: float = 1.0,
    cost: float = 1.0,
    payoff: ArrayLike | None = None,
) -> ThresholdResult:
    """Threshold (a distinct score) that maximises ``metric``, trading iff ``score >= it``.

    Parameters
    ----------
    y_true, scores
        Binary labels (0/1) and finite scores of equal, non-zero length; needs a positive.
    metric
        One of :data:`METRICS`:

        - ``f1``, ``fbeta`` (with ``beta``);
        - ``precision`` subject to ``recall >= min_recall`` (if infeasible: the highest-recall
          threshold, ``feasible=False``);
        - ``recall`` subject to ``precision >= min_precision`` (if infeasible: the
          highest-precision threshold, ``feasible=False``);
        - ``profit`` = ``gain * TP - cost * FP`` summed over this sample. Ties go to the
          threshold closest to :func:`elkan_threshold` (meaningful for calibrated
          probabilities). If no threshold makes a profit, trading is not
          profitable on this data: the result is the lowest threshold at or above Elkan's
          (the highest score if none is) with ``feasible=False``;
          With ``payoff`` (the realized payoff of acting on each event, negative allowed)
          profit is the summed payoff of the traded events instead; ties go to the
          higher threshold, and when nothing is profitable the highest score is returned
          with ``feasible=False``;
        - ``pr_auc``: ``value`` is the average precision; the threshold is F1-optimal.
    min_recall, min_precision
        Constraints in [0, 1], met within a relative tolerance of 1e-12; each is only
        accepted by the metric it constrains.

    Other ties go to the higher threshold (fewer trades); objective values within 1e-12 of
    the best (relative to the objective's range) count as ties.

    Examples
    --------
    >>> r = find_optimal_threshold([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1], metric="f1")
    >>> r.threshold, round(r.value, 4), r.n_predicted, r.feasible
    (0.3, 0.8, 3, True)
    """
    opts = _validate_options(metric, beta, min_recall, min_precision, gain, cost)
    y, s = _validate_data(y_true, scores)
    c = sweep(y, s, _validate_payoff(payoff, s.size))
    _require_positives(c)
    values, allowed = objective_values(c, opts.spec)
    i, feasible = _select(c, opts, values, allowed)
    value = quality.average_precision(y, s) if metric == "pr_auc" else float(values[i])
    tp, fp = int(c.tp[i]), int(c.fp[i])
    return ThresholdResult(
        threshold=float(c.thresholds[i]),
        metric=metric,
        value=value,
        precision=tp / (tp + fp),
        recall=tp / c.n_pos,
        f1=2 * tp / (tp + fp + c.n_pos),
        n_predicted=tp + fp,
        feasible=feasible,
    )


def _select(c: Counts, opts: _Options, values: _Floats, allowed: _Mask) -> tuple[int, bool]:
    """Index of the chosen candidate and whether it is feasible."""
    if opts.metric == "profit":
        return _select_profit(c, opts, values)
    if allowed.any():
        return _first_best(values, allowed, scale=1.0), True
    # Only constrained metrics get here; fall back to the closest miss of the constraint.
    fallback = c.precision if opts.metric == "recall" else c.recall
    return _first_best(fallback, np.ones_like(allowed), scale=1.0), False


def _select_profit(c: Counts, opts: _Options, profit: _Floats) -> tuple[int, bool]:
    if c.payoff is not None:
        # Realized payoffs carry no calibrated break-even prior: ties go to fewer trades.
        scale = max(float(np.abs(profit).max()), 1e-300)
        if profit.max() > _RTOL * scale:
            return _first_best(profit, np.ones_like(profit, dtype=bool), scale=scale), True
        return 0, False
    # Profits are differences of large terms, so ties are judged on the scale of the largest
    # achievable gain or loss rather than relative to the (possibly tiny) best profit.
    profit_tol = _RTOL * (opts.gain * c.n_pos + opts.cost * (c.n - c.n_pos))
    elkan = elkan_threshold(opts.gain, opts.cost)
    dist_scale = max(abs(elkan), float(np.abs(c.thresholds).max()))
    if profit.max() > profit_tol:
        tied = profit >= profit.max() - profit_tol
        # Elkan's threshold is where trading breaks even under calibration: the best prior.
        distance = np.abs(c.thresholds - elkan)
        return _first_best(-distance, tied, scale=dist_scale), True
    above = np.flatnonzero(c.thresholds >= elkan - _RTOL * dist_scale)
    return (int(above[-1]) if above.size else 0), False


def _first_best(values: _Floats, allowed: _Mask, *, scale: float) -> int:
    """First (= highest-threshold) allowed index within ``1e-12 * scale`` of the allowed max."""
    best = values[allowed].max()
    return int(np.flatnonzero(allowed & (values >= best - _RTOL * scale))[0])


def _validate_data(y_true: ArrayLike, scores: ArrayLike) -> tuple[_Mask, _Floats]:
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.size != s.size:
        raise ValueError(f"y_true and scores must have the same length, got {y.size} and {s.size}")
    if y.size == 0:
        raise ValueError("y_true and scores are empty")
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite, found NaN or inf")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only the labels 0 and 1")
    return y.astype(bool), s


def _validate_payoff(payoff: ArrayLike | None, n: int) -> _Floats | None:
    if payoff is None:
        return None
    values = np.asarray(payoff, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"payoff must have one value per score ({n}), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("payoff must be finite, found NaN or inf")
    return values


def _require_positives(c: Counts) -> None:
    if c.n_pos == 0:
        raise ValueError("y_true has no positive labels, so precision and recall are undefined")


def _validate_options(
    metric: str, beta: float, min_recall: float, min_precision: float, gain: float, cost: float
) -> _Options:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}, expected one of {METRICS}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be finite and > 0, got {beta}")
    for name, bound, owner in (
        ("min_recall", min_recall, "precision"),
        ("min_precision", min_precision, "recall"),
    ):
        if not 0.0 <= bound <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {bound}")
        # Silently ignoring a constraint would hand back a threshold that may violate it.
        if bound > 0.0 and metric != owner:
            raise ValueError(f"{name} only applies to metric={owner!r}, got metric={metric!r}")
    _check_positive("gain", gain)
    _check_positive("cost", cost)
    return _Options(metric, beta, min_recall, min_precision, gain, cost)


def _check_positive(name: str, x: float) -> None:
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be finite and > 0, got {x}")
