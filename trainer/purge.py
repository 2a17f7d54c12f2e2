"""Cutting time-ordered panels: folds at time boundaries, purge and embargo.

A label that spans time (a 5-day forward return) leaks when a training row's
label window reaches into the block it is graded on. Following López de Prado
(*Advances in Financial Machine Learning*, ch. 7):

- every cut falls between two distinct timestamps, so all rows of one time
  (every instrument of one day) land on the same side;
- *purge*: a training row whose label window ``[t, end]`` overlaps the
  validation block ``[first, last]`` is dropped;
- *embargo*: the block is widened by ``embargo`` on both sides before the
  overlap test. After the block it drops the training rows right after it
  (features that still carry the block's information); before it, it keeps a
  safety margin between the last label a model learns from and the first event
  it is graded on, which is what the embargo means in an expanding walk-forward,
  where all training rows precede the block.

Times are integers (epoch milliseconds in the trainer). ``label_end`` is each
row's label-window end, ``time + horizon`` for a constant horizon.

Examples
--------
>>> import numpy as np
>>> parse_duration("5d"), parse_duration("30min"), parse_duration("1h30min")
(432000000, 1800000, 5400000)
>>> times = np.repeat(np.arange(6), 2)  # two instruments a day for six days
>>> snap_cut(times, 3)  # row 3 shares its day with row 2: the cut moves to a boundary
4
>>> folds = time_folds(times, n_splits=2, label_end=times + 1)  # one-day labels
>>> [(f.train.tolist(), f.validation.tolist(), f.purged) for f in folds]
[([0, 1], [4, 5, 6, 7], 2), ([0, 1, 2, 3, 4, 5], [8, 9, 10, 11], 2)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Fold",
    "parse_duration",
    "purge_mask",
    "snap_cut",
    "time_blocks",
    "time_folds",
]

Ints = NDArray[np.int64]

UNITS_MS: Final[dict[str, int]] = {
    "ms": 1,
    "s": 1000,
    "min": 60_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)")


def parse_duration(text: str) -> int:
    """Milliseconds in ``text``: numbers with units ms, s, min (or m), h, d, w; ``0`` allowed."""
    compact = text.strip().lower()
    if compact in ("0", "0s", "0d"):
        return 0
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact.replace(" ", ""):
        raise ValueError(
            f"cannot read duration {text!r}: use a number and a unit (ms, s, min, h, d, w), "
            "e.g. 5d, 30min, 1h30min"
        )
    return round(sum(float(n) * UNITS_MS[u] for n, u in parts))


def snap_cut(times: NDArray[np.integer], index: int) -> int:
    """The time boundary nearest to row ``index`` (ties go later): rows ``[:cut]`` end earlier.

    ``times`` must be sorted. A cut at ``index`` is a boundary when
    ``times[index - 1] < times[index]``; 0 and ``len(times)`` always are.
    """
    n = len(times)
    if index <= 0 or index >= n:
        return int(np.clip(index, 0, n))
    left = int(np.searchsorted(times, times[index], side="left"))
    if left == index:
        return index
    right = int(np.searchsorted(times, times[index], side="right"))
    return left if index - left < right - index else right


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: training rows (after purge and embargo) and its validation block."""

    train: Ints
    validation: Ints
    purged: int = 0
    embargoed: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "train_rows": int(self.train.size),
            "validation_rows": int(self.validation.size),
            "purged": self.purged,
            "embargoed": self.embargoed,
        }


def purge_mask(
    times: NDArray[np.integer],
    label_end: NDArray[np.integer],
    block_start: int,
    block_end: int,
    embargo: int = 0,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Rows to purge (label window overlaps ``[block_start, block_end]``) and to embargo.

    The embargo mask holds the rows that only overlap the block widened by ``embargo``
    on both sides; the two masks are disjoint.
    """

    def overlaps(lo: int, hi: int) -> NDArray[np.bool_]:
        return (np.asarray(times) <= hi) & (np.asarray(label_end) >= lo)

    purged = overlaps(block_start, block_end)
    embargoed = overlaps(block_start - embargo, block_end + embargo) & ~purged
    return purged, embargoed


def _cuts(times: NDArray[np.integer], n_splits: int) -> list[int]:
    """Validation block starts as :class:`sklearn.model_selection.TimeSeriesSplit`, snapped."""
    n = len(times)
    size = n // (n_splits + 1)
    if size < 1:
        raise ValueError(f"{n} rows cannot make {n_splits} walk-forward folds")
    starts = [snap_cut(times, n - k * size) for k in range(n_splits, 0, -1)]
    cuts = sorted({s for s in starts if 0 < s < n})
    if len(cuts) < n_splits:
        distinct = len(np.unique(times))
        raise ValueError(
            f"cannot cut {n_splits} walk-forward folds at time boundaries: the training period "
            f"has {distinct} distinct times (use fewer --splits)"
        )
    return cuts


def time_folds(
    times: NDArray[np.integer],
    *,
    n_splits: int = 5,
    gap: int = 0,
    label_end: NDArray[np.integer] | None = None,
    embargo: int = 0,
) -> list[Fold]:
    """Expanding-window folds cut at time boundaries, purged and embargoed.

    ``gap`` (rows) additionally drops the last ``gap`` rows before each block,
    as :class:`~sklearn.model_selection.TimeSeriesSplit` does.
    """
    times = np.asarray(times)
    n = len(times)
    cuts = _cuts(times, n_splits)
    ends = [*cuts[1:], n]
    folds = []
    for start, stop in zip(cuts, ends, strict=True):
        train = np.arange(max(start - gap, 0), dtype=np.int64)
        purged = embargoed = 0
        if label_end is not None and train.size:
            p, e = purge_mask(
                times[train],
                np.asarray(label_end)[train],
                int(times[start]),
                int(times[stop - 1]),
                embargo,
            )
            purged, embargoed = int(p.sum()), int(e.sum())
            train = train[~(p | e)]
        folds.append(
            Fold(train, np.arange(start, stop, dtype=np.int64), purged=purged, embargoed=embargoed)
        )
    return folds


def time_blocks(times: NDArray[np.integer], n_blocks: int) -> Ints:
    """A block id per row: ``n_blocks`` (or fewer) contiguous runs of similar size, cut at
    time boundaries (the resampling unit of the block bootstrap)."""
    times = np.asarray(times)
    n = len(times)
    n_blocks = max(1, min(n_blocks, n))
    cuts = sorted({snap_cut(times, round(k * n / n_blocks)) for k in range(1, n_blocks)} - {0, n})
    ids = np.zeros(n, dtype=np.int64)
    for cut in cuts:
        ids[cut:] += 1
    return ids
