"""The balanced meta-model: strategy + calibration + tuned threshold, one estimator.

``MetaModelClassifier.fit`` expects rows in time order. It evaluates the
candidate strategies by walk-forward validation on the rows it is given (the
training period), picks one (``auto`` or ``select``), refits it on all those
rows, and keeps the Platt map and the fold-averaged threshold from the
out-of-fold evidence. ``predict_proba`` is the calibrated P(trade) that the
numpy scorer in :mod:`metasignal.stream.scoring` reproduces from the artifact.

Examples
--------
>>> from metasignal.trainer.synthetic import generate_committee
>>> committee = generate_committee(n_events=4000, positive_rate=0.05, seed=1)
>>> model = MetaModelClassifier(strategy="optimal_threshold")
>>> model = model.fit(committee.votes, committee.labels)
>>> model.strategy_, 0.0 < model.threshold_ < 1.0
('optimal_threshold', True)
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from metasignal.trainer.objective import Objective
from metasignal.trainer.preprocessing import LogitStandardizer
from metasignal.trainer.selection import ANCHOR, beats_abstain, guard_choice, select_best
from metasignal.trainer.skill import (
    DEFAULT_ALPHA,
    DEFAULT_PERMUTATIONS,
    SkillVerdict,
    assess_ranking,
    decide,
)
from metasignal.trainer.strategies import (
    META_STRATEGIES,
    SELECTABLE,
    StrategyParams,
    choose_by_positive_rate,
    estimator_fallbacks,
    make_estimator,
)
from metasignal.trainer.walk_forward import WalkForwardResult, evaluate_strategy

log = logging.getLogger("metasignal.trainer")


class MetaModelClassifier(ClassifierMixin, BaseEstimator):
    """Stacking meta-model for rare trade decisions.

    Parameters
    ----------
    strategy : str
        ``auto``, ``select``, ``optimal_threshold``, ``smote_enhanced``,
        ``focal_loss`` or ``plain_logistic``.
    metric, beta, min_recall, min_precision, gain, cost
        The threshold objective (:class:`metasignal.trainer.objective.Objective`).
    n_splits, gap
        Walk-forward folds and purge gap (rows) inside the training period.
    label_horizon, embargo
        Label-window length and embargo, in the units of ``times`` given to :meth:`fit`
        (milliseconds in the trainer): training rows whose ``[t, t + label_horizon]``
        reaches a validation block widened by ``embargo`` are purged
        (:mod:`metasignal.trainer.purge`). A per-row ``label_end`` passed to :meth:`fit`
        replaces the horizon.
    skill_alpha, skill_permutations
        The skill gate (:mod:`metasignal.trainer.skill`): significance level and number
        of rotations of its permutation test.
    kind, clip_eps
        Vote preprocessing (:class:`metasignal.trainer.preprocessing.LogitStandardizer`).
    C, solver, max_iter, random_state, smote_ratio, k_neighbors, focal_gamma,
    focal_alpha, auto_smote_below, auto_focal_below
        Strategy hyper-parameters (:class:`metasignal.trainer.strategies.StrategyParams`).
    """

    def __init__(
        self,
        *,
        strategy: str = "auto",
        metric: str = "f1",
        beta: float = 1.0,
        min_recall: float = 0.0,
        min_precision: float = 0.0,
        gain: float = 1.0,
        cost: float = 1.0,
        n_splits: int = 5,
        gap: int = 0,
        label_horizon: int | None = None,
        embargo: int = 0,
        skill_alpha: float = DEFAULT_ALPHA,
        skill_permutations: int = DEFAULT_PERMUTATIONS,
        kind: str = "probability",
        clip_eps: float = 1e-6,
        C: float = 0.1,
        solver: str = "liblinear",
        max_iter: int = 2000,
        random_state: int = 42,
        smote_ratio: float = 0.5,
        k_neighbors: int = 5,
        focal_gamma: float = 2.0,
        focal_alpha: float = 0.25,
        auto_smote_below: float = 0.02,
        auto_focal_below: float = 0.05,
    ) -> None:
        self.strategy = strategy
        self.metric = metric
        self.beta = beta
        self.min_recall = min_recall
        self.min_precision = min_precision
        self.gain = gain
        self.cost = cost
        self.n_splits = n_splits
        self.gap = gap
        self.label_horizon = label_horizon
        self.embargo = embargo
        self.skill_alpha = skill_alpha
        self.skill_permutations = skill_permutations
        self.kind = kind
        self.clip_eps = clip_eps
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.random_state = random_state
        self.smote_ratio = smote_ratio
        self.k_neighbors = k_neighbors
        self.focal_gamma = focal_gamma
        self.focal_alpha = focal_alpha
        self.auto_smote_below = auto_smote_below
        self.auto_focal_below = auto_focal_below

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.input_tags.allow_nan = True
        return tags

    @property
    def objective(self) -> Objective:
        return Objective(
            metric=self.metric,
            beta=self.beta,
            min_recall=self.min_recall,
            min_precision=self.min_precision,
            gain=self.gain,
            cost=self.cost,
        )

    @property
    def strategy_params(self) -> StrategyParams:
        return StrategyParams(
            C=self.C,
            solver=self.solver,
            max_iter=self.max_iter,
            random_state=self.random_state,
            smote_ratio=self.smote_ratio,
            k_neighbors=self.k_neighbors,
            focal_gamma=self.focal_gamma,
            focal_alpha=self.focal_alpha,
            auto_smote_below=self.auto_smote_below,
            auto_focal_below=self.auto_focal_below,
        )

    def make_pipeline(self, strategy: str) -> Pipeline:
        """Unfitted preprocessing + strategy estimator."""
        return Pipeline(
            [
                ("features", LogitStandardizer(kind=self.kind, clip_eps=self.clip_eps)),
                ("model", make_estimator(strategy, self.strategy_params)),
            ]
        )

    def _candidates(self, positive_rate: float) -> tuple[list[str], str]:
        if self.strategy == "select":
            return list(SELECTABLE), "select"
        if self.strategy == "auto":
            rule, reason = choose_by_positive_rate(
                positive_rate,
                smote_below=self.auto_smote_below,
                focal_below=self.auto_focal_below,
            )
            return list(dict.fromkeys([rule, ANCHOR])), f"auto: {reason} -> {rule}"
        if self.strategy in SELECTABLE:
            return [self.strategy], f"requested strategy {self.strategy}"
        choices = ", ".join((*META_STRATEGIES, *SELECTABLE))
        raise ValueError(f"unknown strategy {self.strategy!r}; choose from {choices}")

    def label_end(self, times: np.ndarray, label_end: Any = None) -> np.ndarray | None:
        """Each row's label-window end: given, ``times + label_horizon``, or None (no purge)."""
        if label_end is not None:
            ends = np.asarray(label_end, dtype=np.int64)
            if ends.shape != times.shape:
                raise ValueError("label_end must have one value per row")
            if (ends < times).any():
                raise ValueError("a label window ends before its event time (label_end < time)")
            return ends
        if self.label_horizon is not None:
            return times + int(self.label_horizon)
        return times.copy() if self.embargo else None

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        times: Any = None,
        label_end: Any = None,
        payoff: Any = None,
    ) -> MetaModelClassifier:
        """Walk-forward evaluation, choice, refit on all rows and the skill verdict.

        ``times`` (sorted; default the row number) cut folds at time boundaries;
        ``label_end`` or ``label_horizon`` purge; ``payoff`` is the realized payoff of
        trading each row, which ``metric="profit"`` then sums.
        """
        objective = self.objective
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise ValueError(
                "Only binary classification is supported: the meta-model needs trade/no-trade "
                f"labels, got a {type_of_target(y)} target"
            )
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("the meta-model needs trades and non-trades; y holds only one class")
        time_index = (
            np.arange(len(encoded), dtype=np.int64)
            if times is None
            else np.asarray(times, dtype=np.int64)
        )
        if time_index.shape != encoded.shape or (np.diff(time_index) < 0).any():
            raise ValueError("times must hold one sorted value per row")
        payoff_values = None if payoff is None else np.asarray(payoff, dtype=np.float64)
        positive_rate = float(encoded.mean())
        candidates, reason = self._candidates(positive_rate)
        self.walk_forward_: dict[str, WalkForwardResult] = {}
        for name in candidates:
            log.info("walk-forward validation of %s (%d folds)", name, self.n_splits)
            self.walk_forward_[name] = evaluate_strategy(
                name,
                self.make_pipeline(name),
                X,
                encoded,
                objective=objective,
                n_splits=self.n_splits,
                gap=self.gap,
                times=time_index,
                label_end=self.label_end(time_index, label_end),
                embargo=int(self.embargo),
                payoff=payoff_values,
            )
        chosen, reason = self._choose(candidates, reason)
        evidence = self.walk_forward_[chosen]
        self.strategy_ = chosen
        self.positive_rate_ = positive_rate
        self.calibration_ = evidence.calibration
        self.threshold_ = evidence.threshold
        self.skill_ = self._assess_skill(evidence, encoded, time_index)
        if not self.skill_.beats_abstain and self.strategy in ("auto", "select"):
            reason = f"{reason}; {self.skill_.abstain_detail}: no strategy should trade"
        self.strategy_reason_ = reason
        log.info("refitting %s on all %d training rows", chosen, len(encoded))
        self.pipeline_ = self.make_pipeline(chosen).fit(X, encoded)
        self.fallbacks_ = evidence.fallbacks + estimator_fallbacks(self.pipeline_[-1])
        return self

    def _choose(self, candidates: list[str], reason: str) -> tuple[str, str]:
        chosen = candidates[0]
        if self.strategy == "select":
            return select_best(self.walk_forward_)
        if self.strategy == "auto" and len(candidates) > 1:
            guard, verdict = guard_choice(
                chosen,
                self.walk_forward_[chosen].fold_values,
                self.walk_forward_[ANCHOR].fold_values,
            )
            return guard, f"{reason}; {verdict}"
        return chosen, reason

    def _assess_skill(
        self, evidence: WalkForwardResult, encoded: np.ndarray, times: np.ndarray
    ) -> SkillVerdict:
        """The skill gate on the chosen strategy's out-of-fold evidence."""
        ranking = assess_ranking(
            encoded[evidence.oof_index],
            evidence.oof_scores,
            times[evidence.oof_index],
            n_permutations=self.skill_permutations,
            seed=self.random_state,
        )
        ok, detail = beats_abstain(evidence.fold_values, evidence.abstain_values)
        return decide(ranking, alpha=self.skill_alpha, beats_abstain=ok, abstain_detail=detail)

    def refit(self, X: Any, y: Any) -> MetaModelClassifier:
        """A copy refitted on ``X, y`` with this model's tuned strategy, calibration and threshold.

        Used to publish a model trained on every row (training period + holdout)
        once its settings have been chosen and honestly evaluated.
        """
        check_is_fitted(self, "pipeline_")
        refitted = copy.copy(self)
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        encoded = np.searchsorted(self.classes_, y)
        refitted.pipeline_ = clone(self.pipeline_).fit(X, encoded)
        refitted.fallbacks_ = self.fallbacks_ + [
            f"refit: {note}" for note in estimator_fallbacks(refitted.pipeline_[-1])
        ]
        refitted.positive_rate_ = float(encoded.mean())
        return refitted

    def decision_function(self, X: Any) -> np.ndarray:
        """Uncalibrated decision values of the strategy."""
        check_is_fitted(self, "pipeline_")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)
        return np.asarray(self.pipeline_.decision_function(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        p = self.calibration_.transform(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        trade = self.predict_proba(X)[:, 1] >= self.threshold_
        return np.asarray(self.classes_[trade.astype(int)])

    def linear_parameters(self) -> tuple[np.ndarray, float]:
        """``(coef, intercept)`` of the strategy on the standardised meta-features."""
        check_is_fitted(self, "pipeline_")
        model = self.pipeline_[-1]
        return np.asarray(model.coef_, dtype=np.float64).ravel(), float(
            np.ravel(model.intercept_)[0]
        )
