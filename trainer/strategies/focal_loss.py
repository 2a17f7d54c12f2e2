"""Linear logistic classifier trained with the focal loss.

The meta-model sees a heavily imbalanced target (trades are rare), so easy, confidently
classified no-trade rows dominate a plain log-loss. The focal loss of Lin et al. (2017),
"Focal Loss for Dense Object Detection", down-weights those easy rows.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

__all__ = ["FocalLossClassifier", "focal_loss_and_gradient"]

FloatArray = npt.NDArray[np.float64]

# L-BFGS-B status for "iteration / evaluation limit reached": the iterate is still usable,
# unlike a line-search or numerical failure.
_LBFGSB_LIMIT_STATUS = 1


def focal_loss_and_gradient(
    params: FloatArray,
    X: FloatArray,
    y: FloatArray,
    *,
    gamma: float,
    alpha: float,
    C: float,
    sample_weight: FloatArray | None,
    fit_intercept: bool,
) -> tuple[float, FloatArray]:
    """L2-penalised focal loss of a linear logistic model and its gradient.

    Objective: ``0.5 * ||w||^2 + C * sum_i s_i * FL_i`` with ``p_i = sigmoid(x_i @ w + b)``
    and ``FL_i = -alpha (1-p_i)^gamma log(p_i)`` if ``y_i = 1`` else
    ``-(1-alpha) p_i^gamma log(1-p_i)``. The intercept is not penalised.

    Parameters
    ----------
    params : ndarray of shape (n_features,) or (n_features + 1,)
        Coefficients ``w``, followed by the intercept ``b`` when ``fit_intercept``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Targets encoded as 0.0 / 1.0.
    gamma, alpha, C : float
        Focusing parameter, positive-class weight and inverse L2 strength.
    sample_weight : ndarray of shape (n_samples,) or None
    fit_intercept : bool

    Returns
    -------
    loss : float
    grad : ndarray with the shape of ``params``
    """
    n_features = X.shape[1]
    w = params[:n_features]
    b = params[n_features] if fit_intercept else 0.0
    z = X @ w + b

    # log p and log(1-p) via log-sigmoid: clipping p would bias the loss and zero the
    # gradient of badly misclassified rows, which are exactly the ones that matter.
    log_p = -np.logaddexp(0.0, -z)
    log_q = -np.logaddexp(0.0, z)
    p = np.exp(log_p)
    q = np.exp(log_q)  # 1 - p without cancellation when p is close to 1
    # exp(gamma * log) rather than q**gamma keeps 0**0 == 1 and avoids underflow of q.
    mod_pos = np.exp(gamma * log_q)  # (1 - p)^gamma
    mod_neg = np.exp(gamma * log_p)  # p^gamma

    loss_pos = -alpha * mod_pos * log_p
    loss_neg = -(1.0 - alpha) * mod_neg * log_q
    # d/dz of each branch, using dp/dz = p (1 - p).
    dz_pos = alpha * mod_pos * (gamma * p * log_p - q)
    dz_neg = (1.0 - alpha) * mod_neg * (p - gamma * q * log_q)

    loss_i = np.where(y > 0.5, loss_pos, loss_neg)
    dz = np.where(y > 0.5, dz_pos, dz_neg)
    if sample_weight is not None:
        loss_i = loss_i * sample_weight
        dz = dz * sample_weight

    loss = 0.5 * float(w @ w) + C * float(loss_i.sum())
    grad = np.empty_like(params, dtype=np.float64)
    grad[:n_features] = w + C * (X.T @ dz)
    if fit_intercept:
        grad[n_features] = C * dz.sum()
    return loss, grad


class FocalLossClassifier(ClassifierMixin, BaseEstimator):
    """Binary linear logistic classifier minimising the L2-penalised focal loss.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter; ``gamma=0`` is class-weighted logistic regression.
    alpha : float, default=0.25
        Weight of the positive class, in (0, 1); negatives get ``1 - alpha``.
    C : float, default=1.0
        Inverse L2 strength, scaled as in :class:`~sklearn.linear_model.LogisticRegression`.
    fit_intercept : bool, default=True
        Whether to fit an (unpenalised) intercept.
    max_iter : int, default=1000
        Maximum number of L-BFGS-B iterations.
    tol : float, default=1e-8
        Tolerance on the projected gradient of the sample-weight-normalised objective.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
    coef_ : ndarray of shape (1, n_features)
    intercept_ : ndarray of shape (1,)
    n_features_in_ : int
    n_iter_ : int
        Iterations of the solver that produced ``coef_`` (the fallback's when it was used).
    converged_ : bool
        Whether the focal-loss optimisation converged.
    fallback_ : str or None
        Why the focal-loss optimisation was abandoned in favour of a balanced
        ``LogisticRegression`` (liblinear); ``None`` when it was not.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=200, weights=[0.9], random_state=0)
    >>> clf = FocalLossClassifier(gamma=2.0, alpha=0.25).fit(X, y)
    >>> clf.coef_.shape, clf.intercept_.shape
    ((1, 20), (1,))
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    >>> clf.converged_, clf.fallback_ is None
    (True, True)
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        alpha: float = 0.25,
        C: float = 1.0,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float = 1e-8,
    ) -> None:
        self.gamma = gamma
        self.alpha = alpha
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        assert tags.classifier_tags is not None
        tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> None:
        def is_real(value: object) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool)

        if not (is_real(self.gamma) and np.isfinite(self.gamma) and self.gamma >= 0):
            raise ValueError(f"gamma must be a finite float >= 0, got {self.gamma!r}.")
        if not (is_real(self.alpha) and 0 < self.alpha < 1):
            raise ValueError(
                f"alpha must be a float in the open interval (0, 1), got {self.alpha!r}."
            )
        if not (is_real(self.C) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C must be a finite float > 0, got {self.C!r}.")
        if not isinstance(self.fit_intercept, bool | np.bool_):
            raise ValueError(f"fit_intercept must be a bool, got {self.fit_intercept!r}.")
        if not (
            isinstance(self.max_iter, numbers.Integral)
            and not isinstance(self.max_iter, bool)
            and self.max_iter >= 1
        ):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}.")
        if not (is_real(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a float >= 0, got {self.tol!r}.")

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
    ) -> Self:
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Exactly two classes; the larger label (in sorted order) is the positive one.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-sample weights.

        Returns
        -------
        self : FocalLossClassifier
        """
        self._check_params()
        X_arr, y_arr = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y_arr)
        y_type = type_of_target(y_arr, input_name="y")
        if y_type != "binary":
            raise ValueError(
                "Only binary classification is supported. The type of the target "
                f"is {y_type}; FocalLossClassifier needs exactly two classes."
            )
        classes, y_idx = np.unique(y_arr, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "FocalLossClassifier needs samples of exactly 2 classes, but the data "
                f"contains only one class: {classes[0]!r}."
            )
        sw = _check_sample_weight(sample_weight, X_arr, dtype=np.float64, ensure_non_negative=True)
        y01 = y_idx.astype(np.float64)
        if not (sw[y_idx == 0].sum() > 0 and sw[y_idx == 1].sum() > 0):
            raise ValueError(
                "FocalLossClassifier needs both classes to have positive total sample "
                "weight; after weighting only one class is present."
            )

        n_features = X_arr.shape[1]
        # Optimise the objective divided by the total weight: the minimiser is unchanged but
        # `tol` then means the same thing for any dataset size (as in LogisticRegression).
        scale = 1.0 / float(sw.sum())

        def objective(params: FloatArray) -> tuple[float, FloatArray]:
            loss, grad = focal_loss_and_gradient(
                params,
                X_arr,
                y01,
                gamma=float(self.gamma),
                alpha=float(self.alpha),
                C=float(self.C),
                sample_weight=sw,
                fit_intercept=self.fit_intercept,
            )
            return loss * scale, grad * scale

        x0 = np.zeros(n_features + int(self.fit_intercept))
        fallback: str | None = None
        converged = False
        n_iter = 0
        params = x0
        try:
            # Trial steps of the line search may overflow; a non-finite outcome is handled below.
            with np.errstate(over="ignore", invalid="ignore"):
                result = minimize(
                    objective,
                    x0,
                    method="L-BFGS-B",
                    jac=True,
                    options={
                        "maxiter": self.max_iter,
                        "gtol": self.tol,
                        "ftol": 64 * np.finfo(np.float64).eps,
                        "maxls": 50,
                    },
                )
        except (ArithmeticError, ValueError, RuntimeError) as exc:
            fallback = f"L-BFGS-B raised {type(exc).__name__}: {exc}"
        else:
            n_iter = int(result.nit)
            params = np.asarray(result.x, dtype=np.float64)
            if not (np.all(np.isfinite(params)) and np.isfinite(result.fun)):
                fallback = "L-BFGS-B returned non-finite parameters or objective"
            elif result.success:
                converged = True
            elif result.status != _LBFGSB_LIMIT_STATUS:
                fallback = f"L-BFGS-B failed: {result.message}"
            else:
                warnings.warn(
                    f"FocalLossClassifier did not converge in max_iter={self.max_iter} "
                    f"iterations ({result.message}); consider increasing max_iter.",
                    ConvergenceWarning,
                    stacklevel=2,
                )

        if fallback is None:
            coef = params[:n_features].reshape(1, -1)
            intercept = np.array([params[n_features] if self.fit_intercept else 0.0])
        else:
            warnings.warn(
                f"{fallback}; falling back to a balanced LogisticRegression.",
                ConvergenceWarning,
                stacklevel=2,
            )
            lr = LogisticRegression(
                class_weight="balanced",
                solver="liblinear",
                C=self.C,
                fit_intercept=self.fit_intercept,
                max_iter=2000,
                random_state=42,
            )
            lr.fit(X_arr, y_idx, sample_weight=sw)
            coef = np.asarray(lr.coef_, dtype=np.float64).reshape(1, -1).copy()
            intercept = np.asarray(lr.intercept_, dtype=np.float64).reshape(1).copy()
            n_iter = int(np.max(lr.n_iter_))

        self.classes_ = classes
        self.coef_ = coef
        self.intercept_ = intercept
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.fallback_ = fallback
        return self

    def decision_function(self, X: npt.ArrayLike) -> FloatArray:
        """Log-odds of the positive class ``classes_[1]``, shape (n_samples,)."""
        check_is_fitted(self)
        X_arr = validate_data(self, X, reset=False, dtype=np.float64)
        scores: FloatArray = X_arr @ self.coef_[0] + self.intercept_[0]
        return scores

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """Class probabilities, shape (n_samples, 2), columns ordered as ``classes_``."""
        z = self.decision_function(X)
        # expit(-z) instead of 1 - expit(z) keeps tiny negative-class probabilities accurate.
        return np.column_stack([expit(-z), expit(z)])

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """Predicted class labels, shape (n_samples,)."""
        z = self.decision_function(X)
        labels: npt.NDArray[Any] = self.classes_[(z > 0).astype(np.intp)]
        return labels
