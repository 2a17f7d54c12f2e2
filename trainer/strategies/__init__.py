"""The meta-model strategies and the rule that picks one.

Each strategy is a scikit-learn binary classifier exposing ``decision_function``
and a linear ``coef_``/``intercept_``, so every one of them compiles to the
same artifact and the same numpy scorer.

Examples
--------
>>> choose_by_positive_rate(0.01)[0]
'smote_enhanced'
>>> choose_by_positive_rate(0.03)[0]
'focal_loss'
>>> choose_by_positive_rate(0.08)[0]
'optimal_threshold'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from metasignal.trainer.strategies.focal_loss import FocalLossClassifier
from metasignal.trainer.strategies.optimal_threshold import (
    balanced_logistic_regression,
    plain_logistic_regression,
)
from metasignal.trainer.strategies.smote_enhanced import SmoteLogisticRegression

STRATEGIES = ("optimal_threshold", "smote_enhanced", "focal_loss")
BASELINE = "plain_logistic"
SELECTABLE = (*STRATEGIES, BASELINE)
META_STRATEGIES = ("auto", "select")


@dataclass(frozen=True)
class StrategyParams:
    """Hyper-parameters shared by the strategies (defaults are the house settings)."""

    C: float = 0.1
    solver: str = "liblinear"
    max_iter: int = 2000
    random_state: int = 42
    smote_ratio: float = 0.5
    k_neighbors: int = 5
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    auto_smote_below: float = 0.02
    auto_focal_below: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_estimator(name: str, params: StrategyParams | None = None) -> Any:
    """A fresh, unfitted estimator for strategy ``name``."""
    p = params or StrategyParams()
    if name == "optimal_threshold":
        return balanced_logistic_regression(
            C=p.C, solver=p.solver, max_iter=p.max_iter, random_state=p.random_state
        )
    if name == "smote_enhanced":
        return SmoteLogisticRegression(
            sampling_strategy=p.smote_ratio,
            k_neighbors=p.k_neighbors,
            C=p.C,
            solver=p.solver,
            max_iter=p.max_iter,
            random_state=p.random_state,
        )
    if name == "focal_loss":
        return FocalLossClassifier(gamma=p.focal_gamma, alpha=p.focal_alpha, C=p.C)
    if name == BASELINE:
        return plain_logistic_regression(max_iter=p.max_iter)
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(SELECTABLE)}")


def choose_by_positive_rate(
    positive_rate: float, *, smote_below: float = 0.02, focal_below: float = 0.05
) -> tuple[str, str]:
    """The ``auto`` rule: the rarer the trades, the more help the minority class gets."""
    if positive_rate < smote_below:
        return "smote_enhanced", f"positive rate {positive_rate:.2%} < {smote_below:.0%}"
    if positive_rate < focal_below:
        return "focal_loss", f"positive rate {positive_rate:.2%} < {focal_below:.0%}"
    return "optimal_threshold", f"positive rate {positive_rate:.2%} >= {focal_below:.0%}"


def estimator_fallbacks(estimator: Any) -> list[str]:
    """What a fitted estimator had to give up on (SMOTE k, optimiser failure...)."""
    fallbacks = getattr(estimator, "fallbacks_", None)
    if fallbacks:
        return list(fallbacks)
    fallback = getattr(estimator, "fallback_", None)
    return [f"focal_loss: {fallback}"] if fallback else []


__all__ = [
    "BASELINE",
    "META_STRATEGIES",
    "SELECTABLE",
    "STRATEGIES",
    "FocalLossClassifier",
    "SmoteLogisticRegression",
    "StrategyParams",
    "choose_by_positive_rate",
    "estimator_fallbacks",
    "make_estimator",
]
