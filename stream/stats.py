"""Running figures of one scorer: the rolling trade rate, recent latencies, totals.

Prometheus exports the same figures; these serve summaries (the demo, logs, tests).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


class RollingRate:
    """Share of trades among the last ``window`` decisions (batch-granular).

    >>> rate = RollingRate(4)
    >>> rate.update(0, 0), rate.update(2, 1), rate.update(2, 0), rate.update(2, 2)
    (nan, 0.5, 0.25, 0.5)
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._batches: deque[tuple[int, int]] = deque()
        self._n = 0
        self._trades = 0

    def update(self, n: int, trades: int) -> float:
        self._batches.append((n, trades))
        self._n += n
        self._trades += trades
        while self._batches and self._n - self._batches[0][0] >= self.window:
            old_n, old_trades = self._batches.popleft()
            self._n -= old_n
            self._trades -= old_trades
        return self._trades / self._n if self._n else math.nan


class RecentValues:
    """The last ``capacity`` values of a stream, in one preallocated float array.

    >>> recent = RecentValues(3)
    >>> recent.extend(np.array([1.0, 2.0])); recent.extend(np.array([3.0, 4.0]))
    >>> recent.array().tolist(), len(recent)
    ([2.0, 3.0, 4.0], 3)
    """

    def __init__(self, capacity: int) -> None:
        self._buffer = np.empty(capacity, dtype=np.float64)
        self._written = 0

    def __len__(self) -> int:
        return min(self._written, len(self._buffer))

    def extend(self, values: np.ndarray) -> None:
        capacity = len(self._buffer)
        values = values[-capacity:]
        start = self._written % capacity
        head = min(len(values), capacity - start)
        self._buffer[start : start + head] = values[:head]
        self._buffer[: len(values) - head] = values[head:]
        self._written += len(values)

    def array(self) -> np.ndarray:
        """Oldest first (a copy)."""
        capacity = len(self._buffer)
        if self._written <= capacity:
            return self._buffer[: self._written].copy()
        start = self._written % capacity
        return np.concatenate([self._buffer[start:], self._buffer[:start]])


@dataclass
class ScorerStats:
    """Running totals for summaries (the demo, logs); Prometheus has the same figures."""

    votes: int = 0
    signals: int = 0
    trades: int = 0
    dlq: int = 0
    stale: int = 0
    batches: int = 0
    outcomes: int = 0
    joined: int = 0
    model_versions: list[int] = field(default_factory=list)
    latencies_ms: RecentValues = field(default_factory=lambda: RecentValues(200_000))
    drift_requests: list[dict[str, object]] = field(default_factory=list)
