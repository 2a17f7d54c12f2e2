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
from threadpoolctl import threadpool_limits

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
    objective = FocalObjective(
        X,
        y,
        gamma=gamma,
        alpha=alpha,
        C=C,
        sample_weight=sample_weight,
        fit_intercept=fit_intercept,
    )
    return objective(params)


class FocalObjective:
    """:func:`focal_loss_and_gradient` for one data set, evaluated many times by L-BFGS-B.

    Everything that depends on ``y`` only (the label sign, the class weights) is computed
    once, and each call works in four preallocated row buffers: at a million rows the
    temporaries of a plain numpy expression cost more than the arithmetic.

    Each row is handled through its *margin* ``t = +z`` for a positive and ``-z`` for a
    negative, so both branches of the loss are one formula: with ``log_own = log sigmoid(t)``
    (the log-probability of the row's own class) and ``log_other = log sigmoid(-t)``,
    ``FL = -a * exp(gamma * log_other) * log_own`` (``a`` = alpha or 1 - alpha), and
    ``dFL/dt = a * exp(gamma * log_other) * (gamma * p_own * log_own - p_other)``.
    ``log sigmoid(t) = min(t, 0) - log1p(exp(-|t|))`` is the stable log-sigmoid
    (``numpy.logaddexp``'s formula), never ``log`` of a clipped probability, which would
    bias the loss and zero the gradient of badly misclassified rows.
    """

    def __init__(
        self,
        X: FloatArray,
        y: FloatArray,
        *,
        gamma: float,
        alpha: float,
        C: float,
        sample_weight: FloatArray | None,
        fit_intercept: bool,
    ) -> None:
        positive = np.asarray(y) > 0.5
        self.X = X
        self.gamma = gamma
        self.C = C
        self.fit_intercept = fit_intercept
        self.sign = np.where(positive, 1.0, -1.0)
        weight = np.where(positive, alpha, 1.0 - alpha)
        self.weight = weight if sample_weight is None else weight * sample_weight
        self._buffers = [np.empty(X.shape[0]) for _ in range(4)]

    def __call__(self, params: FloatArray) -> tuple[float, FloatArray]:
        n_features = self.X.shape[1]
        w = params[:n_features]
        margin, work, log_own, log_other = self._buffers
        np.dot(self.X, w, out=margin)
        if self.fit_intercept:
            margin += params[n_features]
        margin *= self.sign
        # work = log1p(exp(-|t|)); log_own = min(t, 0) - work; log_other = -max(t, 0) - work.
        np.abs(margin, out=work)
        np.negative(work, out=work)
        np.exp(work, out=work)
        np.log1p(work, out=work)
        np.minimum(margin, 0.0, out=log_own)
        log_own -= work
        np.maximum(margin, 0.0, out=log_other)
        np.negative(log_other, out=log_other)
        log_other -= work
        # work = a * (1 - p_own)^gamma: exp(gamma * log) keeps 0**0 == 1 and cannot underflow
        # the way (1 - p)**gamma does when p is close to 1.
        np.multiply(log_other, self.gamma, out=work)
        np.exp(work, out=work)
        work *= self.weight
        loss = 0.5 * float(w @ w) - self.C * float(work @ log_own)
        # dFL/dz = sign * work * (gamma * p_own * log_own - p_other), built in `margin`.
        p_other = np.exp(log_other, out=log_other)
        np.exp(log_own, out=margin)
        margin *= log_own
        margin *= self.gamma
        margin -= p_other
        margin *= work
        margin *= self.sign
        grad = np.empty_like(params, dtype=np.float64)
        grad[:n_features] = w + self.C * (margin @ self.X)
        if self.fit_intercept:
            grad[n_features] = self.C * margin.sum()
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

        focal = FocalObjective(
            X_arr,
            y01,
            gamma=float(self.gamma),
            alpha=float(self.alpha),
            C=float(self.C),
            sample_weight=sw,
            fit_intercept=self.fit_intercept,
        )

        def objective(params: FloatArray) -> tuple[float, FloatArray]:
            loss, grad = focal(params)
            return loss * scale, grad * scale

        x0 = np.zeros(n_features + int(self.fit_intercept))
        fallback: str | None = None
        converged = False
        n_iter = 0
        params = x0
        try:
            # Trial steps of the line search may overflow; a non-finite outcome is handled below.
            # One BLAS thread: the products are (rows x members) by a vector, memory-bound,
            # where BLAS threads add hand-offs and spinning, not speed (5x less CPU and a
            # fraction of the wall time on 400k rows of the shared 2-core machine).
            with (
                np.errstate(over="ignore", invalid="ignore"),
                threadpool_limits(limits=1, user_api="blas"),
            ):
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
