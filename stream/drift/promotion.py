"""Is a shadow challenger better than the incumbent? A group-sequential test on paired F1.

Both models decide on the same events and are judged on the same joined outcomes, so the
comparison is *paired*. F1 at each model's own threshold is a ratio of means,
``F1 = 2 mean(y d) / (mean(d) + mean(y))``, so the difference of the two F1 is, to first
order, a mean of per-event influence terms (the delta method)::

    psi_i = [2 y_i c_i - F1_c (c_i + y_i)] / (mean(c) + mean(y))
          - [2 y_i b_i - F1_b (b_i + y_i)] / (mean(b) + mean(y))

(``c`` the challenger's decisions, ``b`` the incumbent's). Its variance, estimated from the
eight paired confusion counts ``(y, b, c)``, carries the covariance of the two models: events
both models get right or wrong cancel, only the discordant ones cost information.

The statistic ``Z = (F1_c - F1_b - margin) / se`` is examined at fixed looks (every
``look_every`` outcomes from ``min_outcomes`` to ``max_outcomes``) against one-sided
efficacy boundaries from the Lan-DeMets alpha-spending function of O'Brien-Fleming type
(Lan & DeMets 1983, *Biometrika* 70: 659-663; O'Brien & Fleming 1979, *Biometrics* 35:
549-556), computed by the recursive numerical integration of Armitage, McPherson & Rowe
(1969; Jennison & Turnbull 2000, *Group Sequential Methods*, ch. 19). So the probability
of a false ``"better"`` over all the looks together is at most ``alpha`` (asymptotically,
as the influence terms make ``Z`` a Brownian motion in information time). O'Brien-Fleming
spending keeps almost all of ``alpha`` for the later looks: the early looks, with a few
dozen positives where the normal approximation is poor, need ``|Z|`` of 5 or more.

Futility is for a minimum worthwhile improvement ``min_improvement`` (``delta``, F1
points on top of ``margin``, default 0.03): ``"not_better"`` as soon as
``Z_delta = (F1_c - F1_b - margin - delta) / se`` falls to ``-futility_boundary``, i.e. as
soon as the repeated upper confidence bound ``difference + futility_boundary * se`` is
below ``margin + delta``: an improvement of ``delta`` or more has become unlikely. The
futility boundaries come from the same recursion with a Lan-DeMets Pocock-type
*beta*-spending function, ``beta ln(1 + (e - 1) t)`` (Jennison & Turnbull 2000, ch. 7),
applied to ``Z_delta``, which is a zero-drift Brownian motion when the challenger is
better than ``margin`` by exactly ``delta``: a challenger better by ``delta`` or more is
wrongly retired with probability at most ``futility_beta``, asymptotically (the efficacy
stops, ignored by that computation, only lower it). Measured on real pairs of models
(``bench/shadow.py``) it is 22 % for a nominal 0.2: at the first looks (~50-100
positives) the delta-method ``Z_delta`` is slightly over-dispersed and left-skewed.
Pocock-type spending spends the beta early, where futility pays: an O'Brien-Fleming-type
spending holds it for the late looks, where the horizon stops the test anyway (in a
count-level trial on the benchmark's pairs, Hwang-Shih-DeCani gamma -2 spending retired an
equal challenger at 1 % positives after 18,500 outcomes, Pocock after 12,500, for the
same beta error within a point). The rule is *non-binding*: the efficacy boundaries are
computed as if futility never stopped, and a look that crosses both says ``"better"``, so
the false-``"better"`` rate stays at most ``alpha`` whatever the futility rule does; it is
lower in fact (a futility stop ends runs that would have crossed late: 3.1 % at 1 %
positives, 0.8 % at 2 %, against 4.9 % without futility).
``max_outcomes`` reached without ``"better"`` is ``"not_better"`` as before.

The two errors and what they cost:

* ``alpha`` (0.05): a challenger no better than ``margin`` is promoted. It costs a model
  swap for nothing and a stretch of a possibly worse champion until the rollback test
  (its predecessor kept in shadow) catches it.
* ``futility_beta`` (0.2, the conventional 80 % power): a challenger better by ``delta``
  is retired. It costs the improvement until the next retrain produces a challenger
  again. Many of those challengers would not have been promoted by the horizon anyway,
  so the loss of power is smaller than ``beta``: measured at +0.03, 44.5 % -> 42.8 %
  promoted at 1 % positives and 79.9 % -> 72.0 % at 2 %; at +0.05, 76.7 % -> 74.6 % and
  98.2 % -> 95.5 %.
* Not stopping costs too: an equal challenger holds the shadow slot (no other challenger
  is compared) until the horizon, 50,000 outcomes, months at 5-day labels. With the
  futility stop it is retired after a median of 12,500 outcomes at 1 % positives and
  6,500 at 2 % (a challenger 0.05 worse: 10,000 and 5,000).

``delta = 0.03``: about 7 % of the F1 of ~0.4 a committee reaches at 1-2 % positives,
below it a retrain is not worth a model swap on live money; and about the smallest gap
the default horizon resolves at 2 % positives (promoted by 50,000 outcomes in ~80 % of
runs without futility, ~45 % at 1 %). Measured (``bench/shadow.py``, *Choice of
min_improvement*): 0.02 retires an equal challenger after a median of 21,000 outcomes at
1 % positives (12,000 at 2 %) against 12,500 (6,500); 0.04 retires it after 8,500 (5,000)
but promotes a +0.03 challenger at 2 % positives in 57 % of runs against 72 % (80 %
without futility).
``min_improvement=None`` gives the former rule, the mirror of the efficacy boundary
around ``margin`` (``"not_better"`` once ``difference + boundary * se < margin``), which
retires an equal challenger only at the horizon.

Assumptions: the joined outcomes are independent events (the delta-method variance does
not see serial correlation; overlapping label windows of one entity would understate it),
and both models' decisions are those they made live on the same events. Computing the
boundaries of a new design takes ~0.1 s (cached per design); each look is O(1) on the
eight counts. Used twice by the scorer: promotion (incumbent = champion, challenger =
shadow) and rollback (incumbent = newly promoted champion, challenger = its predecessor
kept in shadow). Measured error rates and outcomes to a verdict: ``bench/shadow.py``.

An always-valid confidence sequence (Howard, Ramdas, McAuliffe & Sekhon 2021) would allow
looks at any time and no horizon, but its boundary at the horizon is ~2.6 standard errors
at ``alpha = 0.05`` against ~1.7 here: about twice the outcomes for the same evidence. The
shadow has a natural horizon (``max_outcomes``) and the scorer looks in batches, so a fixed
look schedule costs nothing.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> labels = rng.random(60_000) < 0.02
>>> incumbent = np.where(labels, rng.random(60_000) < 0.45, rng.random(60_000) < 0.006)
>>> challenger = np.where(labels, rng.random(60_000) < 0.70, rng.random(60_000) < 0.004)
>>> test = ShadowComparison(alpha=0.05)
>>> for start in range(0, 60_000, 1_000):
...     verdict = test.update(labels[start : start + 1_000],
...                           incumbent[start : start + 1_000],
...                           challenger[start : start + 1_000])
...     if verdict is not None:
...         break
>>> verdict, test.n_outcomes
('better', 8000)
>>> evidence = test.evidence()
>>> round(evidence["difference"], 3), evidence["lower_bound"] > 0.0
(0.218, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "F1Difference",
    "ShadowComparison",
    "Verdict",
    "efficacy_boundaries",
    "futility_boundaries",
    "look_schedule",
    "obrien_fleming_spending",
    "paired_counts",
    "paired_f1_arrays",
    "paired_f1_difference",
    "pocock_spending",
]

Verdict = Literal["better", "not_better"]
METHOD = "group_sequential_lan_demets_obrien_fleming_paired_f1_delta"
# Spending below this at a look is not attempted: the boundary would be beyond any
# attainable Z (|Z| > 6.4), and skipping it keeps the integration away from 1e-20 tails.
NEGLIGIBLE_SPEND = 1e-10
DEFAULT_MIN_IMPROVEMENT = 0.03  # F1 points; why this value: the module docstring
DEFAULT_FUTILITY_BETA = 0.2
GRID_LOW = -8.0  # the null's Brownian motion stays above -8 sd with probability 1 - 6e-16
STEPS_PER_SD = 16  # integration grid points per standard deviation of the smallest increment


def obrien_fleming_spending(fraction: np.ndarray | float, alpha: float) -> np.ndarray:
    """Alpha spent by information ``fraction`` (Lan-DeMets, O'Brien-Fleming type, one-sided).

    >>> [round(float(a), 5) for a in obrien_fleming_spending(np.array([0.25, 0.5, 1.0]), 0.025)]
    [1e-05, 0.00153, 0.025]
    """
    t = np.clip(np.asarray(fraction, dtype=np.float64), 1e-12, 1.0)
    return 2.0 * stats.norm.sf(stats.norm.isf(alpha / 2.0) / np.sqrt(t))


def pocock_spending(fraction: np.ndarray | float, beta: float) -> np.ndarray:
    """Error spent by information ``fraction`` (Lan-DeMets, Pocock type): ``beta ln(1 + (e-1) t)``.

    >>> [round(float(b), 4) for b in pocock_spending(np.array([0.1, 0.5, 1.0]), 0.2)]
    [0.0317, 0.124, 0.2]
    """
    t = np.clip(np.asarray(fraction, dtype=np.float64), 0.0, 1.0)
    return beta * np.log1p((math.e - 1.0) * t)


_SPENDING = {"obrien_fleming": obrien_fleming_spending, "pocock": pocock_spending}


def look_schedule(min_outcomes: int, max_outcomes: int, look_every: int) -> np.ndarray:
    """Outcome counts at which the test looks: ``min_outcomes``, every ``look_every``, the max.

    A look closer than half a step to ``max_outcomes`` is merged into the last one.

    >>> look_schedule(2_000, 4_100, 500).tolist()
    [2000, 2500, 3000, 3500, 4100]
    """
    looks = [*range(min_outcomes, max_outcomes, look_every), max_outcomes]
    if len(looks) > 1 and looks[-1] - looks[-2] < look_every / 2:
        del looks[-2]
    return np.asarray(looks, dtype=np.int64)


@lru_cache(maxsize=32)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: str) -> tuple[float, ...]:
    t = np.asarray(fractions, dtype=np.float64)
    spent = _SPENDING[spending](t, alpha)
    spent[-1] = alpha  # the final look spends all that is left, whatever its fraction
    increments = np.diff(spent, prepend=0.0)
    boundaries = np.full(len(t), math.inf)
    first = int(np.argmax(increments >= NEGLIGIBLE_SPEND))
    if increments[first] < NEGLIGIBLE_SPEND:  # nothing to spend at all
        return tuple(boundaries.tolist())
    sd_step = math.sqrt(float(np.min(np.diff(t[first:]), initial=t[first])))
    h = sd_step / STEPS_PER_SD
    # Sub-density of the Brownian motion S(t) = Z sqrt(t) on a uniform grid, restricted to
    # paths that have not crossed yet; it starts unrestricted at the first spending look.
    grid = np.arange(GRID_LOW, GRID_LOW + 2.0 * abs(GRID_LOW) + h, h)
    density = stats.norm.pdf(grid, scale=math.sqrt(t[first]))
    previous_t, weights = 0.0, None
    for k in range(first, len(t)):
        if weights is None:
            scale = math.sqrt(t[k])
            bound_s = scale * float(stats.norm.isf(increments[k]))
        else:
            scale = math.sqrt(t[k] - previous_t)
            bound_s = _crossing_bound(grid, weights, scale, increments[k])
            density = _propagate(weights, scale, h)
        boundaries[k] = bound_s / math.sqrt(t[k])
        # Midpoint rule, each point standing for [s - h/2, s + h/2], cut at the boundary.
        weights = density * np.clip(bound_s - (grid - h / 2.0), 0.0, h)
        previous_t = t[k]
    return tuple(boundaries.tolist())


def _crossing_bound(grid: np.ndarray, weights: np.ndarray, scale: float, spend: float) -> float:
    """The level ``u`` with P(S_prev + N(0, scale^2) >= u, not crossed before) = ``spend``."""
    if spend < NEGLIGIBLE_SPEND:
        return math.inf
    # Paths more than 12 sd of the increment below the old boundary cannot cross (< 1e-32).
    top = float(grid[np.flatnonzero(weights)[-1]])
    near = grid > top - 12.0 * scale
    if float(weights[near].sum()) > spend:
        grid, weights = grid[near], weights[near]

    def excess(u: float) -> float:
        return float(weights @ special.ndtr((grid - u) / scale)) - spend

    return float(optimize.brentq(excess, GRID_LOW, top + 12.0 * scale, xtol=1e-10))


def _propagate(weights: np.ndarray, scale: float, h: float) -> np.ndarray:
    """Density on the grid after a Gaussian increment of sd ``scale`` (a discrete convolution)."""
    half = math.ceil(8.0 * scale / h)
    kernel = stats.norm.pdf(np.arange(-half, half + 1) * h, scale=scale)
    full = np.convolve(weights, kernel, mode="full")
    return full[half : half + len(weights)]


def efficacy_boundaries(fractions: np.ndarray, alpha: float) -> np.ndarray:
    """One-sided Z boundaries at information ``fractions`` (increasing, last one 1 or less).

    ``inf`` where the spending is negligible. Five equal looks at one-sided 2.5 %
    reproduce the classical Lan-DeMets O'Brien-Fleming table:

    >>> np.round(efficacy_boundaries(np.linspace(0.2, 1.0, 5), 0.025), 2).tolist()
    [4.88, 3.36, 2.68, 2.29, 2.03]
    """
    return np.asarray(
        _boundaries(tuple(float(f) for f in fractions), float(alpha), "obrien_fleming")
    )


def futility_boundaries(fractions: np.ndarray, beta: float) -> np.ndarray:
    """Futility boundaries ``b_k``: stop when ``Z_delta <= -b_k`` (Pocock-type beta spending).

    A zero-drift Brownian motion in information time (``Z_delta`` of a challenger better
    by exactly ``delta``) goes below ``-b_k`` at some look with probability ``beta``:

    >>> np.round(futility_boundaries(np.linspace(0.2, 1.0, 5), 0.2), 2).tolist()
    [1.56, 1.45, 1.36, 1.3, 1.24]
    """
    return np.asarray(_boundaries(tuple(float(f) for f in fractions), float(beta), "pocock"))


def paired_counts(labels: np.ndarray, incumbent: np.ndarray, challenger: np.ndarray) -> np.ndarray:
    """Counts of the eight ``(label, incumbent, challenger)`` cells, index ``4 y + 2 b + c``.

    Raises ``ValueError`` on arrays of different lengths or values other than 0/1.

    >>> paired_counts(np.array([1, 0, 0]), np.array([1, 1, 0]), np.array([1, 0, 0])).tolist()
    [1, 0, 1, 0, 0, 0, 0, 1]
    """
    arrays = {"labels": labels, "incumbent": incumbent, "challenger": challenger}
    flat = {name: np.asarray(values).reshape(-1) for name, values in arrays.items()}
    lengths = {name: len(values) for name, values in flat.items()}
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"labels and decisions must be the same events: lengths {shown}")
    for name, values in flat.items():
        if values.dtype != np.bool_ and not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be 0/1 (found {_first_bad(values)})")
    cell = 4 * flat["labels"].astype(np.int64) + 2 * flat["incumbent"].astype(np.int64)
    cell += flat["challenger"].astype(np.int64)
    return np.bincount(cell, minlength=8).astype(np.int64)


def _first_bad(values: np.ndarray) -> str:
    bad = values[~np.isin(values, (0, 1))]
    return repr(bad[0].item()) if len(bad) else "none"


@dataclass(frozen=True)
class F1Difference:
    """Both F1, their difference (challenger minus incumbent) and its standard error."""

    incumbent_f1: float
    challenger_f1: float
    difference: float
    standard_error: float


def paired_f1_difference(
    counts: np.ndarray, *, weights: np.ndarray | None = None, beta: float = 1.0
) -> F1Difference:
    """F1 of both models and the delta-method standard error of the paired difference.

    ``weights`` (optional, one per cell, e.g. by label to re-weight the rows to another
    positive rate) and ``beta`` (F-beta) as in :func:`paired_f1_arrays`.

    >>> d = paired_f1_difference(np.array([900, 20, 30, 10, 20, 10, 5, 5]))
    >>> round(d.incumbent_f1, 3), round(d.challenger_f1, 3), round(d.standard_error, 3)
    (0.222, 0.353, 0.078)
    """
    incumbent, challenger, error = paired_f1_arrays(
        np.asarray(counts).reshape(8), weights=weights, beta=beta
    )
    return F1Difference(
        incumbent_f1=float(incumbent),
        challenger_f1=float(challenger),
        difference=float(challenger) - float(incumbent),
        standard_error=float(error),
    )


_CELLS = np.arange(8)
_LABEL, _INCUMBENT, _CHALLENGER = _CELLS >> 2 & 1, _CELLS >> 1 & 1, _CELLS & 1


def paired_f1_arrays(
    counts: np.ndarray, *, weights: np.ndarray | None = None, beta: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(incumbent_f1, challenger_f1, standard_error)`` for counts shaped ``(..., 8)``.

    The vectorised form of :func:`paired_f1_difference` (simulations of many streams).
    An undefined F1 (no positive and no trade) counts as 0 and carries no variance.

    ``weights`` (shape 8, default 1) weighs each event of a cell: the F-beta are then
    ratios of weighted means and the variance that of a weighted mean of the influence
    terms, ``sum w_i^2 psi_i^2 / (sum w_i)^2`` (weights taken as fixed). ``beta`` gives
    F-beta, ``(1 + b^2) mean(y d) / (mean(d) + b^2 mean(y))``; 1 is F1.
    """
    n = np.asarray(counts, dtype=np.float64)
    w = np.ones(8) if weights is None else np.asarray(weights, dtype=np.float64).reshape(8)
    b2 = beta**2
    nw = n * w
    total = nw.sum(axis=-1)
    total_or_1 = np.where(total > 0, total, 1.0)
    f1s, psi = [], np.zeros(n.shape)
    for decided, sign in ((_INCUMBENT, -1.0), (_CHALLENGER, 1.0)):
        share = (nw @ (decided + b2 * _LABEL)) / total_or_1  # mean(d) + b^2 mean(y)
        defined = share > 0
        share_or_1 = np.where(defined, share, 1.0)
        f1 = np.where(defined, (1 + b2) * (nw @ (_LABEL * decided)) / total_or_1 / share_or_1, 0.0)
        # Influence of one event on this F-beta, signed by the model's side of the difference.
        influence = (1 + b2) * _LABEL * decided - f1[..., None] * (decided + b2 * _LABEL)
        psi += sign * np.where(defined[..., None], influence / share_or_1[..., None], 0.0)
        f1s.append(f1)
    variance = (n * w**2 * psi**2).sum(axis=-1) / total_or_1
    return f1s[0], f1s[1], np.sqrt(variance / total_or_1)


class ShadowComparison:
    """Sequential test: is the challenger's F1 above the incumbent's by more than ``margin``?

    Parameters
    ----------
    alpha
        Probability of a false ``"better"`` over all looks (challenger no better than
        ``margin``), whatever the futility rule (non-binding).
    margin
        Improvement of F1 (challenger minus incumbent) the challenger must exceed.
    min_improvement
        Minimum worthwhile improvement ``delta`` (F1 points, on top of ``margin``):
        ``"not_better"`` as soon as a difference of ``margin + delta`` or more is unlikely.
        ``None``: the former rule, futility only when the upper bound is below ``margin``.
    futility_beta
        Probability (at most; Pocock-type beta spending) of a wrong futility stop of a
        challenger better than ``margin`` by ``min_improvement``. Ignored when
        ``min_improvement`` is ``None``.
    min_outcomes, max_outcomes, look_every
        First look, horizon (``"not_better"`` if reached without ``"better"``), look spacing.
        Looks where O'Brien-Fleming spending has nothing to spend (below 1e-10: a boundary
        above Z = 6.4) are skipped; with the defaults the first look is at 5,000 outcomes.

    ``update`` takes joined outcomes in batches of any size; a batch crossing several looks
    is examined at each of them, and outcomes after the verdict are ignored.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        margin: float = 0.0,
        min_outcomes: int = 2_000,
        max_outcomes: int = 50_000,
        look_every: int = 500,
        min_improvement: float | None = DEFAULT_MIN_IMPROVEMENT,
        futility_beta: float = DEFAULT_FUTILITY_BETA,
    ) -> None:
        if not 1e-6 <= alpha < 0.5:
            raise ValueError(f"alpha must be in [1e-6, 0.5), got {alpha}")
        if not -1.0 < margin < 1.0:
            raise ValueError(f"margin must be in (-1, 1), got {margin}")
        if not 0 < min_outcomes <= max_outcomes:
            raise ValueError(
                f"need 0 < min_outcomes <= max_outcomes, got {min_outcomes} and {max_outcomes}"
            )
        if look_every < 1:
            raise ValueError(f"look_every must be at least 1, got {look_every}")
        if min_improvement is not None and not 0.0 < min_improvement < 1.0:
            raise ValueError(f"min_improvement must be in (0, 1), got {min_improvement}")
        if not 1e-6 <= futility_beta < 0.5:
            raise ValueError(f"futility_beta must be in [1e-6, 0.5), got {futility_beta}")
        self.alpha, self.margin = float(alpha), float(margin)
        self.min_improvement = None if min_improvement is None else float(min_improvement)
        self.futility_beta = float(futility_beta)
        self.min_outcomes, self.max_outcomes = int(min_outcomes), int(max_outcomes)
        self.look_every = int(look_every)
        looks = look_schedule(self.min_outcomes, self.max_outcomes, self.look_every)
        boundaries = efficacy_boundaries(looks / self.max_outcomes, self.alpha)
        # Looks with no alpha to spend could stop neither way: they are not looks at all.
        real = np.isfinite(boundaries)
        self.looks, self.boundaries = looks[real], boundaries[real]
        # Futility: Z against futility_target at or below -futility_boundaries.
        if self.min_improvement is None:  # the mirror of the efficacy boundary
            self.futility_target, self.futility_boundaries = self.margin, self.boundaries
        else:
            fractions = self.looks / self.max_outcomes
            self.futility_target = self.margin + self.min_improvement
            self.futility_boundaries = futility_boundaries(fractions, self.futility_beta)
        self._counts = np.zeros(8, dtype=np.int64)
        self._next_look = 0
        self._verdict: Verdict | None = None

    @property
    def verdict(self) -> Verdict | None:
        """``"better"``, ``"not_better"``, or ``None`` while undecided."""
        return self._verdict

    @property
    def n_outcomes(self) -> int:
        """Joined outcomes counted (those after the verdict are not)."""
        return int(self._counts.sum())

    def state(self) -> dict[str, float | int | str | list[int] | None]:
        """Settings and counts, JSON-ready, for a checkpoint (:meth:`from_state` restores)."""
        return {
            "alpha": self.alpha,
            "margin": self.margin,
            "min_outcomes": self.min_outcomes,
            "max_outcomes": self.max_outcomes,
            "look_every": self.look_every,
            "min_improvement": self.min_improvement,
            "futility_beta": self.futility_beta,
            "counts": [int(c) for c in self._counts],
            "verdict": self._verdict or "undecided",
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ShadowComparison:
        """The comparison saved by :meth:`state`, ready to take the next outcomes.

        States saved before the futility settings existed load with their defaults.
        """
        min_improvement = state.get("min_improvement", DEFAULT_MIN_IMPROVEMENT)
        test = cls(
            alpha=float(state["alpha"]),
            margin=float(state["margin"]),
            min_outcomes=int(state["min_outcomes"]),
            max_outcomes=int(state["max_outcomes"]),
            look_every=int(state["look_every"]),
            min_improvement=None if min_improvement is None else float(min_improvement),
            futility_beta=float(state.get("futility_beta", DEFAULT_FUTILITY_BETA)),
        )
        counts = np.asarray(state["counts"], dtype=np.int64)
        verdict = state["verdict"]
        if counts.shape != (8,) or (counts < 0).any() or counts.sum() > test.max_outcomes:
            raise ValueError(f"counts must be 8 counts summing to at most max_outcomes: {counts}")
        if verdict not in ("better", "not_better", "undecided"):
            raise ValueError(f"verdict must be better, not_better or undecided, got {verdict!r}")
        test._counts = counts
        test._verdict = None if verdict == "undecided" else verdict
        test._next_look = min(test._last_look() + 1, len(test.looks) - 1)
        return test

    def update(
        self, labels: np.ndarray, incumbent: np.ndarray, challenger: np.ndarray
    ) -> Verdict | None:
        """Add joined outcomes (same events, 0/1 arrays); return the verdict once reached."""
        paired_counts(labels, incumbent, challenger)  # validates before anything is counted
        y, b, c = (np.asarray(a).reshape(-1) for a in (labels, incumbent, challenger))
        start = 0
        while self._verdict is None and start < len(y):
            stop = min(len(y), start + int(self.looks[self._next_look]) - self.n_outcomes)
            self._counts += paired_counts(y[start:stop], b[start:stop], c[start:stop])
            start = stop
            if self.n_outcomes == self.looks[self._next_look]:
                self._look()
        return self._verdict

    def _look(self) -> None:
        k = self._next_look
        estimate = paired_f1_difference(self._counts)
        if _z(estimate, self.margin) >= self.boundaries[k]:  # first: futility is non-binding
            self._verdict = "better"
        elif self._futile(estimate, self.futility_boundaries[k]) or (k == len(self.looks) - 1):
            self._verdict = "not_better"
        else:
            self._next_look = k + 1

    def _futile(self, estimate: F1Difference, boundary: float) -> bool:
        exact = self.min_improvement is not None
        return _futile(estimate, self.futility_target, boundary, exact=exact)

    def evidence(self) -> dict[str, float | int | str]:
        """JSON-ready figures: F1 of both, their difference and its repeated confidence bounds.

        ``boundary`` is the Z the latest look had to reach (before the first look: the
        first look's), ``lower_bound`` / ``upper_bound`` the difference minus / plus it
        in standard errors (clipped to [-1, 1]), ``alpha_spent`` the alpha spent so far.
        ``futility_boundary`` is the futility boundary of the same look and
        ``futility_upper_bound`` the difference plus it in standard errors: the test stops
        ``"not_better"`` once that is below ``margin + min_improvement`` (``futility``
        ``"beta_spending_pocock"``, with ``z_improvement``, ``futility_beta`` and
        ``beta_spent``), or below ``margin`` when ``min_improvement`` is ``None``
        (``futility`` ``"margin_mirror"``). ``stopped_by``: ``"efficacy"``,
        ``"futility"``, ``"horizon"`` or ``"undecided"``.
        """
        estimate = paired_f1_difference(self._counts)
        last = self._last_look()
        boundary = float(self.boundaries[max(last, 0)])
        spread = boundary * estimate.standard_error
        spent = float(obrien_fleming_spending(self.looks[last] / self.max_outcomes, self.alpha))
        return {
            "method": METHOD,
            "verdict": self._verdict or "undecided",
            "n_outcomes": self.n_outcomes,
            "positives": int(self._counts[4:].sum()),
            "incumbent_trades": int(self._counts[[2, 3, 6, 7]].sum()),
            "challenger_trades": int(self._counts[1::2].sum()),
            "incumbent_f1": estimate.incumbent_f1,
            "challenger_f1": estimate.challenger_f1,
            "difference": estimate.difference,
            "standard_error": estimate.standard_error,
            "lower_bound": max(-1.0, estimate.difference - spread),
            "upper_bound": min(1.0, estimate.difference + spread),
            "z": _z(estimate, self.margin),
            "boundary": boundary,
            "looks": last + 1,
            "alpha_spent": spent if last >= 0 else 0.0,
            "alpha": self.alpha,
            "margin": self.margin,
            **_futility_evidence(self, estimate, last),
        }

    def _last_look(self) -> int:
        """Index of the latest look taken, -1 before the first."""
        return int(np.searchsorted(self.looks, self.n_outcomes, side="right")) - 1

    def look_at(self, counts: np.ndarray) -> Verdict | None:
        """Cumulative counts gathered elsewhere (summed over partitions) replace the counts;
        the test looks once, at the latest scheduled look they reach, if not taken yet.

        For a test run on evidence that arrives in jumps: looks jumped over are skipped (a
        skipped look spends nothing, so the false-``"better"`` rate stays at most
        ``alpha``), and the look uses the counts as they are, past its schedule by at most
        one jump. Counts beyond ``max_outcomes`` take the final look.

        >>> test = ShadowComparison(min_outcomes=500, max_outcomes=2_000, min_improvement=None)
        >>> test.look_at(np.array([1_700, 0, 0, 0, 0, 0, 0, 100])), test.n_outcomes
        (None, 1800)
        >>> test.look_at(np.array([2_100, 0, 0, 0, 0, 0, 0, 100]))
        'not_better'
        """
        if self._verdict is not None:
            return self._verdict
        total = np.asarray(counts, dtype=np.int64).reshape(8)
        if (total < 0).any():
            raise ValueError(f"counts must be non-negative: {total.tolist()}")
        self._counts = total.copy()
        reached = min(self._last_look(), len(self.looks) - 1)
        if reached >= self._next_look:
            self._next_look = reached
            self._look()
        return self._verdict


def _z(estimate: F1Difference, margin: float) -> float:
    if estimate.standard_error <= 0.0:
        return 0.0  # identical decisions so far: no evidence either way
    return (estimate.difference - margin) / estimate.standard_error


def _futile(estimate: F1Difference, target: float, boundary: float, *, exact: bool) -> bool:
    """Whether an improvement of ``target`` is ruled out at this look.

    With ``exact`` (the futility rule), no standard error rules it out too: no discordant
    outcome moves the difference (identical decisions: the challenger's F1 is the
    champion's), so a difference below ``target`` is all the data say. Without it (the
    former rule) such a test runs on to the horizon.
    """
    if not math.isfinite(boundary):  # nothing to spend at this look
        return False
    if estimate.standard_error <= 0.0:
        return exact and estimate.difference < target
    return _z(estimate, target) <= -boundary


def _futility_evidence(
    test: ShadowComparison, estimate: F1Difference, last: int
) -> dict[str, float | str]:
    """The futility figures of :meth:`ShadowComparison.evidence` at look ``last``."""
    boundary = float(test.futility_boundaries[max(last, 0)])
    upper = min(1.0, estimate.difference + boundary * estimate.standard_error)
    futile = last >= 0 and test._futile(estimate, boundary)
    stopped_by = {"better": "efficacy", "not_better": "futility" if futile else "horizon"}
    figures: dict[str, float | str] = {
        "stopped_by": stopped_by.get(test.verdict or "", "undecided"),
        "futility": "margin_mirror",
        "futility_boundary": boundary,
        "futility_upper_bound": upper,
    }
    if test.min_improvement is not None:
        spent = pocock_spending(test.looks[last] / test.max_outcomes, test.futility_beta)
        figures |= {
            "futility": "beta_spending_pocock",
            "min_improvement": test.min_improvement,
            "z_improvement": _z(estimate, test.futility_target),
            "futility_beta": test.futility_beta,
            "beta_spent": float(spent) if last >= 0 else 0.0,
        }
    return figures
