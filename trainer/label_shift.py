"""The label-shift re-tune: a model corrected for an estimated positive rate, before outcomes.

Under label shift ``p(x | y)`` is unchanged, so the recent joined rows (from before the
shift) still describe each class; only the class mix moves. The candidate keeps the
champion's weights and

* shifts its calibration intercept by ``logit(estimated) - logit(reference)``: the prior
  correction of Saerens et al. (2002) for a logistic calibration map, exactly;
* re-optimises the threshold on the recent rows re-weighted to the estimated rate
  (positives by ``estimated / r``, negatives by ``(1 - estimated) / (1 - r)``, ``r`` the
  rows' own rate): the threshold that maximises the metric in the shifted regime.

The gate compares candidate and champion on the gate rows under the same weights, so both
are judged in the regime the candidate is meant for.

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
from typing import Any

import numpy as np

from metasignal.stream.artifact import Artifact
from metasignal.stream.scoring import CompiledModel
from metasignal.trainer.data import VoteTable
from metasignal.trainer.objective import Objective

__all__ = ["class_weights", "label_shift_challenge", "weighted_fbeta_threshold"]


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


def label_shift_challenge(
    champion: Artifact,
    fit_part: VoteTable,
    gate: VoteTable,
    *,
    prior: dict[str, Any],
    objective: Objective,
) -> tuple[Artifact, float, float, np.ndarray]:
    """The candidate, the champion's and the candidate's gate values, the candidate's scores.

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
    champion_value = weighted_fbeta_at(
        gate.labels,
        champion_model.predict_proba(gate.votes),
        champion_model.threshold,
        g1,
        g0,
        beta,
    )
    candidate_scores = model.predict_proba(gate.votes)
    candidate_value = weighted_fbeta_at(gate.labels, candidate_scores, threshold, g1, g0, beta)
    return candidate, champion_value, candidate_value, candidate_scores
