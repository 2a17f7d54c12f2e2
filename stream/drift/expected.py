"""Expected precision, recall and F1 of the decisions, from calibrated probabilities alone.

If ``p_i`` is the probability that event ``i`` is a trade, the expected confusion matrix
of the decisions ``d_i`` is ``TP = sum(d p)``, ``FP = sum(d (1 - p))``,
``FN = sum((1 - d) p)`` (confidence-based performance estimation, as NannyML's CBPE).
The probabilities must describe the live regime: under a prior shift, pass them through
:func:`metasignal.stream.drift.prior.adjust_posteriors` first.

Examples
--------
>>> import numpy as np
>>> p = np.array([0.9, 0.6, 0.2, 0.1, 0.05])
>>> d = p >= 0.5
>>> [round(count, 2) for count in expected_confusion(p, d)]
[1.5, 0.5, 0.35]
>>> q = expected_quality(p, d)
>>> round(q.precision, 3), round(q.recall, 3), round(q.f1, 3)
(0.75, 0.811, 0.779)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ExpectedQuality", "expected_confusion", "expected_quality"]


@dataclass(frozen=True)
class ExpectedQuality:
    """Expected precision, recall and F1 (NaN where undefined: no trade, no positive)."""

    precision: float
    recall: float
    f1: float


def expected_confusion(
    probabilities: np.ndarray, decisions: np.ndarray
) -> tuple[float, float, float]:
    """Expected ``(TP, FP, FN)`` counts of 0/1 ``decisions`` given P(trade) per event."""
    p = np.asarray(probabilities, dtype=np.float64)
    d = np.asarray(decisions, dtype=bool)
    traded = float(p[d].sum())
    return traded, float(d.sum()) - traded, float(p.sum()) - traded


def expected_quality(probabilities: np.ndarray, decisions: np.ndarray) -> ExpectedQuality:
    """Expected precision, recall and F1 (ratios of the expected counts)."""
    tp, fp, fn = expected_confusion(probabilities, decisions)
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else math.nan
    return ExpectedQuality(precision=precision, recall=recall, f1=f1)
