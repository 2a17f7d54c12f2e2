"""Ranking and calibration statistics of scores against 0/1 outcomes.

Small pure functions shared by the scorer's drift monitor and the trainer's
threshold search (which validates its inputs first), so both report the same
PR-AUC for the same scores.

Examples
--------
>>> import numpy as np
>>> y, s = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.3, 0.1])
>>> round(average_precision(y, s), 4), roc_auc(y, s)
(0.8333, 0.75)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC AUC (ties count half); NaN unless both classes are present.

    Unlike log-loss it ignores calibration, so a base-rate shift leaves it alone
    while a member that stops knowing anything falls towards 0.5.
    """
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float(
        (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def log_loss(
    labels: np.ndarray, p: np.ndarray, eps: float = 1e-6, *, weights: np.ndarray | None = None
) -> float:
    """Mean binary log-loss of probabilities ``p`` (clipped) against 0/1 labels.

    ``weights`` (optional, one per row) gives the weighted mean.
    """
    if len(labels) == 0:
        return float("nan")
    q = np.clip(p, eps, 1 - eps)
    return float(-np.average(labels * np.log(q) + (1 - labels) * np.log1p(-q), weights=weights))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision; NaN without positives.

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the distinct scores in descending
    order, no interpolation: ``sklearn.metrics.average_precision_score``'s value
    (``tests/test_quality.py``), not the trapezoidal area under the PR curve.
    """
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order]
    # Ties share the precision of their whole block, as scikit-learn does.
    sorted_scores = scores[order]
    last_of_block = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    tp = np.cumsum(hits)[last_of_block]
    k = np.flatnonzero(last_of_block) + 1
    recall_steps = np.diff(np.r_[0, tp]) / positives
    return float(np.sum(recall_steps * tp / k))
