"""Turn a strategy's raw decision values into calibrated P(trade).

Class weights, SMOTE and the focal loss all shift the model's implied base rate
(balanced weights pretend trades happen half the time). Platt scaling fitted on
*out-of-fold* decision values maps them back to the real frequency, so the
published score means what it says and the threshold lives on a stable scale.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> raw = rng.normal(size=5000)
>>> y = (rng.random(5000) < 1 / (1 + np.exp(-(2 * raw - 3)))).astype(int)
>>> cal = fit_platt(raw, y)
>>> round(cal.slope, 1), round(cal.intercept, 1)
(2.0, -3.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from metasignal.stream.artifact import CalibrationMap
from metasignal.stream.scoring import sigmoid


@dataclass(frozen=True)
class PlattCalibration:
    """``P(trade) = sigmoid(slope * raw + intercept)``."""

    slope: float
    intercept: float

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(raw, dtype=np.float64) + self.intercept)

    def to_dict(self) -> CalibrationMap:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}


def _platt_objective(
    params: np.ndarray, raw: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    z = params[0] * raw + params[1]
    # log(1 + e^z) - y z is the log-loss written without ever forming p.
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    residual = sigmoid(z) - y
    return loss, np.array([residual @ raw, residual.sum()])


def fit_platt(raw: np.ndarray, y: np.ndarray) -> PlattCalibration:
    """Unregularised 1-D logistic regression of the labels on the decision values."""
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    start = np.array([1.0, float(np.log(rate / (1 - rate)))])
    result = minimize(_platt_objective, start, args=(raw, y), jac=True, method="L-BFGS-B")
    slope, intercept = (float(v) for v in result.x)
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        # Perfectly separated out-of-fold scores push the slope to infinity; the prior is safer.
        slope, intercept = 1.0, float(start[1])
    return PlattCalibration(slope=slope, intercept=intercept)


def fit_transfer(published_raw: np.ndarray, oof_scores: np.ndarray) -> PlattCalibration:
    """The calibration map for the *published* model's decision values, fitted without labels.

    The strategy's calibration map was fitted on out-of-fold decision values of walk-forward
    fold models trained on fewer rows; the published model, refitted on every row, is less
    regularised and spreads its decision values wider, so the same map makes it
    over-confident at the top (``bench/label_free.py`` measures it). This fits a Platt map
    of the published model's decision values on the same training rows to their
    out-of-fold calibrated scores used as soft targets: it reads the published model on
    the scale the calibrator was fitted on, and uses no label beyond the ones the
    out-of-fold calibration used. The trainer serves it as the published calibration
    (:func:`compose_transfer`).

    Examples
    --------
    A published model whose decision values are 1.5 times the fold models':

    >>> rng = np.random.default_rng(0)
    >>> fold_raw = rng.normal(size=20_000)
    >>> cal = PlattCalibration(slope=2.0, intercept=-4.0)
    >>> transfer = fit_transfer(1.5 * fold_raw, cal.transform(fold_raw))
    >>> round(transfer.slope, 3), round(transfer.intercept, 3)
    (1.333, -4.0)
    """
    return fit_platt(published_raw, np.clip(np.asarray(oof_scores, dtype=np.float64), 0.0, 1.0))


def compose_transfer(
    calibration: PlattCalibration, transfer: PlattCalibration, threshold: float
) -> tuple[PlattCalibration, float]:
    """The served calibration ``transfer`` and the threshold on its scale that keeps every decision.

    Both maps are Platt maps of the same decision value ``r`` with positive slopes, so
    ``transfer`` is a monotone function of the old score: the old threshold ``t`` is
    crossed at ``r* = (logit(t) - c) / k`` and the new one is ``transfer(r*)``; a score
    reaches the new threshold iff it reached the old one. A threshold of 0 or 1 (trade
    always / never) stays as it is; a ``transfer`` without a positive slope (no order to
    keep) leaves both unchanged.

    >>> old = PlattCalibration(slope=2.0, intercept=-4.0)
    >>> new, t = compose_transfer(old, PlattCalibration(slope=1.5, intercept=-3.5), 0.5)
    >>> new.slope, round(t, 4), round(float(new.transform(np.array([2.0]))[0]), 4)
    (1.5, 0.3775, 0.3775)
    """
    if not (calibration.slope > 0.0 and transfer.slope > 0.0 and np.isfinite(transfer.slope)):
        return calibration, threshold
    if not 0.0 < threshold < 1.0:
        return transfer, threshold
    crossing = (math.log(threshold) - math.log1p(-threshold) - calibration.intercept) / (
        calibration.slope
    )
    served = float(transfer.transform(np.array([crossing]))[0])
    if not 0.0 < served < 1.0:  # saturated in floating point: decisions could flip
        return calibration, threshold
    return transfer, served


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (lower is better)."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y)) ** 2))


def reliability_curve(
    y: np.ndarray, p: np.ndarray, *, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted vs observed rate in quantile bins (rare events need quantile bins).

    Returns ``(mean_predicted, observed_rate, count)`` per non-empty bin.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, min(n_bins, len(p)))
    kept = [b for b in bins if len(b)]
    return (
        np.array([p[b].mean() for b in kept]),
        np.array([y[b].mean() for b in kept]),
        np.array([len(b) for b in kept]),
    )
