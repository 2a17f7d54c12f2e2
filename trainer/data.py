"""Reading and validating a committee-vote table (CSV or Parquet).

One row per event: a time column, one numeric column per committee member and
a binary label. Every problem is a :class:`DataError` with a one-line message
that names the column (and row) at fault.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "votes.csv"
>>> _ = path.write_text("ts,a,b,label\\n1,0.2,0.9,1\\n2,0.1,0.3,0\\n3,0.4,0.2,0\\n")
>>> table = load_table(path, label="label", time="ts")
>>> table.members, table.labels.tolist()
(('a', 'b'), [1, 0, 0])
>>> load_table(path, label="y", time="ts")
Traceback (most recent call last):
...
metasignal.trainer.data.DataError: label column 'y' not found in votes.csv (columns: ...)
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from metasignal.stream.errors import MetasignalError

log = logging.getLogger("metasignal.trainer")


class DataError(MetasignalError, ValueError):
    """The input table cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class VoteTable:
    """Validated, time-ordered committee votes with labels."""

    time_ms: np.ndarray
    members: tuple[str, ...]
    votes: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    def rows(self, start: int, stop: int) -> VoteTable:
        return VoteTable(
            time_ms=self.time_ms[start:stop],
            members=self.members,
            votes=self.votes[start:stop],
            labels=self.labels[start:stop],
        )


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    """Every column as an array of strings (CSV) or native values (Parquet)."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                "reading Parquet needs pyarrow: pip install 'metasignal[parquet]'"
            ) from None
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises many types for a bad file
            raise DataError(f"cannot read Parquet file {path.name}: {exc}") from None
        return {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.schema.names
        }
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"data file {path.name} is empty")
            rows = list(reader)
    except UnicodeDecodeError:
        raise DataError(f"data file {path.name} is not UTF-8 text (CSV expected)") from None
    except csv.Error as exc:
        raise DataError(f"data file {path.name} is not valid CSV: {exc}") from None
    header = [name.strip() for name in header]
    if len(set(header)) != len(header):
        raise DataError(f"data file {path.name} has duplicate column names")
    if not rows:
        return {name: np.array([], dtype=str) for name in header}
    widths = {len(row) for row in rows}
    if widths != {len(header)}:
        bad = next(i for i, row in enumerate(rows) if len(row) != len(header))
        raise DataError(
            f"{path.name} row {bad + 2} has {len(rows[bad])} fields, header has {len(header)}"
        )
    matrix = np.array(rows, dtype=str)
    return {name: matrix[:, j] for j, name in enumerate(header)}


def _as_float(values: np.ndarray) -> np.ndarray | None:
    """Floats, or None for a non-numeric column; an empty CSV cell is a missing value (NaN)."""
    if values.dtype.kind == "U":
        values = np.where(np.char.strip(values) == "", "nan", values)
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        return None


def _parse_time(values: np.ndarray, column: str) -> np.ndarray:
    """Epoch milliseconds from numbers (taken as epoch ms) or ISO-8601 strings."""
    numeric = _as_float(values)
    if numeric is not None:
        if not np.isfinite(numeric).all():
            raise DataError(f"time column {column!r} has missing or non-finite values")
        return numeric.astype(np.int64)
    if np.issubdtype(np.asarray(values).dtype, np.datetime64):
        return np.asarray(values).astype("datetime64[ms]").astype(np.int64)
    out = np.empty(len(values), dtype=np.int64)
    for i, text in enumerate(values):
        try:
            stamp = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise DataError(
                f"time column {column!r} row {i + 2}: {text!r} is neither epoch ms nor ISO-8601"
            ) from None
        if stamp.tzinfo is None:
            raise DataError(
                f"time column {column!r} row {i + 2}: {text!r} has no timezone (use Z or +00:00)"
            )
        out[i] = round(stamp.timestamp() * 1000)
    return out


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 2  # +1 header, +1 one-based


def load_table(
    path: str | Path,
    *,
    label: str,
    time: str,
    members: Sequence[str] | None = None,
    raw_scores: bool = False,
    strict: bool = False,
) -> VoteTable:
    """Read and validate a vote table.

    Parameters
    ----------
    path
        CSV (header row) or Parquet file.
    label, time
        Names of the binary label column and the event-time column.
    members
        Member columns in order; default every numeric column except time and label.
    raw_scores
        Accept unbounded member scores instead of probabilities in [0, 1].
    strict
        Refuse rows out of time order instead of sorting them with a warning.
    """
    path = Path(path)
    columns = _read_columns(path)
    names = list(columns)
    listing = ", ".join(names)
    for role, name in (("label", label), ("time", time)):
        if name not in columns:
            raise DataError(f"{role} column {name!r} not found in {path.name} (columns: {listing})")
    n_rows = len(columns[label])
    if n_rows == 0:
        raise DataError(f"data file {path.name} has a header but no rows")
    if members is None:
        chosen = [
            name
            for name in names
            if name not in (label, time) and _as_float(columns[name]) is not None
        ]
        if not chosen:
            raise DataError(f"no numeric member columns in {path.name} besides {time!r}, {label!r}")
    else:
        chosen = list(members)
        unknown = [m for m in chosen if m not in columns]
        if unknown:
            raise DataError(f"unknown member column(s) {', '.join(unknown)} (columns: {listing})")
        if len(set(chosen)) != len(chosen):
            raise DataError("a member column is listed twice")
        if label in chosen or time in chosen:
            raise DataError("the label and time columns cannot be members")
    votes = np.empty((n_rows, len(chosen)), dtype=np.float64)
    for j, name in enumerate(chosen):
        values = _as_float(columns[name])
        if values is None:
            raise DataError(f"member column {name!r} is not numeric")
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"member column {name!r} has a missing, NaN or infinite value "
                f"(row {_first_bad_row(bad)})"
            )
        if not raw_scores:
            outside = (values < 0) | (values > 1)
            if outside.any():
                raise DataError(
                    f"member column {name!r} has a value outside [0, 1] (row "
                    f"{_first_bad_row(outside)}: {values[outside][0]!r}); "
                    "pass --raw-scores for unbounded scores"
                )
        votes[:, j] = values
    labels = _as_float(columns[label])
    if labels is None or not np.isin(labels, (0.0, 1.0)).all():
        raise DataError(f"label column {label!r} must hold only 0 and 1")
    labels = labels.astype(np.int8)
    if labels.min() == labels.max():
        raise DataError(f"label column {label!r} has a single class ({int(labels[0])}); need both")
    time_ms = _parse_time(columns[time], time)
    steps = np.diff(time_ms)
    if (steps < 0).any():
        first = int(np.flatnonzero(steps < 0)[0]) + 3
        if strict:
            raise DataError(f"time column {time!r} goes backwards at row {first} (--strict)")
        log.warning("time column %r is not sorted (row %d); sorting rows by time", time, first)
        order = np.argsort(time_ms, kind="stable")
        time_ms, votes, labels = time_ms[order], votes[order], labels[order]
    return VoteTable(time_ms=time_ms, members=tuple(chosen), votes=votes, labels=labels)
