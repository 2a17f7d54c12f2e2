"""Is a change of the scores a prior shift? Ask the members' votes and the scores' shape.

Under label shift every input moves with the class mix and nothing else: for any function
``g`` of an event, ``E_new[g] = E_ref[w(s) g]`` with ``w`` the
:func:`~metasignal.stream.drift.prior.mixture_weight` of the event's score at the estimated
rate. :func:`shift_z` compares the mean of each ``g`` after a change with that prediction
from the reference events, in standard errors; :func:`shift_features` gives the ``g``
worth checking: each member's vote logit, the score logit, its spread (the squared distance
of the score logit from its reference mean) and each member's co-movement with the score
(the product of their centred logits). Together they test the goodness of fit of the
label-shift model, "the recent events are the reference classes in a new mix", on the
moments that concept drift moves. A member that decays into noise, or any other change
of ``P(y | x)``, moves the scores without moving these the way a prior shift would: in the
synthetic committee a decaying member keeps its own distribution, but its co-movement with
the committee's combined evidence falls, and that evidence narrows (the spread falls). A
large ``|z|`` therefore means *not a label shift*, and the policy waits for the outcomes
(which ask for a retrain) instead of asking for a label-shift re-tune.

:class:`VoteWindow` keeps what the check needs: the reference events (the first
``reference`` after a restart: scores and votes) and the most recent ones.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> def events(rate, n, decayed=False):
...     y = rng.random(n) < rate
...     x = np.where(y, 1.5, -1.5)[:, None] + rng.normal(0, 1, (n, 2))
...     if decayed:  # member b now votes noise with the same spread
...         x[:, 1] = rng.normal(-1.5, 1.0, n) + np.where(rng.random(n) < rate, 3.0, 0.0)
...     odds = np.exp(3 * x.sum(axis=1)) * 0.01 / 0.99  # calibrated at 1 %
...     return odds / (1 + odds), 1 / (1 + np.exp(-1.5 * x))
>>> ref_scores, ref_votes = events(0.01, 20_000)
>>> center = logit_center(ref_scores, ref_votes)
>>> reference = shift_features(ref_scores, ref_votes, center)
>>> def z(scores, votes):
...     new = shift_features(scores, votes, center)
...     return shift_z(ref_scores, reference, new, 0.01, 0.03).round(1).tolist()
>>> # columns: votes of a and b, score logit, its spread, co-movement of a and b
>>> z(*events(0.03, 10_000))  # a prior shift: everything follows the scores
[0.6, -0.8, -0.1, 0.6, 1.2, -0.1]
>>> z(*events(0.01, 10_000, decayed=True))  # not one
[-2.7, -4.4, -6.0, -9.8, -8.9, -9.2]

Those moments lose power when one strong member of many decays: the committee barely
narrows. :func:`member_contrasts` asks each member directly. Under label shift every
subset of the members sees the same new mix, so the score the *other* members would give
(:class:`LeaveOneOut`, calibrated on the reference) moves exactly as the full score does; a
decaying member is the one whose removal leaves a score that did not move.
``shift_z(..., recent_scores=...)`` compares each contrast with its prior-shift prediction
net of the estimated rate's own sampling error, and :func:`bonferroni_p` says how
surprising the largest is under label shift:

>>> from metasignal.stream.drift.prior import estimate_prior
>>> loo = LeaveOneOut.fit(ref_scores, ref_votes)
>>> contrasts = member_contrasts(loo, ref_scores, ref_votes)
>>> def member_z(scores, votes, rate):
...     new = member_contrasts(loo, scores, votes)
...     return shift_z(ref_scores, contrasts, new, 0.01, rate, recent_scores=scores)
>>> scores, votes = events(0.03, 10_000)
>>> shifted = member_z(scores, votes, estimate_prior(scores, 0.01))
>>> shifted.round(1).tolist(), bool(bonferroni_p(shifted) > 0.01)  # both agree
([0.5, 0.5], True)
>>> scores, votes = events(0.01, 10_000, decayed=True)
>>> decayed = member_z(scores, votes, estimate_prior(scores, 0.01))
>>> decayed.round(1).tolist(), bool(bonferroni_p(decayed) < 0.01)  # b decayed
([2.8, 5.0], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metasignal.stream.drift.prior import mixture_weight

__all__ = [
    "LeaveOneOut",
    "VoteWindow",
    "bonferroni_p",
    "logit_center",
    "member_contrasts",
    "shift_features",
    "shift_z",
]

_EPS = 1e-6
# Bins of a leave-one-out score (cumulative shares of the reference): deciles, then ever
# finer towards the top, where the rare positives are; levels with fewer than
# _MIN_BIN_EVENTS reference events above them are dropped.
_BIN_LEVELS = np.concatenate([np.linspace(0.1, 0.9, 9), 1.0 - np.geomspace(0.1, 0.001, 12)[1:]])
_MIN_BIN_EVENTS = 20


def _logits(votes: np.ndarray) -> np.ndarray:
    clipped = np.clip(votes, _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def logit_center(scores: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Mean vote logit of each member, then the mean score logit, over the reference events.

    The spread and co-movement columns of :func:`shift_features` are measured from them.
    """
    vote_logits = _logits(np.asarray(votes, dtype=np.float64))
    score_logit = _logits(np.asarray(scores, dtype=np.float64))
    return np.append(np.nanmean(vote_logits, axis=0), score_logit.mean())


def shift_features(scores: np.ndarray, votes: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Columns checked by :func:`shift_z`.

    Each member's vote logit; the score logit; its spread (squared distance from the
    reference mean); and each member's co-movement with the score (product of the two
    centred logits), which falls when a member stops carrying the committee's signal.
    """
    vote_logits = _logits(np.asarray(votes, dtype=np.float64))
    score_logit = _logits(np.asarray(scores, dtype=np.float64))
    centred = score_logit - center[-1]
    return np.column_stack(
        [
            vote_logits,
            score_logit,
            centred**2,
            (vote_logits - center[:-1]) * centred[:, None],
        ]
    )


def shift_z(
    reference_scores: np.ndarray,
    reference_values: np.ndarray,
    recent_values: np.ndarray,
    reference_rate: float,
    rate: float,
    *,
    recent_scores: np.ndarray | None = None,
) -> np.ndarray:
    """Per column: (observed - prior-shift-predicted) mean, in standard errors.

    ``rate`` is taken as known unless ``recent_scores`` are given: the scores it was
    estimated from (by :func:`~metasignal.stream.drift.prior.estimate_prior`, on the same
    recent events as ``recent_values``). Then the recent side's variance is that of each
    value net of its share of the estimate's own error (the delta method: the value minus
    the prediction's slope in the rate times the estimate's influence, the score function
    over the Fisher information). A column that follows the scores closely, as a
    leave-one-out score does, has a much smaller standard error that way.

    NaN values (a missing member) are left out; a column with fewer than two values on
    either side gets NaN.
    """
    weights = mixture_weight(reference_scores, reference_rate, rate)
    ref = np.asarray(reference_values, dtype=np.float64)
    new = np.asarray(recent_values, dtype=np.float64)
    scale = 1.0 / (reference_rate * (1.0 - reference_rate))
    ref_u = (np.asarray(reference_scores, dtype=np.float64) - reference_rate) * scale
    influence = (
        None if recent_scores is None else _rate_influence(recent_scores, reference_rate, rate)
    )
    out = np.full(ref.shape[1], math.nan)
    for j in range(ref.shape[1]):
        seen = ~np.isnan(ref[:, j])
        kept = ~np.isnan(new[:, j])
        now = new[kept, j]
        if seen.sum() < 2 or len(now) < 2:
            continue
        w, v, u = weights[seen], ref[seen, j], ref_u[seen]
        predicted = float(w @ v / w.sum())
        spread = w * (v - predicted)
        predicted_var = float(spread @ spread) / float(w.sum()) ** 2
        net = now
        if influence is not None:
            slope = (float(np.mean(u * v)) - predicted * float(np.mean(u))) / float(np.mean(w))
            net = now - slope * influence[kept]
        observed_var = float(net.var(ddof=1)) / len(now)
        out[j] = (float(now.mean()) - predicted) / math.sqrt(predicted_var + observed_var)
    return out


def _rate_influence(scores: np.ndarray, reference_rate: float, rate: float) -> np.ndarray | None:
    """Each score's influence on the maximum-likelihood rate: score function / information.

    ``None`` when the estimate sits on its boundary (no score function there).
    """
    u = (np.asarray(scores, dtype=np.float64) - reference_rate) / (
        reference_rate * (1.0 - reference_rate)
    )
    w = 1.0 + (rate - reference_rate) * u
    if not np.all(w > 0.0):
        return None
    psi = u / w
    info = float(psi @ psi) / len(psi)
    return psi / info if info > 0.0 else None


def bonferroni_p(z: np.ndarray) -> float:
    """Two-sided p-value of the largest ``|z|``, Bonferroni-corrected for the columns.

    Under the null each ``z`` is about standard normal: the chance that *any* column looks
    at least this extreme is at most the returned value (NaN columns are not counted).

    >>> round(bonferroni_p(np.array([0.3, -3.0, 1.0, math.nan])), 4)
    0.0081
    """
    finite = np.abs(np.asarray(z, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return math.nan
    return min(1.0, finite.size * math.erfc(float(finite.max()) / math.sqrt(2.0)))


@dataclass(frozen=True)
class LeaveOneOut:
    """The score each member's colleagues would give, calibrated on the reference events.

    The score logit is regressed on the vote logits (exact for a logistic meta-model on
    them, a linear summary otherwise); leaving member ``j``'s term out gives the others'
    linear evidence, and the mean reference score in quantile bins of it (finer towards
    the top) calibrates it: ``P(trade | the other members' votes)`` at the reference rate,
    no outcome needed. A missing vote counts as the member's reference mean.
    """

    center: np.ndarray  # mean vote logit per member
    coef: np.ndarray  # intercept, then one coefficient per member
    edges: tuple[np.ndarray, ...]  # per member: inner bin edges of the others' evidence
    means: tuple[np.ndarray, ...]  # per member: mean reference score in each bin

    @classmethod
    def fit(cls, scores: np.ndarray, votes: np.ndarray) -> LeaveOneOut:
        scores = np.asarray(scores, dtype=np.float64)
        logits = _logits(np.asarray(votes, dtype=np.float64))
        seen = (~np.isnan(logits)).sum(axis=0)
        center = np.nansum(logits, axis=0) / np.maximum(seen, 1)  # 0 for a member never seen
        design = _design(logits, center)
        coef = np.linalg.lstsq(design, _logits(scores), rcond=None)[0]
        levels = _BIN_LEVELS[len(scores) * (1.0 - _BIN_LEVELS) >= _MIN_BIN_EVENTS]
        edges, means = [], []
        for j in range(logits.shape[1]):
            others = design @ coef - coef[1 + j] * design[:, 1 + j]
            inner = np.unique(np.quantile(others, levels)) if levels.size else np.empty(0)
            bins = np.searchsorted(inner, others)
            counts = np.bincount(bins, minlength=len(inner) + 1)
            sums = np.bincount(bins, weights=scores, minlength=len(inner) + 1)
            edges.append(inner)
            means.append(sums / np.maximum(counts, 1))
        return cls(center, coef, tuple(edges), tuple(means))

    def predict(self, votes: np.ndarray) -> np.ndarray:
        """One column per member: the calibrated score of the other members' votes."""
        design = _design(_logits(np.asarray(votes, dtype=np.float64)), self.center)
        full = design @ self.coef
        out = np.empty((len(design), len(self.edges)))
        for j, (inner, means) in enumerate(zip(self.edges, self.means, strict=True)):
            out[:, j] = means[np.searchsorted(inner, full - self.coef[1 + j] * design[:, 1 + j])]
        return out


def _design(logits: np.ndarray, center: np.ndarray) -> np.ndarray:
    filled = np.where(np.isnan(logits), center, logits)
    return np.column_stack([np.ones(len(filled)), filled])


def member_contrasts(fit: LeaveOneOut, scores: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Per member: the others' calibrated score minus the committee's score.

    Under label shift its mean moves as :func:`shift_z` predicts; when member ``j`` decays
    the others' score stays put while the committee's moves, so column ``j`` stands out.
    """
    return fit.predict(votes) - np.asarray(scores, dtype=np.float64)[:, None]


class VoteWindow:
    """Scores and votes for :func:`shift_z`: the model's first events, and the latest ones.

    The reference of a check is the first ``reference`` events after a reset (the regime
    the model started in; cut at the change point when the change came earlier), the
    recent part every event since the change point still held (at most ``recent``). Both
    are long because the check's power grows with either; a reference taken just before
    the change point would hide a gradual change (a decaying member), which has already
    begun there.
    """

    def __init__(self, *, reference: int = 20_000, recent: int = 20_000) -> None:
        if reference < 1 or recent < 1:
            raise ValueError(f"reference and recent must be >= 1, got {reference} and {recent}")
        self.reference = reference
        self.recent = recent
        self.reset()

    def reset(self) -> None:
        self._first_scores = np.empty(self.reference, dtype=np.float64)
        self._scores = np.empty(self.recent, dtype=np.float64)
        self._first_votes: np.ndarray | None = None
        self._votes: np.ndarray | None = None
        self._written = 0

    @property
    def events(self) -> int:
        """Events seen since the last reset."""
        return self._written

    def update(self, scores: np.ndarray, votes: np.ndarray) -> None:
        n = len(scores)
        if not n:
            return
        if self._votes is None or self._first_votes is None:
            self._first_votes = np.full((self.reference, votes.shape[1]), math.nan)
            self._votes = np.full((self.recent, votes.shape[1]), math.nan)
        if self._written < self.reference:
            take = min(n, self.reference - self._written)
            into = slice(self._written, self._written + take)
            self._first_scores[into] = scores[:take]
            self._first_votes[into] = votes[:take]
        keep = min(n, self.recent)
        slots = (self._written + np.arange(n - keep, n)) % self.recent
        self._scores[slots] = scores[n - keep :]
        self._votes[slots] = votes[n - keep :]
        self._written += n

    def split(
        self, change: int, end: int, *, min_reference: int = 2_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Reference and recent (events ``change .. end - 1``, counted since the reset).

        Returns reference scores, reference votes, recent scores, recent votes; ``None``
        when fewer than ``min_reference`` reference events precede the change.
        """
        end = min(end, self._written)
        first = min(max(change, 0), self.reference)  # reference events before the change
        start = min(max(change, end - self.recent, 0), end)  # the oldest recent one held
        if first < min_reference or end <= start or self._votes is None:
            return None
        assert self._first_votes is not None
        index = np.arange(start, end) % self.recent
        return (
            self._first_scores[:first],
            self._first_votes[:first],
            self._scores[index],
            self._votes[index],
        )
