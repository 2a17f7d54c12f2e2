"""The periodic one-line status of the scorer and the trainer.

An operator tailing a log (``kubectl logs``, journald) sees what the service is
doing without a Prometheus at hand: one line every ``status_interval_s``. The
lines are made by pure functions; :class:`StatusClock` says when one is due and
how long the rates are over; :class:`ScorerStatus` makes the scorer's line when due.

Examples
--------
>>> scorer_status(votes_per_s=1234.4, signals=50_000, trades=512, dlq=3, lag=0, model_version=2)
'status: 1234 votes/s, 50000 signals (512 trades), 3 dead letters, lag 0, model v2'
>>> scorer_status(votes_per_s=0.0, signals=0, trades=0, dlq=0, lag=None, model_version=None)
'status: 0 votes/s, 0 signals (0 trades), 0 dead letters, lag -, no model yet'
>>> print(trainer_status(published=2, refused=1, skipped=0, failed=0, last_published=3,
...     champion=3))  # doctest: +NORMALIZE_WHITESPACE
status: 3 requests answered (2 published, 1 refused by the gate, 0 skipped, 0 failed),
    last published v3, champion v3
>>> clock = StatusClock(30.0, now=100.0)
>>> clock.due(now=120.0), clock.due(now=130.5), clock.due(now=140.0)
(None, 30.5, None)
>>> from metasignal.stream.stats import ScorerStats
>>> status, stats = ScorerStatus(10.0, now=0.0), ScorerStats(votes=5000, signals=5000)
>>> status.line(now=5.0, stats=stats, lag=0, model_version=1) is None
True
>>> status.line(now=10.0, stats=stats, lag=0, model_version=1)
'status: 500 votes/s, 5000 signals (0 trades), 0 dead letters, lag 0, model v1'
"""

from __future__ import annotations

from collections.abc import Callable

from metasignal.stream.stats import ScorerStats


def scorer_status(
    *,
    votes_per_s: float,
    signals: int,
    trades: int,
    dlq: int,
    lag: int | None,
    model_version: int | None,
    shadow: str | None = None,
) -> str:
    """The scorer's line: throughput since the last line, totals, lag, the model serving
    (and the one in shadow, :meth:`metasignal.stream.shadow.ShadowSlot.describe`)."""
    model = "no model yet" if model_version is None else f"model v{model_version}"
    return (
        f"status: {votes_per_s:.0f} votes/s, {signals} signals ({trades} trades), "
        f"{dlq} dead letters, lag {'-' if lag is None else lag}, {model}"
        + ("" if shadow is None else f", shadow: {shadow}")
    )


def trainer_status(
    *,
    published: int,
    refused: int,
    skipped: int,
    failed: int,
    last_published: int | None,
    champion: int | None,
) -> str:
    """The trainer's line: requests answered by outcome, what it last published."""
    answered = published + refused + skipped + failed
    last = (
        "nothing published yet" if last_published is None else f"last published v{last_published}"
    )
    serving = "no champion yet" if champion is None else f"champion v{champion}"
    return (
        f"status: {answered} requests answered ({published} published, {refused} refused by "
        f"the gate, {skipped} skipped, {failed} failed), {last}, {serving}"
    )


class StatusClock:
    """Says when the next status line is due (every ``interval_s``; 0 or less: never).

    :meth:`due` returns the seconds since the last line when one is due, else ``None``.
    """

    def __init__(self, interval_s: float, *, now: float) -> None:
        self.interval_s = interval_s
        self._last = now

    def due(self, *, now: float) -> float | None:
        if self.interval_s <= 0 or now - self._last < self.interval_s:
            return None
        elapsed, self._last = now - self._last, now
        return elapsed


class ScorerStatus:
    """The scorer's status line every ``interval_s``, its rate over the time since the last.

    ``shadow`` is asked only when a line is due (it describes the shadow's counts).
    """

    def __init__(self, interval_s: float, *, now: float) -> None:
        self._clock = StatusClock(interval_s, now=now)
        self._votes = 0

    def line(
        self,
        *,
        now: float,
        stats: ScorerStats,
        lag: int | None,
        model_version: int | None,
        shadow: Callable[[], str | None] = lambda: None,
    ) -> str | None:
        """The line if one is due at ``now``, else ``None``."""
        elapsed = self._clock.due(now=now)
        if elapsed is None:
            return None
        rate = (stats.votes - self._votes) / elapsed
        self._votes = stats.votes
        return scorer_status(
            votes_per_s=rate,
            signals=stats.signals,
            trades=stats.trades,
            dlq=stats.dlq,
            lag=lag,
            model_version=model_version,
            shadow=shadow(),
        )
