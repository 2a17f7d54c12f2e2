"""A label-shift detector on calibrated scores: the outcome CUSUM without the outcomes.

:class:`PriorShiftCUSUM` is :class:`~metasignal.stream.drift.detectors.BernoulliCUSUM`
with each 0/1 outcome replaced by the event's calibrated score ``s``. Under label shift
the likelihood ratio of a rate ``p1`` against the in-control rate ``m`` is exactly
:func:`~metasignal.stream.drift.prior.mixture_weight`,
``1 + (p1 / m - 1)(s - m) / (1 - m)`` when the scores are calibrated at ``m`` (for
``s`` in {0, 1} it is the Bernoulli ratio), so the two CUSUM statistics accumulate its
logarithm for ``p1 = ratio_up * m`` and ``ratio_down * m``.

False-alarm budget: ``m`` is the mean score since the last (re)start, so the ratio has
mean one in control whatever the model's calibration offset, and the decision interval
``h = ln(sides * arl0 * D)`` is the outcome CUSUM's with the Bernoulli KL replaced by the
scores' own ``D = E_m[w ln w]`` (the KL of the two score distributions, estimated on the
warm-up scores). ``bench/label_free.py`` measures the false alarms it really gives.

Optimality and its limit: the increments are the exact per-event log-likelihood ratio of
the two priors (under label shift a calibrated score is a sufficient statistic for the
prior), so this is the CUSUM of Page, which minimises the worst-case mean delay among
detectors with the same false-alarm budget (Lorden 1971; Moustakides 1986). That delay is
about ``h / D`` events, ``h = ln(2 arl0 D)``. A score carries less information than its
outcome (it is the outcome's expectation): ``D`` is a share of the outcome's
``KL(Bern(2m) || Bern(m))``, so the detector needs about 1 / that share as many events as
the outcome CUSUM needs outcomes, and gains by not waiting for them. For a 1 % -> 2 % step
at the default budget even scores as informative as outcomes give ``h / D`` ~ 2,470 events;
committees whose scores carry 30 % / 58 % of it need ~7,250 / ~4,000
(``bench/label_free.py`` measures them).

Each batch costs a few vectorised passes (the CUSUM recursion
``S_t = max(0, S_{t-1} + x_t)`` is ``C_t - min(0, min_{j<=t} C_j)`` over the cumulative
sum ``C``).

Examples
--------
Scores of a calibrated 1 % model; the true rate doubles at event 30,000:

>>> import numpy as np
>>> rng = np.random.default_rng(3)
>>> def scores(rate, n):
...     y = rng.random(n) < rate
...     odds = np.exp(3 * (np.where(y, 1.5, -1.5) + rng.normal(0, 1, n))) * 0.01 / 0.99
...     return odds / (1 + odds)
>>> detector = PriorShiftCUSUM(warmup=5_000)
>>> stream = np.concatenate([scores(0.01, 30_000), scores(0.02, 20_000)])
>>> for start in range(0, len(stream), 500):
...     at = detector.update_many(stream[start:start + 500])
...     if at is not None:
...         print(start + at, detector.drift_direction, detector.change_point)
...         break
38870 up 36537
"""

from __future__ import annotations

import math

import numpy as np
from river import base

from metasignal.stream.drift.detectors import CusumReadouts, Direction, check_ratios

__all__ = ["PriorShiftCUSUM", "score_divergence"]


def _log_ratio(scores: np.ndarray, reference: float, ratio: float) -> np.ndarray:
    """Log-likelihood ratio per score of the rate ``ratio * reference`` against ``reference``."""
    slope = (ratio - 1.0) / (1.0 - reference)
    return np.log1p(slope * (scores - reference))


def score_divergence(scores: np.ndarray, reference: float, ratio: float) -> float:
    """``E[w ln w]`` over in-control scores: the KL of the shifted score distribution.

    Per event, what a score tells about a change of the rate to ``ratio * reference``;
    the outcome itself would tell ``KL(Bern(ratio * reference) || Bern(reference))``.

    >>> round(score_divergence(np.array([0.0] * 99 + [1.0]), 0.01, 2.0), 6)  # outcomes
    0.003914
    """
    w = 1.0 + (ratio - 1.0) / (1.0 - reference) * (scores - reference)
    return float(np.mean(w * np.log(w)))


class PriorShiftCUSUM(CusumReadouts, base.DriftDetector):
    """Two-sided CUSUM for a shift of the positive rate, fed calibrated scores.

    Parameters
    ----------
    warmup
        Scores that fix the in-control rate and the divergence ``D`` before monitoring
        (again after each drift).
    ratio_up, ratio_down
        Alternatives ``ratio * m`` (``ratio_up * m`` capped at ``(1 + m) / 2``); ``None``
        disables a side.
    arl0
        Target mean number of in-control scores between false alarms, both sides together.
        Twice the budget of one per 10⁶: scores step by small amounts, so the threshold
        overshoots little and ``e**h / D`` is about exact rather than conservative
        (``bench/label_free.py`` measured 0.85-1.1 false alarms per 10⁶ at ``arl0=1e6``).
    track_rate
        Keep refining ``m`` with every batch after the warm-up (the mean since the restart).

    Attributes
    ----------
    change_point
        After a drift: events (since construction) at which the alarming statistic last
        left zero, the CUSUM's estimate of when the change began.
    """

    def __init__(
        self,
        *,
        warmup: int = 5_000,
        ratio_up: float | None = 2.0,
        ratio_down: float | None = 0.5,
        arl0: float = 2_000_000.0,
        track_rate: bool = True,
    ) -> None:
        super().__init__()
        if warmup < 2:
            raise ValueError(f"warmup must be >= 2, got {warmup}")
        check_ratios(ratio_up, ratio_down)
        if arl0 <= 1.0:
            raise ValueError(f"arl0 must be > 1, got {arl0}")
        self.warmup = warmup
        self.ratio_up = ratio_up
        self.ratio_down = ratio_down
        self.arl0 = arl0
        self.track_rate = track_rate
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.events = 0
        self.change_point: int | None = None
        self._n_detections = 0
        self._direction: Direction | None = None
        self._restart()

    def _restart(self) -> None:
        self._drift_detected = False
        self._warm: list[np.ndarray] = []
        self._warm_left = self.warmup
        self._n = 0  # scores since the restart
        self._sum = 0.0
        self._rate: float | None = None
        self._s_up = self._s_down = 0.0
        self._zero_up = self._zero_down = self.events  # where each statistic last was 0
        self._h_up = self._h_down = math.inf

    # ------------------------------------------------------------------ update

    def update(self, x: float) -> None:
        """river's one-sample API (the scorer uses :meth:`update_many`)."""
        self.update_many(np.array([float(x)]))

    def update_many(self, scores: np.ndarray) -> int | None:
        """Feed a batch of scores; return the index in it of the alarm, if one fired.

        Scores after an alarm in the same batch start the next warm-up.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if self._drift_detected:
            self._restart()
        if self._warm_left:
            take = min(self._warm_left, len(scores))
            self._absorb(scores[:take])
            self._warm.append(scores[:take])
            self._warm_left -= take
            if self._warm_left:
                return None
            self._start_monitoring()
            rest = scores[take:]
            at = self._monitor(rest)
            return None if at is None else take + at
        return self._monitor(scores)

    def _absorb(self, scores: np.ndarray) -> None:
        self.events += len(scores)
        self._n += len(scores)
        self._sum += float(scores.sum())

    def _start_monitoring(self) -> None:
        warm = np.concatenate(self._warm)
        self._warm = []
        self._zero_up = self._zero_down = self.events
        self._set_reference(warm)

    def _set_reference(self, warm: np.ndarray | None) -> None:
        m = min(max(self._sum / self._n, 1e-6), 0.5)
        self._rate = m
        sides = (self.ratio_up is not None) + (self.ratio_down is not None)
        if self.ratio_up is not None:
            self._up = min(self.ratio_up, (1.0 + m) / (2.0 * m))
            if warm is not None:
                kl = score_divergence(warm, m, self._up)
                self._h_up = max(math.log(sides * self.arl0 * kl), 1.0)
        if self.ratio_down is not None and warm is not None:
            kl = score_divergence(warm, m, self.ratio_down)
            self._h_down = max(math.log(sides * self.arl0 * kl), 1.0)

    def _monitor(self, scores: np.ndarray) -> int | None:
        if not len(scores):
            return None
        start = self.events
        m = self._rate
        assert m is not None
        alarm: tuple[int, Direction, int] | None = None
        if self.ratio_up is not None:
            stats, zero = self._cusum(_log_ratio(scores, m, self._up), self._s_up, self._zero_up)
            hit = np.flatnonzero(stats > self._h_up)
            if hit.size:
                alarm = (int(hit[0]), "up", int(zero[hit[0]]))
            up, zero_up = stats, zero
        if self.ratio_down is not None:
            stats, zero = self._cusum(
                _log_ratio(scores, m, self.ratio_down), self._s_down, self._zero_down
            )
            hit = np.flatnonzero(stats > self._h_down)
            if hit.size and (alarm is None or hit[0] < alarm[0]):
                alarm = (int(hit[0]), "down", int(zero[hit[0]]))
            down, zero_down = stats, zero
        end = len(scores) if alarm is None else alarm[0] + 1
        self._absorb(scores[:end])
        if alarm is not None:
            self._drift_detected = True
            self._n_detections += 1
            self._direction = alarm[1]
            self.change_point = start + alarm[2]
            return alarm[0]
        if self.ratio_up is not None:
            self._s_up, self._zero_up = float(up[-1]), start + int(zero_up[-1])
        if self.ratio_down is not None:
            self._s_down, self._zero_down = float(down[-1]), start + int(zero_down[-1])
        if self.track_rate:
            self._set_reference(None)
        return None

    def _cusum(
        self, increments: np.ndarray, previous: float, previous_zero: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Statistics after each score, and the batch offset where each last left zero."""
        cumulative = previous + np.cumsum(increments)
        floor = np.minimum(np.minimum.accumulate(cumulative), 0.0)
        stats = cumulative - floor
        at_zero = stats <= 0.0
        positions = np.where(at_zero, np.arange(1, len(stats) + 1), 0)
        last_zero = np.maximum.accumulate(positions)  # scores before the current run
        # No zero yet in this batch: the run began before it (an offset <= 0).
        return stats, np.where(last_zero == 0, previous_zero - self.events, last_zero)

    # ------------------------------------------------------------------ read-outs

    @property
    def rate(self) -> float | None:
        """In-control mean score ``m`` (``None`` during the warm-up)."""
        return self._rate
