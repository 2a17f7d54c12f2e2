"""Is a change of the scores a prior shift? Ask the members' votes.

Under label shift every input moves with the class mix and nothing else: for any function
``g`` of the votes, ``E_new[g(v)] = E_ref[w(s) g(v)]`` with ``w`` the
:func:`~metasignal.stream.drift.prior.mixture_weight` of the event's score at the estimated
rate. :func:`member_shift_z` compares each member's mean vote logit after a change with
that prediction from the reference votes. A member that decays into noise, or any change of
``P(y | x)``, moves the scores without moving the members the way a prior shift would (in
the synthetic committee a decaying member keeps its marginal distribution while the scores
move), so a large ``|z|`` means *not a label shift*: the policy then waits for the outcomes
instead of asking for a label-shift re-tune.

:class:`VoteWindow` keeps what the check needs: the reference votes (the first ``window``
after a restart, with their scores) and the most recent ``window`` votes.

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
...     votes = 1 / (1 + np.exp(-1.5 * x))
...     return odds / (1 + odds), votes
>>> ref_scores, ref_votes = events(0.01, 20_000)
>>> _, shifted = events(0.03, 10_000)  # a prior shift: the members follow the scores
>>> member_shift_z(ref_scores, ref_votes, shifted, 0.01, 0.03).round(1).tolist()
[0.6, -0.8]
>>> _, decayed = events(0.01, 10_000, decayed=True)  # scores fooled, members did not move
>>> member_shift_z(ref_scores, ref_votes, decayed, 0.01, 0.03).round(1).tolist()
[-2.7, -4.4]
"""

from __future__ import annotations

import math

import numpy as np

from metasignal.stream.drift.prior import mixture_weight

__all__ = ["VoteWindow", "member_shift_z"]

_EPS = 1e-6


def _logits(votes: np.ndarray) -> np.ndarray:
    clipped = np.clip(votes, _EPS, 1.0 - _EPS)
    return np.log(clipped) - np.log1p(-clipped)


def member_shift_z(
    reference_scores: np.ndarray,
    reference_votes: np.ndarray,
    recent_votes: np.ndarray,
    reference_rate: float,
    rate: float,
) -> np.ndarray:
    """Per member: (observed - label-shift-predicted) mean vote logit, in standard errors.

    NaN votes (a missing member) are left out; a member with fewer than two votes on
    either side gets NaN.
    """
    weights = mixture_weight(reference_scores, reference_rate, rate)
    ref = _logits(np.asarray(reference_votes, dtype=np.float64))
    new = _logits(np.asarray(recent_votes, dtype=np.float64))
    out = np.full(ref.shape[1], math.nan)
    for j in range(ref.shape[1]):
        seen = ~np.isnan(ref[:, j])
        now = new[~np.isnan(new[:, j]), j]
        if seen.sum() < 2 or len(now) < 2:
            continue
        w, v = weights[seen], ref[seen, j]
        predicted = float(w @ v / w.sum())
        predicted_var = float((w * (v - predicted)) @ (w * (v - predicted))) / w.sum() ** 2
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
