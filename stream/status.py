"""The periodic one-line status of the scorer and the trainer.

An operator tailing a log (``kubectl logs``, journald) sees what the service is
doing without a Prometheus at hand: one line every ``status_interval_s``. The
lines are made by pure functions; :class:`StatusClock` says when one is due and
how long the rates are over.

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
"""

from __future__ import annotations


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
