"""``optimal_threshold``: class-weight-balanced logistic regression.

The balanced weights stop the optimiser from settling on "never trade"; the
decision threshold is tuned afterwards on walk-forward predictions
(:mod:`metasignal.trainer.walk_forward`), never left at 0.5.
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression


def balanced_logistic_regression(
    *, C: float = 0.1, solver: str = "liblinear", max_iter: int = 2000, random_state: int = 42
) -> LogisticRegression:
    """The house meta-learner: ``LogisticRegression(class_weight='balanced', ...)``.

    Examples
    --------
    >>> balanced_logistic_regression().get_params()["class_weight"]
    'balanced'
    """
    return LogisticRegression(
        class_weight="balanced", solver=solver, C=C, max_iter=max_iter, random_state=random_state
    )


def plain_logistic_regression(*, max_iter: int = 2000) -> LogisticRegression:
    """Unweighted scikit-learn defaults: the naive baseline ``select`` must beat."""
    return LogisticRegression(max_iter=max_iter)
