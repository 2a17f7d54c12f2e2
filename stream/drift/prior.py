"""Prior (label) shift from calibrated scores: the live positive rate without outcomes.

Under *label shift* the class-conditional vote distributions ``p(x | y)`` stay put and only
the positive rate moves. Scores calibrated to a reference rate ``pi0`` then determine the
density ratio of any other rate ``pi`` exactly (Saerens, Latinne & Decaestecker 2002):

``p_pi(x) / p_pi0(x) = pi s / pi0 + (1 - pi)(1 - s) / (1 - pi0)``
``= 1 + (pi - pi0)(s - pi0) / (pi0 (1 - pi0))``

with ``s`` the calibrated score of ``x``. :func:`mixture_weight` is that ratio;
:func:`estimate_prior` maximises its log-likelihood over a window of scores (the fixed
point of Saerens' EM, reached here by safeguarded Newton steps on the concave
log-likelihood, a handful of vectorised passes instead of EM's slow crawl when the
classes overlap); :func:`adjust_posteriors` re-expresses the scores under the new rate.

Examples
--------
Scores of a calibrated model at 1 %, then the same kind of events at 2 %:

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def scores(rate, n):
...     y = rng.random(n) < rate
...     logit = np.where(y, 1.0, -1.0) + rng.normal(0, 1, n)   # p(x | y) fixed
...     odds = np.exp(2 * logit) * 0.01 / 0.99                 # calibrated at 1 %
...     return odds / (1 + odds)
>>> before, after = scores(0.01, 200_000), scores(0.02, 200_000)
>>> round(estimate_prior(before, 0.01), 4), round(estimate_prior(after, 0.01), 4)
(0.0101, 0.0194)
>>> round(float(after.mean()), 4)  # the raw mean of the scores barely moves
0.0115
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["adjust_posteriors", "estimate_prior", "mixture_weight", "prior_agreement"]

_EDGE = 1e-6  # the estimate stays inside [_EDGE, 1 - _EDGE]


def _check_rate(rate: float, name: str) -> None:
    if not 0.0 < rate < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {rate}")


def mixture_weight(scores: np.ndarray, reference_rate: float, rate: float) -> np.ndarray:
    """Density ratio ``p_rate(x) / p_reference(x)`` of each event, from its calibrated score.

    Its mean under the reference is exactly 1 when the scores are calibrated there, so its
    logarithm is a likelihood-ratio increment for a change of the rate.

    Examples
    --------
    >>> mixture_weight(np.array([0.0, 0.01, 1.0]), 0.01, 0.02).round(4).tolist()
    [0.9899, 1.0, 2.0]
    """
    _check_rate(reference_rate, "reference_rate")
    slope = (rate - reference_rate) / (reference_rate * (1.0 - reference_rate))
    return 1.0 + slope * (np.asarray(scores, dtype=np.float64) - reference_rate)


def adjust_posteriors(scores: np.ndarray, reference_rate: float, rate: float) -> np.ndarray:
    """Scores calibrated at ``reference_rate`` re-expressed for a positive rate ``rate``.

    Bayes' rule with the prior odds changed: ``odds' = odds * (rate / (1 - rate)) /
    (reference / (1 - reference))``.

    Examples
    --------
    >>> adjust_posteriors(np.array([0.01, 0.5]), 0.01, 0.02).round(4).tolist()
    [0.02, 0.6689]
    """
    _check_rate(reference_rate, "reference_rate")
    _check_rate(rate, "rate")
    s = np.asarray(scores, dtype=np.float64)
    up = rate / reference_rate
    down = (1.0 - rate) / (1.0 - reference_rate)
    positive = up * s
    return positive / (positive + down * (1.0 - s))


def estimate_prior(
    scores: np.ndarray,
    reference_rate: float,
    *,
    start: float | None = None,
    tol: float = 1e-9,
    max_iter: int = 50,
) -> float:
    """Maximum-likelihood positive rate of a window of scores calibrated at ``reference_rate``.

    Solves ``sum(c / (1 + (pi - pi0) c)) = 0`` with ``c = (s - pi0) / (pi0 (1 - pi0))``:
    the score of ``log p_pi(x)`` summed over the window, strictly decreasing in ``pi``,
    so Newton steps kept inside a shrinking bracket always converge. The root is the EM
    fixed point of Saerens et al. (2002): the mean of :func:`adjust_posteriors` equals it.

    Parameters
    ----------
    scores
        Calibrated probabilities of the window's events.
    reference_rate
        The positive rate the scores are calibrated to.
    start
        Initial guess (the previous window's estimate makes it two or three steps).
    tol, max_iter
        Stop when a step moves the rate by less than ``tol``, or after ``max_iter``.

    Examples
    --------
    >>> s = np.array([0.001, 0.002, 0.005, 0.03, 0.2])
    >>> rate = estimate_prior(s, 0.01)
    >>> round(rate, 4), round(float(adjust_posteriors(s, 0.01, rate).mean()), 4)
    (0.4174, 0.4174)
    """
    _check_rate(reference_rate, "reference_rate")
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return math.nan
    c = (s - reference_rate) / (reference_rate * (1.0 - reference_rate))

    def gradient(rate: float) -> tuple[float, float]:
        q = c / (1.0 + (rate - reference_rate) * c)
        return float(q.sum()), float(-(q @ q))

    low, high = _EDGE, 1.0 - _EDGE
    if gradient(low)[0] <= 0.0:
        return low
    if gradient(high)[0] >= 0.0:
        return high
    rate = reference_rate if start is None or not low < start < high else start
    for _ in range(max_iter):
        g, h = gradient(rate)
        if g > 0.0:
            low = rate
        else:
            high = rate
        step = rate - g / h if h < 0.0 else math.nan
        new = step if low < step < high else 0.5 * (low + high)
        if abs(new - rate) < tol:
            return new
        rate = new
    return rate


def prior_agreement(
    labels: np.ndarray, scores: np.ndarray, reference_rate: float, rate: float
) -> float:
    """z-score of the realized positives against the label-free expectation, same events.

    Under label shift each label is Bernoulli(adjusted score at the true rate) given the
    votes, so ``k - sum(s')`` has the labels' variance ``sum(s' (1 - s'))`` plus that of
    the rate estimate (``n / I``, ``I`` the Fisher information of a score about the rate;
    added, which errs on the safe side). A large value means the scores no longer describe
    ``P(y | x)`` (concept drift, or a miscalibrated model) and the label-free estimates
    cannot be trusted.

    Examples
    --------
    >>> s = np.full(10_000, 0.02)
    >>> round(prior_agreement(np.r_[np.ones(200), np.zeros(9_800)], s, 0.02, 0.02), 2)
    0.0
    >>> s = np.r_[np.full(9_000, 0.005), np.full(1_000, 0.155)]  # mean 0.02
    >>> round(prior_agreement(np.r_[np.ones(400), np.zeros(9_600)], s, 0.02, 0.02), 1)
    4.4
    """
    adjusted = adjust_posteriors(scores, reference_rate, rate)
    n = len(adjusted)
    c = (np.asarray(scores, dtype=np.float64) - reference_rate) / (
        reference_rate * (1.0 - reference_rate)
    )
    q = c / (1.0 + (rate - reference_rate) * c)
    information = float(q @ q) / n if n else 0.0
    spread = float(np.sum(adjusted * (1.0 - adjusted)))
    if spread <= 0.0:
        return math.nan
    if information > 0.0:
        spread += n / information
    return float((np.sum(labels) - adjusted.sum()) / math.sqrt(spread))
