"""Reading and validating a committee-vote table (CSV, Parquet or a pandas DataFrame).

One row per event: a time column, one numeric column per committee member, a binary label
and, for a panel, an optional entity (instrument) column. Files are read by pyarrow and
checked through pandas; every problem is a :class:`DataError` with a one-line message that
names the column and the row at fault (file rows count the header as row 1).

Times: epoch numbers in ``time_unit`` (``s``, ``ms``, ``us``, ``ns``; refused outside
1990-2100, where a wrong unit lands), ISO-8601 text or datetimes. Times written without a
zone are read in ``timezone`` (UTC by default); times with a zone keep it. Everything ends
as int64 epoch milliseconds, UTC, in :attr:`VoteTable.time_ms`.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "votes.csv"
>>> _ = path.write_text(
...     "ts,a,b,label\\n2024-01-02 09:30:00,0.2,0.9,1\\n2024-01-02 09:31:00,0.1,0.3,0\\n"
... )
>>> table = load_table(path, label="label", time="ts")
>>> table.members, table.labels.tolist(), int(table.time_ms[0])
(('a', 'b'), [1, 0], 1704187800000)
>>> table.source.time_statement
'times have no zone; read as UTC (the default; --timezone to change)'
>>> load_table(path, label="y", time="ts")
Traceback (most recent call last):
...
metasignal.trainer.data.DataError: label column 'y' not found in votes.csv (columns: ...)
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from metasignal.stream.errors import MetasignalError

log = logging.getLogger("metasignal.trainer")

TIME_UNITS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
"""Nanoseconds per unit of an epoch-number time column (``--time-unit``)."""

EARLIEST_MS = 631_152_000_000  # 1990-01-01T00:00:00Z
LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_SAMPLE = 1_000  # cells looked at to tell a text column from a numeric one with bad cells
_ZONE_SUFFIX = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")


class DataError(MetasignalError, ValueError):
    """The input table cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class TableSource:
    """Where a table came from and how it was read: the report's ``input`` block."""

    name: str
    time_column: str
    time_format: str  # "epoch", "iso8601" or "datetime"
    time_unit: str | None  # epoch numbers only
    timezone: str  # the zone times without one were read in
    naive_times: bool  # whether the times carried no zone (so ``timezone`` applied)
    entity_column: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    sorted_by_time: bool = False

    @property
    def time_statement(self) -> str:
        """One sentence for the report: which zone the times were read in."""
        if self.time_format == "epoch":
            return f"epoch {self.time_unit} since 1970-01-01 UTC"
        if not self.naive_times:
            return "times carry their zone; converted to UTC"
        how = "the default; --timezone to change" if self.timezone == "UTC" else "--timezone"
        return f"times have no zone; read as {self.timezone} ({how})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "time": {
                "column": self.time_column,
                "format": self.time_format,
                "unit": self.time_unit,
                "timezone": self.timezone,
                "naive_times": self.naive_times,
                "statement": self.time_statement,
            },
            "entity_column": self.entity_column,
            "left_out": dict(self.left_out),
            "sorted_by_time": self.sorted_by_time,
        }


@dataclass(frozen=True)
class VoteTable:
    """Validated, time-ordered committee votes with labels.

    ``time_ms`` is int64 epoch milliseconds (UTC), non-decreasing; ``entities`` holds one
    instrument id per row (str or int) when the table is a panel, else None. ``payoff``
    (float64, the realized payoff of trading each row) and ``label_end_ms`` (int64 epoch ms,
    each row's label-window end) come from their own columns when asked for; like the
    entities they follow the rows through sorting and :meth:`rows`.
    """

    time_ms: np.ndarray
    members: tuple[str, ...]
    votes: np.ndarray
    labels: np.ndarray
    entities: np.ndarray | None = None
    source: TableSource | None = None
    payoff: np.ndarray | None = None
    label_end_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    def rows(self, start: int, stop: int) -> VoteTable:
        return replace(
            self,
            time_ms=self.time_ms[start:stop],
            votes=self.votes[start:stop],
            labels=self.labels[start:stop],
            entities=None if self.entities is None else self.entities[start:stop],
            payoff=None if self.payoff is None else self.payoff[start:stop],
            label_end_ms=None if self.label_end_ms is None else self.label_end_ms[start:stop],
        )


def input_summary(table: VoteTable, *, top: int = 10, max_entities: int = 1000) -> dict[str, Any]:
    """The report's ``input`` block: how the table was read, and rows/positives per entity.

    Examples
    --------
    >>> t = VoteTable(np.arange(4), ("a",), np.zeros((4, 1)), np.array([1, 0, 1, 0]),
    ...               entities=np.array(["x", "y", "x", "x"]))
    >>> input_summary(t)["entities"]["top"][0]
    {'entity': 'x', 'rows': 3, 'positives': 2}
    """
    summary: dict[str, Any] = {} if table.source is None else table.source.to_dict()
    summary.update(rows=len(table), positives=table.positives, members=list(table.members))
    if table.entities is None:
        summary["entities"] = None
        return summary
    codes, uniques = pd.factorize(table.entities, sort=False)
    rows = np.bincount(codes, minlength=len(uniques))
    positives = np.bincount(codes, weights=table.labels, minlength=len(uniques)).astype(np.int64)
    order = np.lexsort((-rows, -positives))  # most positives first, then most rows

    def entry(i: int) -> dict[str, Any]:
        return {"entity": _plain(uniques[i]), "rows": int(rows[i]), "positives": int(positives[i])}

    summary["entities"] = {
        "column": None if table.source is None else table.source.entity_column,
        "count": len(uniques),
        "rows_per_entity": {
            "min": int(rows.min()),
            "median": float(np.median(rows)),
            "max": int(rows.max()),
        },
        "with_positives": int((positives > 0).sum()),
        "top": [entry(int(i)) for i in order[:top]],
        "per_entity": [entry(int(i)) for i in np.argsort(-rows, kind="stable")[:max_entities]],
        "per_entity_truncated": len(uniques) > max_entities,
    }
    return summary


# -- reading ----------------------------------------------------------------------------


RowName = Callable[[int], str]


def _plain(value: Any) -> Any:
    """A JSON- and message-friendly Python scalar (never a numpy repr)."""
    return value.item() if isinstance(value, np.generic) else value


def _show(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _file_row_namer(path: Path) -> RowName:
    """Row names as a spreadsheet shows them (header = row 1); looked up for errors only."""

    def name(index: int) -> str:
        # pyarrow skips blank lines and reads quoted newlines: recount physical lines here.
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                next(reader, None)
                seen = -1
                for row in reader:
                    seen += bool(row)
                    if seen == index:
                        return f"row {reader.line_num}"
        except (OSError, UnicodeDecodeError, csv.Error):
            pass
        return f"row {index + 2}"

    return name


def _frame_row_namer(frame: pd.DataFrame) -> RowName:
    return lambda index: f"row {index} (index {_show(frame.index[index])})"


def _check_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise DataError(f"data file {path.name} is not UTF-8 text (CSV expected)") from None
    except csv.Error as exc:
        raise DataError(f"data file {path.name} is not valid CSV: {exc}") from None
    if not header:
        raise DataError(f"data file {path.name} is empty")
    names = [name.strip() for name in header]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"data file {path.name} has duplicate column names: {', '.join(twice)}")
    return names


def _first_ragged_row(path: Path) -> str | None:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        width = len(next(reader, []))
        for row in reader:
            if row and len(row) != width:
                return f"row {reader.line_num} has {len(row)} fields, header has {width}"
    return None


def _arrow_error(path: Path, exc: Exception) -> DataError:
    message = str(exc).splitlines()[0]
    if "UTF8" in message:
        return DataError(f"data file {path.name} is not UTF-8 text (CSV expected)")
    ragged = _first_ragged_row(path)
    return DataError(f"{path.name} {ragged or 'is not valid CSV: ' + message}")


def _could_be_member(sample: pd.Series) -> bool:
    """Whether a column must be read in full to choose the members (judged on its first rows)."""
    too_few = int(sample.notna().sum()) < _SAMPLE
    return too_few or _is_numeric(sample) or _looks_numeric(sample)


def _read_csv(
    path: Path, wanted: Wanted, names: list[str]
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """The columns worth reading, and the first rows of each column left unread."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        # The first block (1 MB, its types inferred) tells which columns can be skipped: a
        # text id column is most of a vote file's parsing time and memory.
        with pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 20)) as head:
            first = head.read_next_batch().to_pandas()
        include = [raw for raw in first.columns if wanted.read(raw.strip(), first[raw])]
        table = pa_csv.read_csv(
            path, convert_options=pa_csv.ConvertOptions(include_columns=include)
        )
    except StopIteration:  # a header and no rows
        return pd.DataFrame(columns=names), {}
    except pa.ArrowInvalid as exc:
        raise _arrow_error(path, exc) from None
    first.columns = pd.Index([name.strip() for name in first.columns])
    table = table.rename_columns([name.strip() for name in table.column_names])
    skipped = {name: first[name] for name in first.columns if name not in table.column_names}
    # self_destruct frees each Arrow column once converted: a lower peak on big files.
    return table.to_pandas(self_destruct=True, split_blocks=True), skipped


def _release_arrow_memory() -> None:
    # Arrow's allocator keeps freed pages for reuse; once the frame is gone they are ~100 MB
    # of a 1M-row file that the fit would otherwise carry in its peak RSS.
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise DataError(f"cannot read Parquet file {path.name}: {exc}") from None


@dataclass(frozen=True)
class Wanted:
    """Which columns of a file to read: ``needed`` always, the others if they could be members."""

    needed: frozenset[str] | None = None  # None: every column
    others: bool = True

    def read(self, name: str, first_rows: pd.Series) -> bool:
        if self.needed is None or name in self.needed:
            return True
        return self.others and _could_be_member(first_rows)


@dataclass(frozen=True)
class RawTable:
    """A table as read: the columns read, the first rows of those skipped, how to name rows."""

    frame: pd.DataFrame
    name: str
    rows: RowName
    columns: list[str]  # every column, in the file's order
    skipped: dict[str, pd.Series] = field(default_factory=dict)

    def column(self, name: str) -> pd.Series:
        """The whole column, or the first rows of one that was not read."""
        return self.frame[name] if name in self.frame.columns else self.skipped[name]


def read_frame(data: str | Path | pd.DataFrame, wanted: Wanted | None = None) -> RawTable:
    """The raw table: every column of a DataFrame or Parquet file, a CSV's ``wanted`` ones."""
    if isinstance(data, pd.DataFrame):
        if len(set(map(str, data.columns))) != data.shape[1]:
            raise DataError("the DataFrame has duplicate column names")
        frame = data.rename(columns=str)
        return RawTable(frame, "the DataFrame", _frame_row_namer(frame), list(frame.columns))
    path = Path(data)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        frame = _read_parquet(path)
        return RawTable(frame, path.name, lambda index: f"row {index + 1}", list(frame.columns))
    names = _check_header(path)
    frame, skipped = _read_csv(path, wanted or Wanted(), names)
    return RawTable(frame, path.name, _file_row_namer(path), names, skipped)


# -- columns ----------------------------------------------------------------------------


def _is_numeric(series: pd.Series) -> bool:
    return series.dtype.kind in "iuf" or pd.api.types.is_bool_dtype(series.dtype)


def _looks_numeric(series: pd.Series) -> bool:
    """A text column whose cells are mostly numbers: numbers with a few bad cells."""
    sample = series.dropna().head(_SAMPLE)
    if sample.empty:
        return False
    parsed = pd.to_numeric(sample.astype(str).str.strip(), errors="coerce")
    return bool(parsed.notna().mean() >= 0.5)


def _numbers(series: pd.Series, what: str, rows: RowName) -> np.ndarray:
    """float64 values of a numeric column; a cell that is not a number is an error."""
    if _is_numeric(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    text = series.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & series.notna().to_numpy() & (text != "").to_numpy()
    bad &= ~text.str.lower().isin(("nan", "na", "null", "none", "")).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what} {rows(i)}: {_show(series.iloc[i])} is not a number")
    return values


def _choose_members(
    raw: RawTable,
    roles: dict[str, str],
    members: Sequence[str] | None,
    listing: str,
    expected_by: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Member columns, and every other column left out with the reason."""
    if members is not None:
        chosen = list(members)
        unknown = [m for m in chosen if m not in raw.columns]
        if unknown:
            what = (
                f"{expected_by} needs member column(s)"
                if expected_by
                else "unknown member column(s)"
            )
            raise DataError(f"{what} {', '.join(unknown)} (columns: {listing})")
        if len(set(chosen)) != len(chosen):
            raise DataError("a member column is listed twice")
        for name in chosen:
            if name in roles:
                raise DataError(f"the {roles[name]} column {name!r} cannot be a member")
        return chosen, {
            name: "not in --members"
            for name in raw.columns
            if name not in chosen and name not in roles
        }
    chosen, left_out = [], {}
    for name in raw.columns:
        if name in roles:
            continue
        series = raw.column(name)
        if name not in raw.skipped and (_is_numeric(series) or _looks_numeric(series)):
            chosen.append(name)
        elif pd.api.types.is_datetime64_any_dtype(series.dtype):
            left_out[name] = "holds times, not votes"
        elif series.notna().any():
            left_out[name] = f"not numeric (e.g. {_show(series.dropna().iloc[0])})"
        else:
            left_out[name] = "empty"
    if not chosen:
        reasons = "; ".join(f"{k}: {v}" for k, v in left_out.items()) or "no other columns"
        raise DataError(f"no numeric member columns besides the {', '.join(roles)} ({reasons})")
    return chosen, left_out


def _votes(
    frame: pd.DataFrame,
    chosen: list[str],
    rows: RowName,
    *,
    raw_scores: bool,
    members_given: bool,
    expected_by: str | None,
) -> np.ndarray:
    votes = np.empty((len(frame), len(chosen)), dtype=np.float64)
    for j, name in enumerate(chosen):
        what = f"member column {name!r}"
        values = _numbers(frame[name], what, rows)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{what} {rows(i)}: missing, NaN or infinite value")
        if not raw_scores:
            outside = (values < 0) | (values > 1)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise DataError(
                    f"{what} {rows(i)}: {_show(values[i])} is outside [0, 1]; "
                    + _range_hint(members_given, expected_by)
                )
        votes[:, j] = values
    return votes


def _range_hint(members_given: bool, expected_by: str | None) -> str:
    if expected_by is not None:
        return f"{expected_by} takes probabilities in [0, 1] for its members"
    if not members_given:
        return (
            "every numeric column is taken as a member unless --members names them: pass "
            "--members (and --entity for an instrument column); --raw-scores only if every "
            "member emits unbounded scores"
        )
    return "pass --raw-scores if the members emit unbounded scores, not probabilities"


def _labels(series: pd.Series, column: str, rows: RowName) -> np.ndarray:
    what = f"label column {column!r}"
    values = _numbers(series, what, rows)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = "empty" if np.isnan(values[i]) else _show(values[i])
        raise DataError(f"{what} {rows(i)}: {shown}; labels must be 0 or 1")
    labels = values.astype(np.int8)
    if labels.min() == labels.max():
        raise DataError(f"{what} has a single class ({int(labels[0])}); need both")
    return labels


def _payoffs(series: pd.Series, column: str, rows: RowName) -> np.ndarray:
    what = f"payoff column {column!r}"
    values = _numbers(series, what, rows)
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"{what} {rows(int(np.flatnonzero(bad)[0]))}: missing or infinite payoff")
    return values


def _entities(series: pd.Series, column: str, rows: RowName) -> np.ndarray:
    missing = series.isna().to_numpy()
    if not _is_numeric(series):
        missing = missing | (series.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"entity column {column!r} {rows(i)}: missing instrument id")
    integral = series.dtype.kind in "iu" or (
        series.dtype.kind == "f" and bool((series == series.round()).all())
    )
    if integral:
        return np.array(series.to_numpy(dtype=np.int64))  # a writable copy
    return np.array(series.astype(str).to_numpy(dtype=object))


# -- times ------------------------------------------------------------------------------


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA zone (``UTC``, ``America/New_York``), else a DataError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(
            f"unknown --timezone {name!r}: use an IANA name such as UTC or America/New_York"
        ) from None
    return name


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")[:-6] + "Z"


def _epoch_ms(values: np.ndarray, column: str, unit: str, rows: RowName) -> np.ndarray:
    what = f"time column {column!r}"
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"{what} {rows(int(np.flatnonzero(bad)[0]))}: missing time")
    ms = values * (TIME_UNITS[unit] / 1e6)
    outside = (ms < EARLIEST_MS) | (ms >= LATEST_MS)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        fits = [
            u for u, ns in TIME_UNITS.items() if EARLIEST_MS <= values[i] * ns / 1e6 < LATEST_MS
        ]
        hint = f"pass --time-unit {fits[0]}" if fits else "check the column (or --time-unit)"
        when = "before 1990" if ms[i] < EARLIEST_MS else "after 2100"
        at = _iso(int(ms[i])) if -8.6e15 < ms[i] < 2.5e14 else "far away"
        raise DataError(
            f"{what} {rows(i)}: {_show(values[i])} read as epoch {unit} is {at}, {when}; {hint}"
        )
    return np.round(ms).astype(np.int64)


def _datetimes_ms(stamps: pd.Series, column: str, timezone: str, rows: RowName) -> np.ndarray:
    """UTC epoch ms from a datetime column; naive values are local times in ``timezone``."""
    if stamps.dt.tz is None:
        local = stamps.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        lost = local.isna().to_numpy() & stamps.notna().to_numpy()
        if lost.any():
            i = int(np.flatnonzero(lost)[0])
            raise DataError(
                f"time column {column!r} {rows(i)}: {stamps.iloc[i]} does not exist or is "
                f"ambiguous in {timezone} (a daylight-saving change); write times with an offset"
            )
        stamps = local
    missing = stamps.isna().to_numpy()
    if missing.any():
        raise DataError(f"time column {column!r} {rows(int(np.flatnonzero(missing)[0]))}: missing")
    ns = stamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return ns.to_numpy().astype(np.int64) // 1_000_000


def _parse_text_times(text: pd.Series, column: str, rows: RowName) -> tuple[pd.Series, bool]:
    """Datetimes from ISO-8601 text, and whether the text carried no zone."""
    try:
        stamps = pd.to_datetime(text, format="ISO8601", errors="coerce")
    except ValueError:  # mixed offsets, or zoned and naive rows mixed
        zoned = text.str.contains(_ZONE_SUFFIX).to_numpy()
        if not zoned.all():
            i = int(np.flatnonzero(~zoned)[0])
            raise DataError(
                f"time column {column!r} {rows(i)}: {_show(text.iloc[i])} has no zone while "
                "other rows have one; write every time with its zone, or none"
            ) from None
        stamps = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"time column {column!r} {rows(i)}: {_show(text.iloc[i])} is not a time "
            "(epoch number, or ISO-8601 such as 2024-01-02 09:30:00)"
        )
    return stamps, stamps.dt.tz is None


def parse_times(
    series: pd.Series, column: str, *, timezone: str, unit: str, rows: RowName
) -> tuple[np.ndarray, str, bool]:
    """UTC epoch ms, the format found (epoch/iso8601/datetime), and whether times were naive."""
    if unit not in TIME_UNITS:
        raise DataError(f"unknown --time-unit {unit!r} (choose from {', '.join(TIME_UNITS)})")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        naive = getattr(series.dt, "tz", None) is None
        return _datetimes_ms(series, column, timezone, rows), "datetime", naive
    if _is_numeric(series) or _looks_numeric(series):
        values = _numbers(series, f"time column {column!r}", rows)
        return _epoch_ms(values, column, unit, rows), "epoch", False
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"time column {column!r} {rows(int(np.flatnonzero(missing)[0]))}: missing")
    stamps, naive = _parse_text_times(series.astype(str).str.strip(), column, rows)
    return _datetimes_ms(stamps, column, timezone, rows), "iso8601", naive


# -- the table --------------------------------------------------------------------------


def _roles(raw: RawTable, listing: str, *, label: str, **others: str | None) -> dict[str, str]:
    """Column name -> role (label, time, entity, ...), each present and distinct."""
    roles = {label: "label"}
    for role, column in others.items():
        if column is not None:
            if column in roles:
                raise DataError(f"the {role} column {column!r} is also the {roles[column]} column")
            roles[column] = role
    for column, role in roles.items():
        if column not in raw.columns:
            raise DataError(
                f"{role} column {column!r} not found in {raw.name} (columns: {listing})"
            )
    if len(raw.frame) == 0:
        raise DataError(f"{raw.name} has a header but no rows")
    return roles


def _time_order(
    time_ms: np.ndarray, column: str | None, rows: RowName, *, strict: bool
) -> np.ndarray | None:
    """The stable order that sorts rows by time, or None when they already are."""
    backwards = np.flatnonzero(np.diff(time_ms) < 0)
    if not len(backwards):
        return None
    first = rows(int(backwards[0]) + 1)
    if strict:
        raise DataError(f"time column {column!r} goes backwards at {first} (--strict)")
    log.warning("time column %r is not sorted (%s); sorting rows by time", column, first)
    return np.argsort(time_ms, kind="stable")


def load_table(
    data: str | Path | pd.DataFrame,
    *,
    label: str,
    time: str | None,
    members: Sequence[str] | None = None,
    entity: str | None = None,
    payoff: str | None = None,
    label_end: str | None = None,
    timezone: str = "UTC",
    time_unit: str = "ms",
    raw_scores: bool = False,
    strict: bool = False,
    expected_by: str | None = None,
) -> VoteTable:
    """Read and validate a vote table.

    Parameters
    ----------
    data
        CSV (header row) or Parquet file, or a pandas DataFrame.
    label, time
        Names of the binary label column and the event-time column (``time=None`` keeps
        the rows in their order, for scoring only).
    members
        Member columns in order; default every numeric column except the time, label and
        entity columns (the others are recorded in ``source.left_out`` with the reason).
    entity
        Instrument column (str or int ids) of a panel: never a member, kept per row.
    payoff, label_end
        Columns with each row's realized payoff (a finite number) and label-window end (a
        time, read like ``time``); never members, kept per row.
    timezone
        IANA zone of times written without one (default UTC).
    time_unit
        Unit of epoch-number times: ``s``, ``ms`` (default), ``us`` or ``ns``.
    raw_scores
        Accept unbounded member scores instead of probabilities in [0, 1].
    strict
        Refuse rows out of time order instead of sorting them with a warning.
    expected_by
        Set when a model fixes the members ("model meta v3"): errors name it.
    """
    check_timezone(timezone)
    others = {"time": time, "entity": entity, "payoff": payoff, "label_end": label_end}
    needed = {label, *(c for c in others.values() if c is not None), *(members or ())}
    raw = read_frame(data, Wanted(frozenset(needed), others=members is None))
    frame, rows, name = raw.frame, raw.rows, raw.name
    listing = ", ".join(raw.columns)
    roles = _roles(raw, listing, label=label, **others)
    chosen, left_out = _choose_members(raw, roles, members, listing, expected_by)
    votes = _votes(
        frame,
        chosen,
        rows,
        raw_scores=raw_scores,
        members_given=members is not None,
        expected_by=expected_by,
    )
    labels = _labels(frame[label], label, rows)
    entities = None if entity is None else _entities(frame[entity], entity, rows)
    payoffs = None if payoff is None else _payoffs(frame[payoff], payoff, rows)
    ends = None
    if label_end is not None:
        ends = parse_times(
            frame[label_end], label_end, timezone=timezone, unit=time_unit, rows=rows
        )[0]
    if time is None:
        time_ms, time_format, naive = np.arange(len(frame), dtype=np.int64), "row order", False
    else:
        time_ms, time_format, naive = parse_times(
            frame[time], time, timezone=timezone, unit=time_unit, rows=rows
        )
    del frame, raw
    _release_arrow_memory()
    order = _time_order(time_ms, time, rows, strict=strict)
    if order is not None:
        time_ms, votes, labels = time_ms[order], votes[order], labels[order]
        entities = None if entities is None else entities[order]
        payoffs = None if payoffs is None else payoffs[order]
        ends = None if ends is None else ends[order]
    source = TableSource(
        name=name,
        time_column=time or "",
        time_format=time_format,
        time_unit=time_unit if time_format == "epoch" else None,
        timezone=timezone,
        naive_times=naive,
        entity_column=entity,
        left_out=left_out,
        sorted_by_time=order is not None,
    )
    return VoteTable(
        time_ms=time_ms,
        members=tuple(chosen),
        votes=votes,
        labels=labels,
        entities=entities,
        source=source,
        payoff=payoffs,
        label_end_ms=ends,
    )
