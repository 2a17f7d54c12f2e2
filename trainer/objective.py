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

from metasignal.trainer.metrics import MetricSpec, counts_at, objective_values
from metasignal.trainer.thresholds import (
    METRICS,
    ThresholdResult,
    average_precision,
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

    @property
    def spec(self) -> MetricSpec:
        return MetricSpec(
            self.metric, self.beta, self.min_recall, self.min_precision, self.gain, self.cost
        )

    def find(
        self, y: np.ndarray, scores: np.ndarray, payoff: np.ndarray | None = None
    ) -> ThresholdResult:
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
            payoff=payoff,
        )

    def curve(
        self,
        y: np.ndarray,
        scores: np.ndarray,
        thresholds: np.ndarray,
        payoff: np.ndarray | None = None,
    ) -> np.ndarray:
        """:meth:`value_at` for many thresholds at once (sorted counts, O(n log n)).

        A constrained metric whose constraint fails scores 0; profit is per event so
        folds of different length compare. For ``pr_auc``, which has no threshold of
        its own, this is the F1 curve: the threshold it publishes is the F1-optimal one.
        """
        counts = counts_at(y, np.asarray(scores, dtype=np.float64), thresholds, payoff)
        values, allowed = objective_values(counts, self.spec)
        if self.metric == "profit":
            values = values / max(counts.n, 1)
        return np.where(allowed, values, 0.0)

    def value_at(
        self,
        y: np.ndarray,
        scores: np.ndarray,
        threshold: float,
        payoff: np.ndarray | None = None,
    ) -> float:
        """The metric of decisions ``scores >= threshold``; comparable across folds."""
        if self.metric == "pr_auc":
            return average_precision(y, scores)
        return float(self.curve(y, scores, np.array([threshold]), payoff)[0])
