"""The training window: the most recent joined rows from ``training`` (:class:`TrainingWindow`).

The scorer joins each decision with its late outcome and writes the row to
``training``; the trainer keeps the newest ``max_rows`` of them, time-ordered when
a candidate is built. A row that does not decode is refused, one at a time.

Examples
--------
>>> rows = [
...     {"ts": 2, "votes": {"a": 0.2, "b": 0.9}, "label": 1},
...     {"ts": 1, "votes": {"a": 0.7}, "label": 0},
... ]
>>> table = rows_to_table(rows, ["a", "b"])
>>> table.time_ms.tolist(), table.labels.tolist()
([1, 2], [0, 1])
>>> table.votes.tolist()
[[0.7, nan], [0.2, 0.9]]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metasignal.stream.messages import MessageError, TrainingRow, decode_training_row
from metasignal.stream.transport.base import Consumer
from metasignal.trainer.data import VoteTable
from metasignal.trainer.published import OnRefused, read_to_end

__all__ = ["TrainingWindow", "rows_to_table"]


def rows_to_table(rows: Sequence[Mapping[str, Any]], members: Sequence[str]) -> VoteTable:
    """Joined training rows, time-ordered, in the champion's member order (NaN = missing)."""
    ordered = sorted(rows, key=lambda row: row["ts"])
    votes = np.array(
        [[row["votes"].get(m, np.nan) for m in members] for row in ordered], dtype=np.float64
    ).reshape(len(ordered), len(members))
    return VoteTable(
        time_ms=np.array([row["ts"] for row in ordered], dtype=np.int64),
        members=tuple(members),
        votes=votes,
        labels=np.array([row["label"] for row in ordered], dtype=np.int8),
    )


class TrainingWindow:
    """The newest ``max_rows`` joined rows read from ``training``."""

    def __init__(self, *, consumer: Consumer, max_rows: int, on_refused: OnRefused) -> None:
        self.consumer = consumer
        self.rows: deque[TrainingRow] = deque(maxlen=max_rows)
        self._on_refused = on_refused

    def catch_up(self) -> None:
        """Read ``training`` to its current end; older rows fall out of the window."""
        for record in read_to_end(self.consumer):
            try:
                self.rows.append(decode_training_row(record.value))
            except MessageError as bad:
                self._on_refused(record, bad.reason, bad.detail)
            except Exception as exc:
                self._on_refused(record, "internal", repr(exc))

    def table(
        self, members: Sequence[str], *, since_ts: int | None = None, min_regime_rows: int = 0
    ) -> VoteTable:
        """The window as a table; only the rows from ``since_ts`` on (a located rate change:
        learn the new regime only) when there are at least ``min_regime_rows`` of them."""
        rows: Sequence[TrainingRow] = list(self.rows)
        if since_ts is not None:
            recent = [row for row in rows if row["ts"] >= since_ts]
            if len(recent) >= min_regime_rows:
                rows = recent
        return rows_to_table(rows, members)
