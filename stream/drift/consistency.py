"""Is a change of the scores a prior shift? Ask the members' votes and the scores' shape.

Under label shift every input moves with the class mix and nothing else: for any function
``g`` of an event, ``E_new[g] = E_ref[w(s) g]`` with ``w`` the
:func:`~metasignal.stream.drift.prior.mixture_weight` of the event's score at the estimated
rate. :func:`shift_z` compares the mean of each ``g`` after a change with that prediction
from the reference events, in standard errors; :func:`shift_features` gives the ``g``
worth checking: each member's vote logit, the score logit and its spread (the squared
distance of the score logit from its reference mean). A member that decays into noise, or
any other change of ``P(y | x)``, moves the scores without moving these the way a prior
shift would: in the synthetic committee a decaying member keeps its own distribution, but
the committee's combined evidence narrows (the spread falls) while its mean barely moves.
A large ``|z|`` therefore means *not a label shift*, and the policy waits for the outcomes
instead of asking for a label-shift re-tune.

:class:`VoteWindow` keeps what the check needs: the reference events (the first
``window`` after a restart: scores and votes) and the votes of the most recent ``window``.

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
>>> center = logit_center(ref_scores)
>>> reference = shift_features(ref_scores, ref_votes, center)
>>> def z(scores, votes):
...     new = shift_features(scores, votes, center)
...     return shift_z(ref_scores, reference, new, 0.01, 0.03).round(1).tolist()
>>> z(*events(0.03, 10_000))  # a prior shift: everything follows the scores
[0.6, -0.8, -0.1, 0.6]
>>> z(*events(0.01, 10_000, decayed=True))  # not one
[-2.7, -4.4, -6.0, -9.8]
"""

from __future__ import annotations

import math

import numpy as np

from metasignal.stream.drift.prior import mixture_weight

__all__ = ["VoteWindow", "logit_center", "shift_features", "shift_z"]

_EPS = 1e-6


def _logits(votes: np.ndarray) -> np.ndarray:
    clipped = np.clip(votes, _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def logit_center(scores: np.ndarray) -> float:
    """Mean score logit of the reference events (the spread column is measured from it)."""
    return float(np.mean(_logits(np.asarray(scores, dtype=np.float64))))


def shift_features(scores: np.ndarray, votes: np.ndarray, center: float) -> np.ndarray:
    """Columns checked by :func:`shift_z`: vote logits, score logit, score-logit spread."""
    score_logit = _logits(np.asarray(scores, dtype=np.float64))
    return np.column_stack(
        [_logits(np.asarray(votes, dtype=np.float64)), score_logit, (score_logit - center) ** 2]
    )


def shift_z(
    reference_scores: np.ndarray,
    reference_values: np.ndarray,
    recent_values: np.ndarray,
    reference_rate: float,
    rate: float,
) -> np.ndarray:
    """Per column: (observed - prior-shift-predicted) mean, in standard errors.

    NaN values (a missing member) are left out; a column with fewer than two values on
    either side gets NaN.
    """
    weights = mixture_weight(reference_scores, reference_rate, rate)
    ref = np.asarray(reference_values, dtype=np.float64)
    new = np.asarray(recent_values, dtype=np.float64)
    out = np.full(ref.shape[1], math.nan)
    for j in range(ref.shape[1]):
        seen = ~np.isnan(ref[:, j])
        now = new[~np.isnan(new[:, j]), j]
        if seen.sum() < 2 or len(now) < 2:
            continue
        w, v = weights[seen], ref[seen, j]
        predicted = float(w @ v / w.sum())
        spread = w * (v - predicted)
        predicted_var = float(spread @ spread) / float(w.sum()) ** 2
        observed_var = float(now.var(ddof=1)) / len(now)
        out[j] = (float(now.mean()) - predicted) / math.sqrt(predicted_var + observed_var)
    return out


class VoteWindow:
    """The reference votes (first ``window`` after a reset) and the last ``window`` votes."""

    def __init__(self, *, window: int = 5_000) -> None:
        self.window = window
        self.reset()

    def reset(self) -> None:
        self._reference_scores: list[np.ndarray] = []
        self._reference_votes: list[np.ndarray] = []
        self._reference_n = 0
        self._recent: np.ndarray | None = None
        self._written = 0

    @property
    def reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Scores and votes of the reference period, once it is complete."""
        if self._reference_n < self.window:
            return None
        return np.concatenate(self._reference_scores), np.concatenate(self._reference_votes)

    def update(self, scores: np.ndarray, votes: np.ndarray) -> None:
        n = len(scores)
        if not n:
            return
        if self._reference_n < self.window:
            take = min(n, self.window - self._reference_n)
            self._reference_scores.append(np.array(scores[:take], dtype=np.float64))
            self._reference_votes.append(np.array(votes[:take], dtype=np.float64))
            self._reference_n += take
        if self._recent is None:
            self._recent = np.full((self.window, votes.shape[1]), math.nan)
        keep = min(n, self.window)
        slots = (self._written + np.arange(n - keep, n)) % self.window
        self._recent[slots] = votes[n - keep :]
        self._written += n

    def recent(self, events: int) -> np.ndarray:
        """The last ``events`` votes held (at most ``window``), oldest first."""
        if self._recent is None:
            return np.empty((0, 0))
        k = min(events, self._written, self.window)
        end = self._written % self.window
        return self._recent[np.arange(end - k, end) % self.window]
