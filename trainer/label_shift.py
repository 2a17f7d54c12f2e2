"""The label-shift re-tune: a model corrected for an estimated positive rate, before outcomes.

Under label shift ``p(x | y)`` is unchanged, so the recent joined rows (from before the
shift) still describe each class; only the class mix moves. The candidate keeps the
champion's weights and

* shifts its calibration intercept by ``logit(estimated) - logit(reference)``: the prior
  correction of Saerens et al. (2002) for a logistic calibration map, exactly;
* re-optimises the threshold on the recent rows re-weighted to the estimated rate
  (positives by ``estimated / r``, negatives by ``(1 - estimated) / (1 - r)``, ``r`` the
  rows' own rate): the threshold that maximises the metric in the shifted regime.

Both are judged on the gate rows under the same weights, in the regime the candidate is
meant for, and on what the re-tune changes (:func:`judge_label_shift`):

* non-inferiority on the metric, paired: the two models rank the events identically, so a
  point gap of a few thousandths on a few dozen positives is noise. The candidate is
  refused only if it is *significantly* worse: the one-sided upper confidence bound (level
  ``1 - NON_INFERIORITY_ALPHA``) of the weighted F-beta difference, delta method on the
  eight paired confusion counts (:func:`metasignal.stream.drift.promotion.paired_f1_difference`),
  is below ``-tolerance``;
* calibration must improve: the re-weighted log-loss of the candidate's probabilities must
  be lower than the champion's, the purpose of the re-tune (position sizes and the expected
  precision/recall come from the calibrated probability).

The skill gate applies afterwards, as for every request.

Examples
--------
>>> import numpy as np
>>> labels = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
>>> scores = np.array([0.9, 0.7, 0.6, 0.1, 0.65, 0.2, 0.3, 0.05, 0.1, 0.4])
>>> weighted_fbeta_threshold(labels, scores, positive_weight=1.0, negative_weight=1.0)
(0.65, 0.8)

Positives half as frequent (weights for a rate halved): the threshold rises.

>>> weighted_fbeta_threshold(labels, scores, positive_weight=0.5, negative_weight=1.5)
(0.9, 0.6666666666666666)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from metasignal.stream.artifact import Artifact
from metasignal.stream.drift.promotion import paired_counts, paired_f1_difference
from metasignal.stream.quality import log_loss
from metasignal.stream.scoring import CompiledModel
from metasignal.trainer.data import VoteTable
from metasignal.trainer.objective import Objective

__all__ = [
    "NON_INFERIORITY_ALPHA",
    "LabelShiftChallenge",
    "class_weights",
    "judge_label_shift",
    "label_shift_challenge",
    "weighted_fbeta_threshold",
]

# One-sided level of the non-inferiority test: a candidate is refused when it is worse than
# the champion with at most this probability of a false refusal (of one that is not worse).
NON_INFERIORITY_ALPHA = 0.05


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _rate(prior: dict[str, Any], name: str) -> float:
    """A rate from the request's ``prior`` block, or a ValueError naming the field."""
    value = prior.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ValueError(f"the request's prior.{name} must be a rate in (0, 1), got {value!r}")
    return float(value)


def class_weights(labels: np.ndarray, rate: float) -> tuple[float, float]:
    """Weights that give the rows' positives a share ``rate`` (positives, negatives)."""
    observed = float(np.mean(labels))
    if not 0.0 < observed < 1.0:
        raise ValueError(f"the rows need both classes to re-weight them, rate {observed}")
    return rate / observed, (1.0 - rate) / (1.0 - observed)


def _weighted_counts(
    labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, w1: float, w0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positives = np.sort(scores[labels == 1])
    negatives = np.sort(scores[labels == 0])
    tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
    fp = len(negatives) - np.searchsorted(negatives, thresholds, side="left")
    return w1 * tp, w0 * fp, w1 * (len(positives) - tp)


def _fbeta(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float) -> np.ndarray:
    b2 = beta**2
    denominator = (1 + b2) * tp + b2 * fn + fp
    return np.where(denominator > 0, (1 + b2) * tp / np.maximum(denominator, 1e-300), 0.0)


def weighted_fbeta_threshold(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    positive_weight: float,
    negative_weight: float,
    beta: float = 1.0,
) -> tuple[float, float]:
    """The threshold maximising class-weighted F-beta (exact, over the distinct scores)."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.unique(scores)
    tp, fp, fn = _weighted_counts(labels, scores, thresholds, positive_weight, negative_weight)
    values = _fbeta(tp, fp, fn, beta)
    best = int(np.argmax(values))
    return float(thresholds[best]), float(values[best])


def weighted_fbeta_at(
    labels: np.ndarray, scores: np.ndarray, threshold: float, w1: float, w0: float, beta: float
) -> float:
    tp, fp, fn = _weighted_counts(labels, scores, np.array([threshold]), w1, w0)
    return float(_fbeta(tp, fp, fn, beta)[0])


def judge_label_shift(
    labels: np.ndarray,
    champion: tuple[np.ndarray, float],
    candidate: tuple[np.ndarray, float],
    *,
    weights: tuple[float, float],
    beta: float = 1.0,
    tolerance: float = 0.0,
    alpha: float = NON_INFERIORITY_ALPHA,
) -> tuple[dict[str, float], str | None]:
    """The label-shift gate's evidence and its refusal reason (None: passes).

    ``champion`` and ``candidate`` are (probabilities, threshold) on the gate rows;
    ``weights`` the (positive, negative) weights to the estimated rate.

    >>> labels = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    >>> p = np.array([0.9, 0.4, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    >>> evidence, refusal = judge_label_shift(
    ...     labels, (p / 2, 0.3), (p, 0.6), weights=(1.0, 1.0))
    >>> refusal is None, evidence["calibration_after"] < evidence["calibration_before"]
    (True, True)
    >>> judge_label_shift(labels, (p, 0.6), (p / 2, 0.3), weights=(1.0, 1.0))[1]
    'calibration does not improve: re-weighted log-loss 0.3690 >= champion 0.2802'
    """
    labels = np.asarray(labels)
    w1, w0 = weights
    cell_weights = np.where(np.arange(8) >= 4, w1, w0)  # cell 4 y + 2 b + c: by label
    counts = paired_counts(labels, champion[0] >= champion[1], candidate[0] >= candidate[1])
    estimate = paired_f1_difference(counts, weights=cell_weights, beta=beta)
    z = float(special.ndtri(1.0 - alpha))
    se = estimate.standard_error
    upper = estimate.difference + z * se
    # p of "not worse by more than the tolerance": small when the candidate is clearly worse.
    p_value = float(special.ndtr((estimate.difference + tolerance) / se)) if se > 0 else 1.0
    row_weights = np.where(labels == 1, w1, w0)
    before = log_loss(labels, champion[0], weights=row_weights)
    after = log_loss(labels, candidate[0], weights=row_weights)
    evidence = {
        "difference": estimate.difference,
        "standard_error": se,
        "upper_bound": upper,
        "p_value": p_value,
        "alpha": alpha,
        "calibration_before": before,
        "calibration_after": after,
    }
    if upper < -tolerance:
        return evidence, (
            f"candidate significantly worse: difference {estimate.difference:.4f}, one-sided "
            f"{1 - alpha:.0%} upper bound {upper:.4f} < {-tolerance:.4f} (p {p_value:.4f})"
        )
    if not after < before:
        return evidence, (
            f"calibration does not improve: re-weighted log-loss {after:.4f} >= champion "
            f"{before:.4f}"
        )
    return evidence, None


@dataclass(frozen=True)
class LabelShiftChallenge:
    """The candidate, both gate values, the candidate's gate scores and the gate's verdict."""

    candidate: Artifact
    champion_value: float
    candidate_value: float
    candidate_scores: np.ndarray
    evidence: dict[str, float]
    refusal: str | None


def label_shift_challenge(
    champion: Artifact,
    fit_part: VoteTable,
    gate: VoteTable,
    *,
    prior: dict[str, Any],
    objective: Objective,
    tolerance: float = 0.0,
) -> LabelShiftChallenge:
    """The candidate and the gate's evidence on it (:func:`judge_label_shift`).

    ``prior`` is the request's: ``reference_rate`` (what the champion's scores are
    calibrated to) and ``estimated_rate`` (the label-free estimate of the live rate).
    """
    if objective.metric not in ("f1", "fbeta"):
        raise ValueError(f"a label-shift re-tune optimises f1 or fbeta, not {objective.metric}")
    reference, estimated = (_rate(prior, name) for name in ("reference_rate", "estimated_rate"))
    beta = objective.beta if objective.metric == "fbeta" else 1.0
    candidate = copy.deepcopy(champion)
    shift = _logit(estimated) - _logit(reference)
    candidate["calibration"] = {
        **champion["calibration"],
        "intercept": float(champion["calibration"]["intercept"]) + shift,
    }
    model = CompiledModel.from_artifact(candidate)
    w1, w0 = class_weights(fit_part.labels, estimated)
    threshold, _ = weighted_fbeta_threshold(
        fit_part.labels,
        model.predict_proba(fit_part.votes),
        positive_weight=w1,
        negative_weight=w0,
        beta=beta,
    )
    candidate["threshold"] = {
        **champion["threshold"],
        "value": threshold,
        "fold_thresholds": [threshold],
    }
    candidate["strategy"] = {
        **champion["strategy"],
        "reason": (
            f"label-shift re-tune: prior {reference:.4f} -> {estimated:.4f} estimated without "
            f"outcomes; threshold re-optimised on {len(fit_part)} re-weighted rows"
        ),
    }
    champion_model = CompiledModel.from_artifact(champion)
    g1, g0 = class_weights(gate.labels, estimated)
    champion_scores = champion_model.predict_proba(gate.votes)
    champion_value = weighted_fbeta_at(
        gate.labels, champion_scores, champion_model.threshold, g1, g0, beta
    )
    candidate_scores = model.predict_proba(gate.votes)
    candidate_value = weighted_fbeta_at(gate.labels, candidate_scores, threshold, g1, g0, beta)
    evidence, refusal = judge_label_shift(
        gate.labels,
        (champion_scores, champion_model.threshold),
        (candidate_scores, threshold),
        weights=(g1, g0),
        beta=beta,
        tolerance=tolerance,
    )
    return LabelShiftChallenge(
        candidate, champion_value, candidate_value, candidate_scores, evidence, refusal
    )
