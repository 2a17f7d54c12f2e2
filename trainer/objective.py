"""What "best" means for a threshold and a strategy: one metric with its parameters.

Examples
--------
>>> import numpy as np
>>> objective = Objective(metric="f1")
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> s = np.array([0.1, 0.2, 0.8, 0.7, 0.75, 0.3])
>>> objective.find(y, s).threshold
0.3
>>> round(objective.value_at(y, s, 0.7), 3)
0.667
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from metasignal.trainer.thresholds import (
    METRICS,
    ThresholdResult,
    average_precision,
    confusion_at,
    find_optimal_threshold,
)


@dataclass(frozen=True)
class Objective:
    """A threshold metric (see :func:`metasignal.trainer.thresholds.find_optimal_threshold`)."""

    metric: str = "f1"
    beta: float = 1.0
    min_recall: float = 0.0
    min_precision: float = 0.0
    gain: float = 1.0
    cost: float = 1.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def find(self, y: np.ndarray, scores: np.ndarray) -> ThresholdResult:
        """The optimal threshold on ``scores`` (exact search over distinct scores)."""
        return find_optimal_threshold(
            y,
            scores,
            metric=self.metric,
            beta=self.beta,
            min_recall=self.min_recall,
            min_precision=self.min_precision,
            gain=self.gain,
            cost=self.cost,
        )

    def curve(self, y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """:meth:`value_at` for many thresholds at once (sorted counts, O(n log n)).

        For ``pr_auc``, which has no threshold of its own, this is the F1 curve: the
        threshold it publishes is the F1-optimal one.
        """
        y = np.asarray(y)
        scores = np.asarray(scores, dtype=np.float64)
        positives = np.sort(scores[y == 1])
        negatives = np.sort(scores[y == 0])
        tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
        fp = len(negatives) - np.searchsorted(negatives, thresholds, side="left")
        fn = len(positives) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
            if self.metric == "profit":
                return (self.gain * tp - self.cost * fp) / max(len(y), 1)
            if self.metric == "precision":
                return np.where(recall >= self.min_recall, precision, 0.0)
            if self.metric == "recall":
                return np.where(precision >= self.min_precision, recall, 0.0)
            beta2 = self.beta**2 if self.metric == "fbeta" else 1.0
            denominator = beta2 * precision + recall
            return np.where(denominator > 0, (1 + beta2) * precision * recall / denominator, 0.0)

    def value_at(self, y: np.ndarray, scores: np.ndarray, threshold: float) -> float:
        """The metric of decisions ``scores >= threshold``; comparable across folds.

        A constrained metric whose constraint fails scores 0; profit is per event so
        folds of different length compare.
        """
        if self.metric == "pr_auc":
            return average_precision(y, scores)
        tp, fp, fn, _ = confusion_at(y, scores, threshold)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        if self.metric == "profit":
            return (self.gain * tp - self.cost * fp) / max(len(y), 1)
        if self.metric == "precision":
            return precision if recall >= self.min_recall else 0.0
        if self.metric == "recall":
            return recall if precision >= self.min_precision else 0.0
        beta2 = self.beta**2 if self.metric == "fbeta" else 1.0
        denominator = beta2 * precision + recall
        return (1 + beta2) * precision * recall / denominator if denominator else 0.0
