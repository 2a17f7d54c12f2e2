"""Label-free estimates over a sliding window of the scorer's own votes.

:class:`LabelFreeEstimator` keeps the last ``window`` calibrated scores and decisions in
two preallocated ring buffers (one vectorised copy per batch) and on demand estimates
from them, without any outcome:

* the live positive rate under label shift (:func:`~metasignal.stream.drift.prior.estimate_prior`);
* the expected precision, recall and F1 of the decisions at the model's threshold
  (:func:`~metasignal.stream.drift.expected.expected_quality`), with the scores first
  re-expressed for that estimated rate. A model whose published scores are over-confident
  at the top (the trainer's refit on every row spreads its decision values wider than the
  fold models its calibration map was fitted on) over-states them. The trainer now serves
  the recalibrated score itself; given an older artifact's ``score_recalibration``
  (:attr:`CompiledModel.score_recalibration
  <metasignal.stream.scoring.CompiledModel.score_recalibration>`) the expected quality is
  computed from the recalibrated scores, each with its own reference rate.

The reference rate (the prior the model's scores are calibrated to) is given, or the mean
score of the first ``warmup`` votes after a (re)start: a calibrated model's mean score is
its positive rate, and taking it from live votes keeps a small calibration offset from
reading as a shift.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> estimator = LabelFreeEstimator(window=4_000, warmup=4_000)
>>> def batch(rate, n=500):
...     y = rng.random(n) < rate
...     odds = np.exp(2 * (np.where(y, 1.0, -1.0) + rng.normal(0, 1, n))) * 0.01 / 0.99
...     s = odds / (1 + odds)
...     return s, s >= 0.05
>>> for _ in range(8):
...     estimator.update(*batch(0.01))
>>> estimator.estimate() is None, round(estimator.reference_rate, 3)
(False, 0.01)
>>> for _ in range(40):
...     estimator.update(*batch(0.03))
>>> round(estimator.estimate().positive_rate, 2)
0.03
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasignal.stream.drift.expected import expected_quality
from metasignal.stream.drift.prior import adjust_posteriors, estimate_prior

__all__ = ["LabelFreeEstimate", "LabelFreeEstimator", "recalibrate"]

_CLIP = 1e-12  # keeps the logit of a score of exactly 0 or 1 finite


def recalibrate(scores: np.ndarray, recalibration: tuple[float, float] | None) -> np.ndarray:
    """``sigmoid(a logit(s) + b)`` for ``recalibration = (a, b)``; the scores if ``None``.

    >>> recalibrate(np.array([0.5, 0.9]), (0.5, 0.0)).round(3).tolist()
    [0.5, 0.75]
    """
    if recalibration is None:
        return scores
    a, b = recalibration
    clipped = np.clip(scores, _CLIP, 1.0 - _CLIP)
    # |a logit + b| stays far below exp's overflow for clipped scores: no masked sigmoid.
    return 1.0 / (1.0 + np.exp(-(a * (np.log(clipped) - np.log1p(-clipped)) + b)))


@dataclass(frozen=True)
class LabelFreeEstimate:
    """What the scores alone say about the window (NaN where undefined)."""

    events: int  # votes in the window
    reference_rate: float
    positive_rate: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, Any]:
        return {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in self.__dict__.items()
        }


class LabelFreeEstimator:
    """Sliding-window label-free estimates of the positive rate and the expected quality.

    Parameters
    ----------
    window
        Votes the estimates are computed over.
    warmup
        Votes whose mean score becomes the reference rate (ignored when given).
    reference_rate
        The positive rate the scores are calibrated to, if known.
    recalibration
        ``(a, b)``: the expected quality reads ``sigmoid(a logit(s) + b)`` for a score ``s``
        (the serving model's ``score_recalibration``); its reference rate is the mean
        recalibrated warm-up score. The positive rate is estimated from the scores as served.
    """

    def __init__(
        self,
        *,
        window: int = 5_000,
        warmup: int = 5_000,
        reference_rate: float | None = None,
        recalibration: tuple[float, float] | None = None,
    ) -> None:
        if window < 1 or warmup < 1:
            raise ValueError(f"window and warmup must be >= 1, got {window} and {warmup}")
        if reference_rate is not None and not 0.0 < reference_rate < 1.0:
            raise ValueError(f"reference_rate must be in (0, 1), got {reference_rate}")
        self.window = window
        self.warmup = warmup
        self._given_reference = reference_rate
        self.reset(recalibration=recalibration)

    def reset(self, *, recalibration: tuple[float, float] | None = None) -> None:
        """Forget every vote (a new model: its scores have their own calibration).

        ``recalibration`` is the new model's (see the class's parameters).
        """
        self.recalibration = recalibration
        self._scores = np.empty(self.window, dtype=np.float64)
        # The recalibrated scores, computed once per vote as they arrive (if recalibrating).
        self._recalibrated = np.empty(self.window if recalibration else 0, dtype=np.float64)
        self._decisions = np.zeros(self.window, dtype=bool)
        self._written = 0
        self._warm_n = 0
        self._warm_sum = 0.0
        self._warm_recalibrated = 0.0
        self._reference = self._given_reference
        self._quality_reference = self._given_reference
        self._last_rate: float | None = None
        self._last_quality_rate: float | None = None

    @property
    def events(self) -> int:
        """Votes seen since the last reset."""
        return self._written

    @property
    def reference_rate(self) -> float | None:
        """The rate the scores are taken to be calibrated to (``None`` during warm-up)."""
        return self._reference

    def update(self, scores: np.ndarray, decisions: np.ndarray) -> None:
        """Add one batch of calibrated scores and the decisions made from them."""
        scores = np.asarray(scores, dtype=np.float64)
        n = len(scores)
        if n == 0:
            return
        keep = min(n, self.window)
        if self._reference is None:
            keep = n  # the warm-up reads every vote of the batch
        recalibrated = recalibrate(scores[n - keep :], self.recalibration)
        if self._reference is None:
            take = min(n, self.warmup - self._warm_n)
            self._warm_n += take
            self._warm_sum += float(scores[:take].sum())
            self._warm_recalibrated += float(recalibrated[:take].sum())
            if self._warm_n == self.warmup:
                self._reference = _rate(self._warm_sum / self._warm_n)
                self._quality_reference = _rate(self._warm_recalibrated / self._warm_n)
        # The last min(n, window) votes land at their ring positions in one indexed copy.
        keep = min(n, self.window)
        slots = (self._written + np.arange(n - keep, n)) % self.window
        self._scores[slots] = scores[n - keep :]
        if self.recalibration is not None:
            self._recalibrated[slots] = recalibrated[len(recalibrated) - keep :]
        self._decisions[slots] = np.asarray(decisions, dtype=bool)[n - keep :]
        self._written += n

    def recent(self, events: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The last ``events`` (default: all in the window) scores and decisions, oldest first."""
        index = self._index(events)
        return self._scores[index], self._decisions[index]

    def _index(self, events: int | None) -> np.ndarray:
        held = min(self._written, self.window)
        k = held if events is None else min(max(events, 0), held)
        end = self._written % self.window
        return (np.arange(end - k, end)) % self.window

    def estimate(self, events: int | None = None) -> LabelFreeEstimate | None:
        """Estimates over the last ``events`` votes (default: the window); ``None`` in warm-up."""
        reference = self._reference
        if reference is None or self._written == 0:
            return None
        index = self._index(events)
        scores, decisions = self._scores[index], self._decisions[index]
        rate = estimate_prior(scores, reference, start=self._last_rate)
        if events is None:
            self._last_rate = rate
        posteriors = self._posteriors(scores, rate, index, remember=events is None)
        quality = expected_quality(posteriors, decisions)
        return LabelFreeEstimate(
            events=len(scores),
            reference_rate=reference,
            positive_rate=rate,
            precision=quality.precision,
            recall=quality.recall,
            f1=quality.f1,
        )

    def _posteriors(
        self, scores: np.ndarray, rate: float, index: np.ndarray, *, remember: bool
    ) -> np.ndarray:
        """P(trade) per event at the live rate, on the recalibrated scale when there is one.

        The recalibrated scores have their own reference, so the live rate is estimated on
        their scale too (the scales differ in level, the prior shift is the same).
        """
        reference = self._reference
        if self.recalibration is None:
            assert reference is not None
            return adjust_posteriors(scores, reference, rate)
        reference = self._quality_reference
        assert reference is not None
        recalibrated = self._recalibrated[index]
        live = estimate_prior(recalibrated, reference, start=self._last_quality_rate)
        if remember:
            self._last_quality_rate = live
        return adjust_posteriors(recalibrated, reference, live)


def _rate(mean: float) -> float:
    return min(max(mean, 1e-6), 1.0 - 1e-6)
