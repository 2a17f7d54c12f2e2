"""How sure are we of the threshold and of the holdout figures?

Block bootstrap over time blocks (:mod:`metasignal.trainer.resample`), made cheap
by counting once per block: a resample weights each block by how often it was
drawn, so every confusion count (and payoff sum) of the resample is a weighted
sum of per-block counts. The threshold search runs on a grid of score
quantiles (exact when there are fewer distinct scores than grid points).

Examples
--------
>>> import numpy as np
>>> from metasignal.trainer.objective import Objective
>>> rng = np.random.default_rng(0)
>>> y = (rng.random(3000) < 0.1).astype(int)
>>> p = np.clip(0.1 + 0.3 * y + 0.1 * rng.standard_normal(3000), 0, 1)
>>> blocks = np.repeat(np.arange(30), 100)
>>> low, high = threshold_interval(Objective(), y, p, blocks)
>>> bool(low <= Objective().find(y, p).threshold <= high)
True
>>> iv = holdout_intervals(y, p, 0.25, blocks)
>>> bool(iv["f1"][0] < iv["f1"][1])
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from metasignal.trainer.metrics import Counts, objective_values
from metasignal.trainer.objective import Objective
from metasignal.trainer.resample import DEFAULT_RESAMPLES, interval

__all__ = ["block_weights", "holdout_intervals", "threshold_interval"]

GRID = 2000


def block_weights(n_blocks: int, n_resamples: int, rng: np.random.Generator) -> NDArray[Any]:
    """``(n_resamples, n_blocks)`` multiplicities of a block bootstrap."""
    draws = rng.integers(0, n_blocks, size=(n_resamples, n_blocks))
    return np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype(np.float64)


def _per_block(
    blocks: NDArray[np.integer], values: NDArray[Any], n_blocks: int, candidates: NDArray[Any]
) -> NDArray[np.float64]:
    """``out[b, j]``: sum of ``values`` over block-``b`` rows at positions ``<= candidates[j]``
    (positions in the descending score order)."""
    out = np.zeros((n_blocks, candidates.size))
    for b in range(n_blocks):
        positions = np.flatnonzero(blocks == b)
        cumulative = np.concatenate([[0.0], np.cumsum(values[positions])])
        out[b] = cumulative[np.searchsorted(positions, candidates, side="right")]
    return out


def threshold_interval(
    objective: Objective,
    y: NDArray[np.integer],
    scores: NDArray[np.floating],
    blocks: NDArray[np.integer],
    payoff: NDArray[np.floating] | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % block-bootstrap interval of the objective-optimal threshold."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s_desc = np.asarray(scores, dtype=np.float64)[order]
    run_ends = np.append(np.flatnonzero(s_desc[1:] != s_desc[:-1]), s_desc.size - 1)
    if run_ends.size > GRID:
        run_ends = np.unique(run_ends[np.linspace(0, run_ends.size - 1, GRID).astype(int)])
    b_sorted = np.asarray(blocks)[order]
    n_blocks = int(b_sorted.max()) + 1
    y_sorted = np.asarray(y, dtype=np.float64)[order]
    tp_b = _per_block(b_sorted, y_sorted, n_blocks, run_ends)
    traded_b = _per_block(b_sorted, np.ones_like(y_sorted), n_blocks, run_ends)
    pay_b = (
        None
        if payoff is None
        else _per_block(b_sorted, np.asarray(payoff, dtype=np.float64)[order], n_blocks, run_ends)
    )
    pos_b = np.bincount(b_sorted, weights=y_sorted, minlength=n_blocks)
    size_b = np.bincount(b_sorted, minlength=n_blocks).astype(np.float64)
    weights = block_weights(n_blocks, n_resamples, np.random.default_rng(seed))
    chosen = []
    spec = objective.spec
    for w in weights:
        tp = w @ tp_b
        counts = Counts(
            thresholds=s_desc[run_ends],
            tp=tp,
            fp=w @ traded_b - tp,
            n_pos=float(w @ pos_b),
            n=int(w @ size_b),
            payoff=None if pay_b is None else w @ pay_b,
        )
        if counts.n_pos <= 0:
            continue
        values, allowed = objective_values(counts, spec)
        values = np.where(allowed, values, -np.inf)
        # Ties go to the highest threshold, as in the search itself.
        chosen.append(float(counts.thresholds[int(np.argmax(values))]))
    return interval(np.array(chosen))


def holdout_intervals(
    y: NDArray[np.integer],
    scores: NDArray[np.floating],
    threshold: float,
    blocks: NDArray[np.integer],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % block-bootstrap intervals of F1, precision and recall at a fixed threshold."""
    blocks = np.asarray(blocks)
    n_blocks = int(blocks.max()) + 1
    labels = np.asarray(y).astype(bool)
    traded = np.asarray(scores) >= threshold
    tp_b = np.bincount(blocks, weights=(labels & traded).astype(float), minlength=n_blocks)
    traded_b = np.bincount(blocks, weights=traded.astype(float), minlength=n_blocks)
    pos_b = np.bincount(blocks, weights=labels.astype(float), minlength=n_blocks)
    weights = block_weights(n_blocks, n_resamples, np.random.default_rng(seed))
    tp, trades, positives = weights @ tp_b, weights @ traded_b, weights @ pos_b
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(trades > 0, tp / trades, 0.0)
        recall = np.where(positives > 0, tp / positives, np.nan)
        f1 = np.where(trades + positives > 0, 2 * tp / (trades + positives), np.nan)
    return {
        name: list(interval(v))
        for name, v in (("f1", f1), ("precision", precision), ("recall", recall))
    }
