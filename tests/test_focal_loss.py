from __future__ import annotations

import doctest
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import OptimizeResult
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import check_estimator

import metasignal.trainer.strategies.focal_loss as focal_module
from metasignal.trainer.strategies.focal_loss import FocalLossClassifier, focal_loss_and_gradient

FloatArray = npt.NDArray[np.float64]


def _problem(
    n_samples: int = 60, n_features: int = 4, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    y = (X[:, 0] - 0.5 * X[:, 1] + rng.normal(size=n_samples) > 0.3).astype(np.float64)
    return X, y


def _rare_event_problem(
    n_samples: int, seed: int, positive_rate: float = 0.02
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    # Gaussian classes with a mean shift: Bayes AUC is Phi(||mu|| / sqrt(2)) ~ 0.91.
    rng = np.random.default_rng(seed)
    n_pos = round(positive_rate * n_samples)
    y = np.zeros(n_samples, dtype=np.int64)
    y[rng.choice(n_samples, size=n_pos, replace=False)] = 1
    X = rng.normal(size=(n_samples, 10))
    X[y == 1, :3] += np.array([1.5, 1.0, 0.5])
    return X, y


def _naive_objective(
    params: FloatArray,
    X: FloatArray,
    y: FloatArray,
    *,
    gamma: float,
    alpha: float,
    C: float,
    sample_weight: FloatArray | None,
    fit_intercept: bool,
) -> float:
    # Literal transcription of the paper's formula; only valid for moderate logits.
    w = params[: X.shape[1]]
    b = params[-1] if fit_intercept else 0.0
    p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
    fl = -(y * alpha * (1 - p) ** gamma * np.log(p)) - (
        (1 - y) * (1 - alpha) * p**gamma * np.log(1 - p)
    )
    sw = np.ones_like(y) if sample_weight is None else sample_weight
    return float(0.5 * w @ w + C * np.sum(sw * fl))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [0.25, 0.75])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_gradient_matches_central_differences(
    gamma: float, alpha: float, fit_intercept: bool, weighted: bool
) -> None:
    X, y = _problem()
    rng = np.random.default_rng(1)
    params = rng.normal(scale=1.5, size=X.shape[1] + int(fit_intercept))
    sw = rng.uniform(0.0, 3.0, size=X.shape[0]) if weighted else None
    kwargs: dict[str, Any] = dict(
        gamma=gamma, alpha=alpha, C=2.0, sample_weight=sw, fit_intercept=fit_intercept
    )

    _, grad = focal_loss_and_gradient(params, X, y, **kwargs)
    numeric = np.empty_like(params)
    h = 1e-5
    for j in range(params.size):
        step = np.zeros_like(params)
        step[j] = h
        f_plus, _ = focal_loss_and_gradient(params + step, X, y, **kwargs)
        f_minus, _ = focal_loss_and_gradient(params - step, X, y, **kwargs)
        numeric[j] = (f_plus - f_minus) / (2 * h)

    rel_err = np.linalg.norm(grad - numeric) / np.linalg.norm(numeric)
    assert rel_err < 1e-6


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_loss_matches_paper_formula(gamma: float, fit_intercept: bool) -> None:
    X, y = _problem()
    rng = np.random.default_rng(2)
    params = rng.normal(size=X.shape[1] + int(fit_intercept))
    sw = rng.uniform(0.5, 2.0, size=X.shape[0])
    kwargs: dict[str, Any] = dict(
        gamma=gamma, alpha=0.3, C=0.7, sample_weight=sw, fit_intercept=fit_intercept
    )

    loss, _ = focal_loss_and_gradient(params, X, y, **kwargs)

    assert loss == pytest.approx(_naive_objective(params, X, y, **kwargs), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    scale=st.floats(min_value=1e-3, max_value=1e6),
    gamma=st.floats(min_value=0.0, max_value=6.0),
    alpha=st.floats(min_value=0.01, max_value=0.99),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_loss_and_gradient_finite_for_extreme_logits(
    scale: float, gamma: float, alpha: float, seed: int
) -> None:
    # Logits up to ~1e6 would make log(p) -inf with a naive implementation.
    X, y = _problem(n_samples=20, seed=seed % 7)
    params = np.random.default_rng(seed).normal(scale=scale, size=X.shape[1] + 1)
    kwargs: dict[str, Any] = dict(
        gamma=gamma, alpha=alpha, C=1.0, sample_weight=None, fit_intercept=True
    )

    loss, grad = focal_loss_and_gradient(params, X, y, **kwargs)
    ce_loss, _ = focal_loss_and_gradient(params, X, y, **{**kwargs, "gamma": 0.0})

    assert np.isfinite(loss)
    assert np.all(np.isfinite(grad))
    # The modulating factor is <= 1, so focal loss never exceeds weighted cross-entropy.
    assert loss <= ce_loss * (1 + 1e-12) + 1e-12


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("alpha", [0.25, 0.6])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gamma_zero_matches_weighted_logistic_regression(
    C: float, alpha: float, fit_intercept: bool
) -> None:
    X, y = _problem(n_samples=400, n_features=6, seed=3)

    focal = FocalLossClassifier(gamma=0.0, alpha=alpha, C=C, fit_intercept=fit_intercept).fit(X, y)
    ref = LogisticRegression(
        C=C,
        class_weight={0: 1 - alpha, 1: alpha},
        solver="lbfgs",
        tol=1e-12,
        max_iter=10000,
        fit_intercept=fit_intercept,
    ).fit(X, y)

    assert focal.converged_
    assert focal.fallback_ is None
    np.testing.assert_allclose(focal.coef_, ref.coef_, rtol=0, atol=1e-5)
    np.testing.assert_allclose(focal.intercept_, np.atleast_1d(ref.intercept_), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "estimator", [FocalLossClassifier(), FocalLossClassifier(gamma=0.5, alpha=0.5)], ids=repr
)
def test_sklearn_estimator_checks(estimator: FocalLossClassifier) -> None:
    # check_estimator turns the checks this environment cannot run (pandas, array API)
    # into warnings instead of skipped tests; every other check must pass.
    check_estimator(estimator)


def test_rare_positive_ranking_and_determinism() -> None:
    X, y = _rare_event_problem(n_samples=20000, seed=0)
    X_train, X_test, y_train, y_test = X[:10000], X[10000:], y[:10000], y[10000:]
    assert 0.015 < y_train.mean() < 0.025

    first = FocalLossClassifier(gamma=2.0).fit(X_train, y_train)
    second = clone(first).fit(X_train, y_train)

    assert first.converged_
    assert first.fallback_ is None
    assert roc_auc_score(y_test, first.decision_function(X_test)) > 0.8
    np.testing.assert_array_equal(first.coef_, second.coef_)
    np.testing.assert_array_equal(first.intercept_, second.intercept_)
    np.testing.assert_array_equal(first.predict_proba(X_test), second.predict_proba(X_test))


def test_string_labels_keep_order_of_classes() -> None:
    X, y = _problem(n_samples=200)
    labels = np.where(y > 0, "trade", "hold")

    clf = FocalLossClassifier().fit(X, labels)

    assert list(clf.classes_) == ["hold", "trade"]
    assert set(clf.predict(X)) <= {"hold", "trade"}
    np.testing.assert_array_equal(
        clf.predict(X), np.where(clf.predict_proba(X)[:, 1] > 0.5, "trade", "hold")
    )


def _assert_valid_fallback(clf: FocalLossClassifier, X: FloatArray, y: FloatArray) -> None:
    assert isinstance(clf.fallback_, str)
    assert clf.fallback_
    assert clf.converged_ is False
    ref = LogisticRegression(
        class_weight="balanced", solver="liblinear", C=clf.C, max_iter=2000, random_state=42
    ).fit(X, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_)
    np.testing.assert_allclose(clf.intercept_, ref.intercept_)
    proba = clf.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(clf.predict(X))) <= set(clf.classes_)
    assert roc_auc_score(y, clf.decision_function(X)) > 0.7


def _fake_minimize(x_fill: float = 0.0, **result: Any) -> Any:
    def fake(fun: Any, x0: FloatArray, **kwargs: Any) -> OptimizeResult:
        base = dict(
            x=np.full_like(x0, x_fill), fun=0.0, success=True, status=0, nit=3, message="ok"
        )
        return OptimizeResult({**base, **result})

    return fake


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (_fake_minimize(success=False, status=2, message="ABNORMAL"), "ABNORMAL"),
        (_fake_minimize(x_fill=np.nan), "non-finite"),
        (_fake_minimize(fun=np.inf), "non-finite"),
    ],
    ids=["success-false", "nan-params", "inf-objective"],
)
def test_fallback_when_optimiser_fails(
    monkeypatch: pytest.MonkeyPatch, fake: Any, reason: str
) -> None:
    X, y = _problem(n_samples=200)
    monkeypatch.setattr(focal_module, "minimize", fake)

    with pytest.warns(ConvergenceWarning, match="falling back"):
        clf = FocalLossClassifier().fit(X, y)

    assert clf.fallback_ is not None
    assert reason in clf.fallback_
    _assert_valid_fallback(clf, X, y)


def test_fallback_when_optimiser_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _problem(n_samples=200)

    def boom(*args: Any, **kwargs: Any) -> OptimizeResult:
        raise FloatingPointError("simulated breakdown")

    monkeypatch.setattr(focal_module, "minimize", boom)

    with pytest.warns(ConvergenceWarning, match="falling back"):
        clf = FocalLossClassifier().fit(X, y)

    assert clf.fallback_ is not None
    assert "simulated breakdown" in clf.fallback_
    _assert_valid_fallback(clf, X, y)


def test_iteration_limit_warns_but_keeps_focal_solution() -> None:
    X, y = _problem(n_samples=200)

    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        clf = FocalLossClassifier(max_iter=1).fit(X, y)

    assert clf.converged_ is False
    assert clf.fallback_ is None
    assert clf.n_iter_ == 1


def test_converged_fit_emits_no_warning() -> None:
    X, y = _problem(n_samples=200)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = FocalLossClassifier().fit(X, y)

    assert clf.converged_
    assert clf.fallback_ is None
    assert clf.n_iter_ >= 1


def test_multiclass_target_is_rejected() -> None:
    X, _ = _problem(n_samples=30)
    y = np.arange(30) % 3

    with pytest.raises(ValueError, match="Only binary classification is supported"):
        FocalLossClassifier().fit(X, y)


def test_single_class_is_rejected() -> None:
    X, _ = _problem(n_samples=30)

    with pytest.raises(ValueError, match="only one class"):
        FocalLossClassifier().fit(X, np.ones(30))


def test_class_with_zero_total_weight_is_rejected() -> None:
    X, y = _problem(n_samples=30)

    with pytest.raises(ValueError, match="positive total sample weight"):
        FocalLossClassifier().fit(X, y, sample_weight=y)


def test_negative_sample_weight_is_rejected() -> None:
    X, y = _problem(n_samples=30)
    sw = np.ones(30)
    sw[0] = -1.0

    with pytest.raises(ValueError, match="Negative values"):
        FocalLossClassifier().fit(X, y, sample_weight=sw)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"gamma": -0.1}, "gamma"),
        ({"gamma": np.inf}, "gamma"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"C": 0.0}, "C must"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"fit_intercept": "yes"}, "fit_intercept"),
    ],
)
def test_invalid_parameters_are_rejected(params: dict[str, Any], match: str) -> None:
    X, y = _problem(n_samples=30)

    with pytest.raises(ValueError, match=match):
        FocalLossClassifier(**params).fit(X, y)


def test_docstring_example_runs() -> None:
    result = doctest.testmod(focal_module, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0
