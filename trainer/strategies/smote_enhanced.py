"""``smote_enhanced``: SMOTE on the meta-features, then the balanced logistic regression.

Resampling lives inside the estimator's ``fit``, so in walk-forward validation
it only ever sees the training fold; validation and holdout rows stay real.
With too few positives for ``k_neighbors`` it degrades step by step (smaller
k, then random oversampling, then class weights alone) and records each step
in ``fallbacks_``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 3))
>>> y = (X[:, 0] > 1.9).astype(int)
>>> model = SmoteLogisticRegression().fit(X, y)
>>> model.sampler_
'SMOTE(k_neighbors=5)'
>>> few = SmoteLogisticRegression().fit(X[:200], (np.arange(200) < 3).astype(int))
>>> few.fallbacks_
['smote_enhanced: 3 positives < k_neighbors + 1 = 6; k_neighbors reduced to 2']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from metasignal.trainer.strategies.optimal_threshold import balanced_logistic_regression


class SmoteLogisticRegression(ClassifierMixin, BaseEstimator):
    """SMOTE to ``sampling_strategy`` minority/majority, then balanced LR.

    Parameters
    ----------
    sampling_strategy : float
        Minority-to-majority ratio after resampling.
    k_neighbors : int
        SMOTE neighbours; reduced automatically when positives are scarce.
    C, solver, max_iter, random_state
        Passed to the balanced logistic regression (and the samplers' seed).
    """

    def __init__(
        self,
        *,
        sampling_strategy: float = 0.5,
        k_neighbors: int = 5,
        C: float = 0.1,
        solver: str = "liblinear",
        max_iter: int = 2000,
        random_state: int = 42,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.C = C
        self.solver = solver
        self.max_iter = max_iter
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _choose_sampler(self, n_minority: int, n_majority: int) -> tuple[Any, list[str]]:
        # imbalanced-learn is imported when a SMOTE strategy is fitted, not whenever the
        # strategies are listed: a fit that never tries smote_enhanced skips its import.
        from imblearn.over_sampling import SMOTE, RandomOverSampler

        # imblearn rounds the target count down; at or below the current count it refuses.
        if int(self.sampling_strategy * n_majority) <= n_minority:
            return None, ["smote_enhanced: classes already at the target ratio; class weights only"]
        if n_minority >= self.k_neighbors + 1:
            return SMOTE(
                sampling_strategy=self.sampling_strategy,
                k_neighbors=self.k_neighbors,
                random_state=self.random_state,
            ), []
        if n_minority >= 2:
            k = n_minority - 1
            return SMOTE(
                sampling_strategy=self.sampling_strategy,
                k_neighbors=k,
                random_state=self.random_state,
            ), [
                f"smote_enhanced: {n_minority} positives < k_neighbors + 1 = "
                f"{self.k_neighbors + 1}; k_neighbors reduced to {k}"
            ]
        return RandomOverSampler(
            sampling_strategy=self.sampling_strategy, random_state=self.random_state
        ), [f"smote_enhanced: {n_minority} positive too few for SMOTE; random oversampling"]

    def fit(self, X: Any, y: Any) -> SmoteLogisticRegression:
        from imblearn.over_sampling import SMOTE
        from imblearn.pipeline import Pipeline

        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if type_of_target(y) != "binary":
            raise ValueError(
                "Only binary classification is supported: SmoteLogisticRegression got "
                f"a {type_of_target(y)} target"
            )
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("SmoteLogisticRegression needs two classes; y holds only one class")
        counts = np.bincount(encoded, minlength=2)
        minority = int(np.argmin(counts))
        sampler, self.fallbacks_ = self._choose_sampler(
            int(counts[minority]), int(counts[1 - minority])
        )
        model = balanced_logistic_regression(
            C=self.C, solver=self.solver, max_iter=self.max_iter, random_state=self.random_state
        )
        steps: list[tuple[str, Any]] = [("model", model)]
        if sampler is not None:
            steps.insert(0, ("resample", sampler))
        self.pipeline_ = Pipeline(steps).fit(X, encoded)
        if sampler is None:
            self.sampler_ = "none"
        elif isinstance(sampler, SMOTE):
            self.sampler_ = f"SMOTE(k_neighbors={sampler.k_neighbors})"
        else:
            self.sampler_ = "RandomOverSampler"
        self.coef_ = model.coef_
        self.intercept_ = model.intercept_
        self.n_iter_ = model.n_iter_
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(X @ self.coef_[0] + self.intercept_[0])

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return np.asarray(self.classes_[(self.decision_function(X) > 0).astype(int)])
