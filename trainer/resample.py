"""Block bootstrap over time: intervals that respect serial dependence.

Events close in time share regimes (and, in a panel, a whole day's
instruments share one market move), so resampling single rows understates
uncertainty. We resample whole contiguous time blocks
(:func:`metasignal.trainer.purge.time_blocks`) with replacement, which keeps
the dependence inside each block.

Examples
--------
>>> import numpy as np
>>> ids = np.repeat(np.arange(4), 3)
>>> rng = np.random.default_rng(0)
>>> sample = next(block_bootstrap(ids, 1, rng))
>>> len(sample), bool((sample[::3] % 3 == 0).all())  # whole blocks of 3 rows
(12, True)
>>> [round(v, 6) for v in interval(np.arange(101.0))]
[2.5, 97.5]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

__all__ = ["DEFAULT_BLOCKS", "DEFAULT_RESAMPLES", "block_bootstrap", "bootstrap_stat", "interval"]

DEFAULT_RESAMPLES = 500
DEFAULT_BLOCKS = 40


def block_bootstrap(
    block_ids: NDArray[np.integer], n_resamples: int, rng: np.random.Generator
) -> Iterator[NDArray[np.int64]]:
    """Row indices of ``n_resamples`` resamples: as many blocks as there are, with replacement,
    concatenated in the drawn order."""
    ids = np.asarray(block_ids)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    stops = np.r_[starts[1:], ids.size]
    for _ in range(n_resamples):
        drawn = rng.integers(0, starts.size, size=starts.size)
        yield np.concatenate([np.arange(starts[b], stops[b]) for b in drawn]).astype(np.int64)


def interval(values: NDArray[np.floating], level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of finite bootstrap replicates (NaN, NaN without any)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_stat(
    statistic: Callable[[NDArray[np.int64]], float],
    block_ids: NDArray[np.integer],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Interval of ``statistic(rows)`` over block-bootstrap resamples of the rows."""
    rng = np.random.default_rng(seed)
    values = np.array(
        [statistic(rows) for rows in block_bootstrap(block_ids, n_resamples, rng)],
        dtype=np.float64,
    )
    return interval(values, level)
