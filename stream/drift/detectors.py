"""Change detectors for the positive rate of a stream of 0/1 outcomes.

Trades are rare (0.5-5 % positives), so a useful detector has to notice a doubling of a
1 % rate within a few thousand samples while raising at most about one false alarm per
million stationary samples. :class:`BernoulliCUSUM` is a two-sided CUSUM on the Bernoulli
log-likelihood ratio, built for exactly that; :func:`make_detector` builds it or one of
river's general-purpose detectors by name. ``bench/drift.py`` measures them all and
``docs/benchmarks.md`` (drift section) holds the numbers behind the defaults.

Every detector follows river's :class:`~river.base.DriftDetector` API (river 0.26):
``update(x)`` returns ``None`` and sets :attr:`drift_detected`, which stays ``True`` until
the next ``update``; that next call first restarts the detector.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from river import base

__all__ = ["DETECTORS", "BernoulliCUSUM", "CusumReadouts", "Direction", "make_detector"]

Direction = Literal["up", "down"]


def bernoulli_kl(p: float, q: float) -> float:
    """Kullback-Leibler divergence KL(Bern(p) || Bern(q)) in nats.

    Examples
    --------
    >>> round(bernoulli_kl(0.02, 0.01), 6)
    0.003914
    >>> bernoulli_kl(0.3, 0.3)
    0.0
    """
    total = 0.0
    if p > 0.0:
        total += p * math.log(p / q)
    if p < 1.0:
        total += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return total


def check_ratios(ratio_up: float | None, ratio_down: float | None) -> None:
    """Refuse rate ratios a two-sided rate CUSUM cannot watch (shared by both CUSUMs)."""
    if ratio_up is not None and ratio_up <= 1.0:
        raise ValueError(f"ratio_up must be > 1, got {ratio_up}")
    if ratio_down is not None and not 0.0 < ratio_down < 1.0:
        raise ValueError(f"ratio_down must be in (0, 1), got {ratio_down}")
    if ratio_up is None and ratio_down is None:
        raise ValueError("ratio_up and ratio_down cannot both be None")


class CusumReadouts:
    """Read-outs shared by the two-sided CUSUMs (:class:`BernoulliCUSUM`, and
    :class:`~metasignal.stream.drift.label_shift.PriorShiftCUSUM` on scores).

    The host keeps ``_warm_left`` (samples left in the warm-up), ``_direction``,
    ``_n_detections``, the statistics ``_s_up``/``_s_down`` and the decision intervals
    ``_h_up``/``_h_down``.
    """

    _warm_left: int
    _direction: Direction | None
    _n_detections: int
    _s_up: float
    _s_down: float
    _h_up: float
    _h_down: float

    @property
    def in_warmup(self) -> bool:
        """Whether the detector is still estimating its reference (no drift can be signalled)."""
        return self._warm_left > 0

    @property
    def drift_direction(self) -> Direction | None:
        """Direction of the last drift: ``"up"``, ``"down"`` or ``None`` before any."""
        return self._direction

    @property
    def n_detections(self) -> int:
        """Number of drifts signalled since construction (or the last ``_reset``)."""
        return self._n_detections

    @property
    def statistic_up(self) -> float:
        """Upward CUSUM statistic in nats (a drift when above :attr:`threshold_up`)."""
        return self._s_up

    @property
    def statistic_down(self) -> float:
        """Downward CUSUM statistic in nats (a drift when above :attr:`threshold_down`)."""
        return self._s_down

    @property
    def threshold_up(self) -> float | None:
        """Decision interval of the upward side (``inf`` if disabled, ``None`` in warm-up)."""
        return None if self._warm_left else self._h_up

    @property
    def threshold_down(self) -> float | None:
        """Decision interval of the downward side (``inf`` if disabled, ``None`` in warm-up)."""
        return None if self._warm_left else self._h_down


class BernoulliCUSUM(CusumReadouts, base.DriftDetector):
    """Two-sided CUSUM on the Bernoulli log-likelihood ratio of a 0/1 stream.

    The in-control rate ``p0`` is estimated from the first ``warmup`` samples (or given).
    Two CUSUM statistics then accumulate the log-likelihood ratio of ``p0 * ratio_up``
    (``statistic_up``) and of ``p0 * ratio_down`` (``statistic_down``) against ``p0``,
    floored at zero; a drift is signalled when one exceeds its decision interval.

    With ``track_rate`` the estimate of ``p0`` keeps improving after the warm-up (it is the
    mean of every sample since the last restart), so the false-alarm rate falls towards
    that of a CUSUM with a known rate instead of staying at the level set by a
    ``warmup``-sample estimate.

    Decision intervals: with ``threshold=None`` each side uses
    ``h = ln(sides * arl0 * KL(p1 || p0))`` for its alternative ``p1``, re-derived whenever
    ``p0`` is re-estimated. This inverts the usual approximation ``ARL0 ~ e**h / KL`` of
    the average run length to a false alarm of a log-likelihood CUSUM (overshoot ignored),
    with the budget split over the two sides. Against the exact Markov-chain ARL of a
    known-rate CUSUM (``bench/drift.py``) it errs on the safe side: the exact two-sided
    ARL0 is 1.16-1.24 x ``arl0`` for rates 0.5-5 %. At 1 % and ``arl0=1e6`` that gives
    ``h`` = 8.97 nats upwards and 8.04 downwards. A fixed ``threshold`` (nats) applies to
    both sides instead.

    After a drift the next ``update`` restarts the detector. With ``reestimate`` the
    warm-up starts again, seeded with the samples since the alarming statistic last left
    zero (the CUSUM's estimate of the change point, so its post-change estimate), and
    ``warmup`` new samples are added before monitoring resumes; without it only the
    statistics are cleared and ``p0`` is kept.

    Parameters
    ----------
    warmup
        Samples used to estimate ``p0`` before monitoring (and again after each drift when
        ``reestimate``). At 1 % positives, 5,000 samples hold about 50 positives.
    p0
        The in-control positive rate, if known: monitoring starts at once with it as a
        fixed reference (until a drift, after which it is re-estimated if ``reestimate``).
    ratio_up
        Upward alternative ``p1 = ratio_up * p0`` (capped at ``(1 + p0) / 2``); ``None``
        disables the upward side.
    ratio_down
        Downward alternative ``p1 = ratio_down * p0``; ``None`` disables the downward side.
    threshold
        Fixed decision interval ``h`` in nats for both sides, or ``None`` to derive it
        from ``arl0``.
    arl0
        Target average number of stationary samples between false alarms (both sides
        together) used when ``threshold`` is ``None``.
    reestimate
        Whether to re-estimate ``p0`` after a drift (restart the warm-up, seeded with the
        post-change samples).
    track_rate
        Whether ``p0`` keeps being updated with every sample after the warm-up (an
        expanding mean since the last restart) rather than frozen at its warm-up value.
        Ignored while a given ``p0`` is in use.

    Examples
    --------
    A 1 % stream whose rate quadruples at sample 20,000:

    >>> import random
    >>> from metasignal.stream.drift.detectors import BernoulliCUSUM

    >>> rng = random.Random(7)
    >>> stream = [int(rng.random() < 0.01) for _ in range(20_000)]
    >>> stream += [int(rng.random() < 0.04) for _ in range(5_000)]
    >>> detector = BernoulliCUSUM(warmup=5_000)
    >>> for i, x in enumerate(stream):
    ...     detector.update(x)
    ...     if detector.drift_detected:
    ...         print(i, detector.drift_direction, round(detector.rate, 3))
    20191 up 0.064
    >>> detector.in_warmup, detector.n_detections
    (True, 1)

    """

    _REFRESH = 64  # samples between updates of the log-likelihood constants (track_rate)

    def __init__(
        self,
        *,
        warmup: int = 5_000,
        p0: float | None = None,
        ratio_up: float | None = 2.0,
        ratio_down: float | None = 0.5,
        threshold: float | None = None,
        arl0: float = 1_000_000.0,
        reestimate: bool = True,
        track_rate: bool = True,
    ) -> None:
        super().__init__()
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup}")
        if p0 is not None and not 0.0 < p0 < 1.0:
            raise ValueError(f"p0 must be in (0, 1), got {p0}")
        check_ratios(ratio_up, ratio_down)
        if threshold is not None and threshold <= 0.0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if arl0 <= 1.0:
            raise ValueError(f"arl0 must be > 1, got {arl0}")
        self.warmup = warmup
        self.p0 = p0
        self.ratio_up = ratio_up
        self.ratio_down = ratio_down
        self.threshold = threshold
        self.arl0 = arl0
        self.reestimate = reestimate
        self.track_rate = track_rate
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        super()._reset()
        self._n = 0  # samples since the last (re)start, seed included
        self._k = 0  # positives among them
        self._n_detections = 0
        self._direction: Direction | None = None
        self._post = (0, 0)  # (samples, positives) since the change point of the last drift
        self._tracking = False
        if self.p0 is None:
            self._start_warmup()
        else:
            self._start_monitoring(self.p0)

    def _start_warmup(self) -> None:
        self._warm_left = self.warmup
        self._p0: float | None = None
        self._s_up = self._s_down = 0.0

    def _start_monitoring(self, p0: float | None = None) -> None:
        """Leave the warm-up: fix the reference (given, or estimated from the counts)."""
        self._warm_left = 0
        self._tracking = p0 is None and self.track_rate
        self._set_reference(self._estimate() if p0 is None else p0)
        self._s_up = self._s_down = 0.0
        self._n0_up = self._n0_down = self._n
        self._k0_up = self._k0_down = self._k
        self._until_refresh = self._REFRESH

    def _estimate(self) -> float:
        """In-control rate from the counts, kept off 0 and 1 by half a sample."""
        n = self._n
        return min(max(self._k, 0.5), n - 0.5) / n

    def _set_reference(self, p0: float) -> None:
        """Log-likelihood-ratio increments and decision intervals for reference ``p0``."""
        self._p0 = p0
        sides = (self.ratio_up is not None) + (self.ratio_down is not None)
        inf = math.inf
        self._up1 = self._up0 = self._dn1 = self._dn0 = 0.0
        self._h_up = self._h_down = inf
        if self.ratio_up is not None:
            p1 = min(self.ratio_up * p0, (1.0 + p0) / 2.0)
            self._up1 = math.log(p1 / p0)
            self._up0 = math.log((1.0 - p1) / (1.0 - p0))
            self._h_up = self._interval(bernoulli_kl(p1, p0), sides)
        if self.ratio_down is not None:
            p1 = self.ratio_down * p0
            self._dn1 = math.log(p1 / p0)
            self._dn0 = math.log((1.0 - p1) / (1.0 - p0))
            self._h_down = self._interval(bernoulli_kl(p1, p0), sides)

    def _interval(self, kl: float, sides: int) -> float:
        if self.threshold is not None:
            return self.threshold
        return max(math.log(sides * self.arl0 * kl), 1.0)

    def _restart(self) -> None:
        """First update after a drift: clear the statistics, re-estimate ``p0`` if asked."""
        self._drift_detected = False
        if self.reestimate:
            self._n, self._k = self._post
            self._tracking = False
            self._start_warmup()
        else:
            self._s_up = self._s_down = 0.0
            self._n0_up = self._n0_down = self._n
            self._k0_up = self._k0_down = self._k

    # ------------------------------------------------------------------ update

    def update(self, x: int | float) -> None:
        """Update the detector with one outcome.

        Parameters
        ----------
        x
            The outcome: 1 (or ``True``) for a positive, 0 (or ``False``) otherwise.

        """
        if self._drift_detected:
            self._restart()
        if x == 1:
            one = True
        elif x == 0:
            one = False
        else:
            raise ValueError(f"BernoulliCUSUM takes 0/1 outcomes, got {x!r}")
        self._n += 1
        if one:
            self._k += 1
        if self._warm_left:
            self._warm_left -= 1
            if not self._warm_left:
                self._start_monitoring()
            return
        if self._tracking:
            self._until_refresh -= 1
            if not self._until_refresh:
                self._until_refresh = self._REFRESH
                self._set_reference(self._estimate())
        if one:
            if self._s_up == 0.0:  # the statistic leaves zero: a change may start here
                self._n0_up = self._n - 1
                self._k0_up = self._k - 1
            s_up = self._s_up + self._up1
            s_down = self._s_down + self._dn1
            if s_down < 0.0:
                s_down = 0.0
        else:
            s_up = self._s_up + self._up0
            if s_up < 0.0:
                s_up = 0.0
            if self._s_down == 0.0:
                self._n0_down = self._n - 1
                self._k0_down = self._k
            s_down = self._s_down + self._dn0
        self._s_up = s_up
        self._s_down = s_down
        if s_up > self._h_up:
            self._signal("up", self._n0_up, self._k0_up)
        elif s_down > self._h_down:
            self._signal("down", self._n0_down, self._k0_down)

    def _signal(self, direction: Direction, n0: int, k0: int) -> None:
        self._drift_detected = True
        self._direction = direction
        self._n_detections += 1
        self._post = (self._n - n0, self._k - k0)

    # ------------------------------------------------------------------ read-outs

    @property
    def rate(self) -> float | None:
        """Current estimate of the positive rate.

        Right after a drift: the rate since the estimated change point. During the
        warm-up: the mean of the warm-up samples (seed included), ``None`` before any.
        Otherwise the in-control rate (the running estimate with ``track_rate``).
        """
        if self._drift_detected:
            n, k = self._post
            return k / n
        if self._warm_left or self._tracking:
            return self._k / self._n if self._n else None
        return self._p0

    @property
    def reference_rate(self) -> float | None:
        """The ``p0`` the statistics are currently computed against (``None`` in warm-up)."""
        return None if self._warm_left else self._p0


# ---------------------------------------------------------------------- factory


def _adwin(**params: Any) -> base.DriftDetector:
    # river.drift imports pandas and scikit-learn (~80 MB resident): only load it when asked.
    from river import drift

    return drift.ADWIN(**params)


def _page_hinkley(**params: Any) -> base.DriftDetector:
    from river import drift

    return drift.PageHinkley(**params)


DETECTORS: dict[str, Callable[..., base.DriftDetector]] = {
    "cusum": BernoulliCUSUM,
    "adwin": _adwin,
    "page_hinkley": _page_hinkley,
}
"""Detectors :func:`make_detector` can build, by name."""


def make_detector(name: str = "cusum", **params: Any) -> base.DriftDetector:
    """Build a drift detector by name.

    Parameters
    ----------
    name
        ``"cusum"`` (:class:`BernoulliCUSUM`, the default), ``"adwin"``
        (:class:`river.drift.ADWIN`) or ``"page_hinkley"``
        (:class:`river.drift.PageHinkley`). Case and ``-`` vs ``_`` do not matter.
    **params
        Keyword arguments of the detector's constructor.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`DETECTORS`.

    Examples
    --------
    >>> make_detector()
    BernoulliCUSUM (
      warmup=5000
      p0=None
      ratio_up=2.
      ratio_down=0.5
      threshold=None
      arl0=1e+06
      reestimate=True
      track_rate=True
    )
    >>> make_detector("ADWIN", delta=0.0002).delta
    0.0002
    >>> make_detector("ddm")
    Traceback (most recent call last):
    ...
    ValueError: unknown drift detector 'ddm'; expected one of: adwin, cusum, page_hinkley
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DETECTORS:
        known = ", ".join(sorted(DETECTORS))
        raise ValueError(f"unknown drift detector {name!r}; expected one of: {known}")
    return DETECTORS[key](**params)
