"""An S&P 500 committee: eight technical-rule members voting on rare strong up-moves.

Data: ``arch.data.sp500.load()``, the daily S&P 500 index (open, high, low, close, adjusted
close, volume) from 1999-01-04 to 2018-12-31, 5,031 trading days, bundled with ``arch``.

Every member sees only the close and volume up to and including day ``t`` (a decision made at
the close of ``t``) and emits a probability-like score in (0, 1). ``sigma20`` is the standard
deviation of the last 20 daily log returns (ending with the return into ``t``):

* ``mom_5``, ``mom_20``, ``mom_60``: momentum, ``sigmoid(z)`` of the n-day log return divided
  by its trailing scale ``sigma * sqrt(n)`` (``sigma20`` for 5 and 20 days, the 60-day
  standard deviation for 60 days);
* ``rsi_14``: Wilder's 14-day relative strength index / 100;
* ``ma_dist_50``: distance from the 50-day moving average, ``sigmoid(log(C / SMA50) /
  (sigma20 * sqrt(50)))``;
* ``vol_regime``: ``sigmoid(log(sigma20 / sigma250))``, high when the market is more volatile
  than over the past year;
* ``volume_surge``: ``sigmoid`` of today's log volume as a z-score against the previous 20
  days' log volumes;
* ``bollinger_b``: Bollinger %b on the 20-day band (2 standard deviations), mapped by
  ``sigmoid(4 * (%b - 0.5)) = sigmoid((C - SMA20) / sd20)`` instead of clipping, so
  breakouts beyond the band stay finite and ordered.

Label: the forward 5-day return ``C[t+5] / C[t] - 1`` divided by ``sigma20[t]`` (a
volatility-adjusted move); ``1`` when it is above the 97th percentile of that quantity over the
training window only, so the top ~3 % of the training window are trades. The cut-off is then
applied unchanged to the whole series, so the holdout's rate is whatever the market did.

Rows: the first 250 days (``vol_regime`` needs a year of returns) and the last 5 days (forward
window incomplete) are dropped. The training window is the first ``1 - holdout`` of the
remaining rows, split exactly as :func:`metasignal.trainer.fit.fit_meta_model` splits
(``ceil`` for the holdout), so the cut-off never sees a holdout label. The labels of the last 5
training rows look 5 days into the holdout period's prices; no purge gap is used (same for every
method).

Examples
--------
>>> table = sp500_committee()
>>> table.members[:3], table.votes.shape[1]
(('mom_5', 'mom_20', 'mom_60'), 8)
>>> bool(((table.votes > 0) & (table.votes < 1)).all())
True
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metasignal.trainer.data import VoteTable

MEMBERS = (
    "mom_5",
    "mom_20",
    "mom_60",
    "rsi_14",
    "ma_dist_50",
    "vol_regime",
    "volume_surge",
    "bollinger_b",
)
HORIZON = 5
TOP_SHARE = 0.03
WARM_UP = 250


def _sigmoid(z: pd.Series) -> pd.Series:
    return 1.0 / (1.0 + np.exp(-z))


def _rsi(close: pd.Series, window: int = 14) -> pd.Series:
    """Wilder's RSI in [0, 100] (exponential smoothing with alpha = 1 / window)."""
    change = close.diff()
    smooth = {"alpha": 1.0 / window, "min_periods": window, "adjust": False}
    gain = change.clip(lower=0.0).ewm(**smooth).mean()
    loss = (-change.clip(upper=0.0)).ewm(**smooth).mean()
    return 100.0 * gain / (gain + loss)


def member_scores(prices: pd.DataFrame) -> pd.DataFrame:
    """The eight members' scores per day; NaN during each rule's warm-up."""
    close = prices["Adj Close"].astype(float)
    log_close = np.log(close)
    ret = log_close.diff()
    sigma20 = ret.rolling(20).std()
    sigma60 = ret.rolling(60).std()
    sigma250 = ret.rolling(WARM_UP).std()
    sma20 = close.rolling(20).mean()
    sd20 = close.rolling(20).std()
    sma50 = close.rolling(50).mean()
    log_volume = np.log(prices["Volume"].astype(float))
    # The previous 20 days only: today's volume is what is being judged as a surge.
    past_volume = log_volume.shift(1).rolling(20)
    return pd.DataFrame(
        {
            "mom_5": _sigmoid(log_close.diff(5) / (sigma20 * math.sqrt(5))),
            "mom_20": _sigmoid(log_close.diff(20) / (sigma20 * math.sqrt(20))),
            "mom_60": _sigmoid(log_close.diff(60) / (sigma60 * math.sqrt(60))),
            "rsi_14": _rsi(close) / 100.0,
            "ma_dist_50": _sigmoid(np.log(close / sma50) / (sigma20 * math.sqrt(50))),
            "vol_regime": _sigmoid(np.log(sigma20 / sigma250)),
            "volume_surge": _sigmoid((log_volume - past_volume.mean()) / past_volume.std()),
            "bollinger_b": _sigmoid((close - sma20) / sd20),
        },
        index=prices.index,
    )[list(MEMBERS)]


def sp500_committee(holdout: float = 0.3) -> VoteTable:
    """The committee table in time order; the label cut-off comes from the training window."""
    from arch.data import sp500

    prices = sp500.load()
    close = prices["Adj Close"].astype(float)
    sigma20 = np.log(close).diff().rolling(20).std()
    forward = (close.shift(-HORIZON) / close - 1.0) / sigma20
    scores = member_scores(prices)
    keep = scores.notna().all(axis=1) & forward.notna()
    keep.iloc[:WARM_UP] = False
    scores, forward = scores[keep], forward[keep]
    n = len(forward)
    n_train = n - math.ceil(n * holdout)
    cut = float(np.quantile(forward.to_numpy()[:n_train], 1.0 - TOP_SHARE))
    labels = (forward.to_numpy() > cut).astype(np.int8)
    votes = scores.to_numpy(dtype=np.float64)
    time_ms = scores.index.to_numpy().astype("datetime64[ms]").astype(np.int64)
    return VoteTable(time_ms=time_ms, members=MEMBERS, votes=votes, labels=labels)
