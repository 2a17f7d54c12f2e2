"""Profit and loss of acting on the signal, with block-bootstrap intervals.

Given each event's realized payoff (for example its forward return net of
costs; negative allowed) and the decisions, the PnL of the traded events in
time order:

- ``trades``, ``hit_rate`` (share of trades with a positive payoff),
  ``mean_payoff`` and ``total_payoff``;
- ``sharpe_per_trade`` (mean / standard deviation of the trades' payoffs) and
  ``sharpe_annualised``: per trade times the square root of trades per year,
  trades per year counted on the calendar span of the period;
- ``max_drawdown``: the largest fall of cumulative payoff from a running peak
  (a positive number, in payoff units);
- ``turnover``: the share of events traded, and ``trades_per_day``.

Each comes with a 95 % block-bootstrap interval over time blocks.

Examples
--------
>>> import numpy as np
>>> payoff = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
>>> traded = np.array([True, True, False, True, True])
>>> stats = pnl_statistics(payoff, traded, span_days=1.0)
>>> stats["trades"], stats["hit_rate"], stats["total_payoff"], stats["max_drawdown"]
(4, 0.5, 1.0, 2.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from metasignal.trainer.purge import time_blocks
from metasignal.trainer.resample import DEFAULT_BLOCKS, DEFAULT_RESAMPLES, block_bootstrap, interval

__all__ = ["pnl_report", "pnl_statistics"]

DAY_MS = 86_400_000
DAYS_PER_YEAR = 365.25


def pnl_statistics(
    payoff: NDArray[np.floating], traded: NDArray[np.bool_], *, span_days: float
) -> dict[str, float | int]:
    """The PnL figures of the traded events (rows in time order)."""
    trades = np.asarray(payoff, dtype=np.float64)[np.asarray(traded, dtype=bool)]
    n_trades = int(trades.size)
    n_events = int(np.asarray(traded).size)
    out: dict[str, float | int] = {
        "trades": n_trades,
        "turnover": n_trades / n_events if n_events else math.nan,
        "trades_per_day": n_trades / span_days if span_days > 0 else math.nan,
    }
    if n_trades == 0:
        return {
            **out,
            "hit_rate": math.nan,
            "mean_payoff": math.nan,
            "total_payoff": 0.0,
            "sharpe_per_trade": math.nan,
            "sharpe_annualised": math.nan,
            "max_drawdown": 0.0,
        }
    cumulative = np.cumsum(trades)
    peak = np.maximum.accumulate(np.concatenate([[0.0], cumulative]))[1:]
    std = float(trades.std(ddof=1)) if n_trades > 1 else math.nan
    sharpe = float(trades.mean()) / std if std and math.isfinite(std) else math.nan
    per_year = n_trades / (span_days / DAYS_PER_YEAR) if span_days > 0 else math.nan
    return {
        **out,
        "hit_rate": float(np.mean(trades > 0)),
        "mean_payoff": float(trades.mean()),
        "total_payoff": float(cumulative[-1]),
        "sharpe_per_trade": sharpe,
        "sharpe_annualised": sharpe * math.sqrt(per_year) if math.isfinite(per_year) else math.nan,
        "max_drawdown": float((peak - cumulative).max()),
    }


def pnl_report(
    payoff: NDArray[np.floating],
    traded: NDArray[np.bool_],
    times_ms: NDArray[np.integer],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`pnl_statistics` with a ``{name}_interval`` for each figure."""
    times_ms = np.asarray(times_ms)
    span_days = float(times_ms[-1] - times_ms[0]) / DAY_MS if times_ms.size else 0.0
    report: dict[str, Any] = dict(pnl_statistics(payoff, traded, span_days=span_days))
    blocks = time_blocks(times_ms, DEFAULT_BLOCKS)
    replicates = [
        pnl_statistics(payoff[rows], traded[rows], span_days=span_days)
        for rows in block_bootstrap(blocks, n_resamples, np.random.default_rng(seed))
    ]
    for name in list(report):
        values = np.array([r[name] for r in replicates], dtype=np.float64)
        report[f"{name}_interval"] = list(interval(values))
    report["span_days"] = span_days
    return report
