"""A real multi-asset panel: 30 US equity portfolios x 819 months, eight rule members.

Data: ``linearmodels.datasets.french.load()`` (Ken French's data library, bundled with
``linearmodels``): monthly returns from 1949-01 to 2017-03 of 12 industry portfolios, 9
size/value and 9 size/momentum portfolios. Each portfolio is an *entity*; one row per
(month, portfolio), 30 rows per timestamp, so every walk-forward cut must keep a month's 30
rows together.

Members see returns up to and including month ``t`` (a decision at the close of ``t``) and
emit a score in (0, 1); ``sigma12`` is the standard deviation of the entity's last 12
monthly returns:

* ``mom_12_1``: 12-1 momentum, ``sigmoid`` of the months ``t-11..t-1`` log return over
  ``sigma12 * sqrt(11)``;
* ``mom_6``: the same over months ``t-5..t``;
* ``reversal_1``: ``sigmoid(-r_t / sigma12)``, last month's loser scores high;
* ``vol_regime``: ``sigmoid(log(sigma12 / sigma60))``;
* ``xs_mom_rank``: the entity's cross-sectional rank of ``mom_12_1`` that month, in (0, 1);
* ``market_mom``: ``sigmoid`` of the market factor's 12-month log return over its scale
  (the same for every entity of a month);
* ``rel_strength_3``: ``sigmoid`` of the entity's 3-month log return minus the month's
  cross-sectional mean, over ``sigma12 * sqrt(3)``;
* ``drawdown_12``: the price relative to its 12-month high, in (0, 1].

Label: the forward ``HORIZON_MONTHS``-month return ``P[t+h] / P[t] - 1`` in the top 3 % of
the training window (cut-off from the training window only, as :mod:`bench.sp500`). The
label window of month ``t`` ends at month ``t + h``: consecutive labels overlap by ``h - 1``
months, which is what purging is for. ``payoff`` is that forward return less 20 bp of
round-trip cost: the money made by acting on the signal.

Examples
--------
>>> panel = market_panel()
>>> panel.table.votes.shape[1], len(set(panel.entities.tolist()))
(8, 30)
>>> bool(((panel.table.votes > 0) & (panel.table.votes <= 1)).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metasignal.trainer.data import VoteTable

HORIZON_MONTHS = 6
COST = 0.002
TOP = 0.03
MEMBERS = (
    "mom_12_1",
    "mom_6",
    "reversal_1",
    "vol_regime",
    "xs_mom_rank",
    "market_mom",
    "rel_strength_3",
    "drawdown_12",
)
ASSETS = [
    "NoDur",
    "Durbl",
    "Manuf",
    "Enrgy",
    "Chems",
    "BusEq",
    "Telcm",
    "Utils",
    "Shops",
    "Hlth",
    "Money",
    "Other",
    "S1V1",
    "S1V3",
    "S1V5",
    "S3V1",
    "S3V3",
    "S3V5",
    "S5V1",
    "S5V3",
    "S5V5",
    "S1M1",
    "S1M3",
    "S1M5",
    "S3M1",
    "S3M3",
    "S3M5",
    "S5M1",
    "S5M3",
    "S5M5",
]


@dataclass(frozen=True)
class Panel:
    """The vote table (rows by month, then entity) with its side columns."""

    table: VoteTable
    entities: np.ndarray
    label_end_ms: np.ndarray
    payoff: np.ndarray


def _sigmoid(x: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    return 1.0 / (1.0 + np.exp(-x.clip(-30, 30)))


def _members(returns: pd.DataFrame, market: pd.Series) -> dict[str, pd.DataFrame]:
    logret = np.log1p(returns)
    sigma12 = returns.rolling(12).std()
    sigma60 = returns.rolling(60).std()
    mom_12_1 = logret.shift(1).rolling(11).sum()
    three = logret.rolling(3).sum()
    price = np.exp(logret.cumsum())
    market_log = np.log1p(market)
    market_z = market_log.rolling(12).sum() / (market.rolling(12).std() * math.sqrt(12))
    return {
        "mom_12_1": _sigmoid(mom_12_1 / (sigma12 * math.sqrt(11))),
        "mom_6": _sigmoid(logret.rolling(6).sum() / (sigma12 * math.sqrt(6))),
        "reversal_1": _sigmoid(-returns / sigma12),
        "vol_regime": _sigmoid(np.log(sigma12 / sigma60)),
        "xs_mom_rank": mom_12_1.rank(axis=1) / (returns.shape[1] + 1),
        "market_mom": pd.DataFrame(
            np.repeat(_sigmoid(market_z).to_numpy()[:, None], returns.shape[1], axis=1),
            index=returns.index,
            columns=returns.columns,
        ),
        "rel_strength_3": _sigmoid(
            three.sub(three.mean(axis=1), axis=0) / (sigma12 * math.sqrt(3))
        ),
        "drawdown_12": price / price.rolling(12).max(),
    }


def market_panel(holdout: float = 0.3) -> Panel:
    """The panel, rows sorted by month then entity, the label cut-off from the training window."""
    from linearmodels.datasets import french

    data = french.load().set_index("dates").sort_index()
    returns = data[ASSETS].astype(np.float64)
    members = _members(returns, data["MktRF"] + data["RF"])
    h = HORIZON_MONTHS
    forward = (np.exp(np.log1p(returns).rolling(h).sum().shift(-h)) - 1).stack()
    frame = pd.DataFrame({name: m.stack() for name, m in members.items()})
    frame["forward"] = forward
    frame = frame.dropna().sort_index(level=[0, 1])
    months = frame.index.get_level_values(0)
    ends = pd.DatetimeIndex(months) + pd.DateOffset(months=h)
    times = months.to_numpy().astype("datetime64[ms]").astype(np.int64)
    # The cut-off sees the training window only (whole months, as the fit cuts).
    distinct = np.unique(times)
    first_holdout = distinct[len(distinct) - math.ceil(len(distinct) * holdout)]
    train = frame["forward"].to_numpy()[times < first_holdout]
    cutoff = float(np.quantile(train, 1 - TOP))
    labels = (frame["forward"].to_numpy() > cutoff).astype(np.int8)
    table = VoteTable(
        time_ms=times,
        members=MEMBERS,
        votes=frame[list(MEMBERS)].to_numpy(dtype=np.float64).clip(1e-9, 1.0),
        labels=labels,
    )
    return Panel(
        table=table,
        entities=frame.index.get_level_values(1).to_numpy(),
        label_end_ms=ends.to_numpy().astype("datetime64[ms]").astype(np.int64),
        payoff=frame["forward"].to_numpy() - COST,
    )
