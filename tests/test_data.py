from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metasignal.trainer.data import DataError, load_table

GOOD = "ts,a,b,label\n1,0.2,0.9,1\n2,0.1,0.3,0\n3,0.4,0.2,0\n"


def write(tmp_path: Path, text: str, name: str = "votes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_members_default_to_numeric_columns_except_time_and_label(tmp_path: Path) -> None:
    path = write(tmp_path, "id,ts,a,b,label\nx,1,0.2,0.9,1\ny,2,0.1,0.3,0\n")
    table = load_table(path, label="label", time="ts")
    assert table.members == ("a", "b")
    np.testing.assert_array_equal(table.votes, [[0.2, 0.9], [0.1, 0.3]])


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "is empty"),
        ("ts,a,label\n", {}, "no rows"),
        (GOOD, {"label": "y"}, "label column 'y' not found"),
        (GOOD, {"time": "when"}, "time column 'when' not found"),
        (GOOD, {"members": ["a", "zz"]}, "unknown member column"),
        ("ts,a,label\n1,0.2,0\n2,0.3,0\n", {}, "single class"),
        ("ts,a,label\n1,0.2,0\n2,0.3,2\n", {}, "only 0 and 1"),
        ("ts,a,label\n1,nan,0\n2,0.3,1\n", {}, r"NaN or infinite value \(row 2\)"),
        ("ts,a,label\n1,inf,0\n2,0.3,1\n", {}, "infinite"),
        ("ts,a,label\n1,,0\n2,0.3,1\n", {}, r"missing, NaN or infinite value \(row 2\)"),
        ("ts,a,b,label\n1,0.1,x,0\n2,0.3,y,1\n", {"members": ["a", "b"]}, "'b' is not numeric"),
        ("ts,a,label\n1,0.2,0\n2,1.3,1\n", {}, r"outside \[0, 1\] \(row 3"),
        ("ts,a,label\n1,0.2,0\n2,0.3\n", {}, "row 3 has 2 fields"),
        ("ts,a,label\nyesterday,0.2,0\n2,0.3,1\n", {}, "neither epoch ms nor ISO-8601"),
        ("ts,a,label\n2024-01-01T00:00:00,0.2,0\n2024-01-01T00:01:00,0.3,1\n", {}, "timezone"),
        ("ts,a,a,label\n1,0.2,0.2,0\n", {}, "duplicate column"),
    ],
)
def test_bad_input_is_a_one_line_error(
    tmp_path: Path, text: str, kwargs: dict, message: str
) -> None:
    args = {"label": "label", "time": "ts", **kwargs}
    with pytest.raises(DataError, match=message) as info:
        load_table(write(tmp_path, text), **args)
    assert "\n" not in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv", label="label", time="ts")


def test_raw_scores_accept_unbounded_values(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,a,label\n1,-3.5,0\n2,7.25,1\n")
    table = load_table(path, label="label", time="ts", raw_scores=True)
    np.testing.assert_array_equal(table.votes[:, 0], [-3.5, 7.25])


def test_unsorted_time_is_sorted_with_a_warning_or_refused_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "ts,a,label\n3,0.3,0\n1,0.1,1\n2,0.2,0\n")
    table = load_table(path, label="label", time="ts")
    np.testing.assert_array_equal(table.time_ms, [1, 2, 3])
    np.testing.assert_array_equal(table.votes[:, 0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(table.labels, [1, 0, 0])
    assert "not sorted" in caplog.text
    with pytest.raises(DataError, match="goes backwards at row 3"):
        load_table(path, label="label", time="ts", strict=True)


def test_iso_time_and_parquet_give_the_same_table(tmp_path: Path) -> None:
    iso = write(
        tmp_path,
        "ts,a,label\n2024-01-01T00:00:00Z,0.2,0\n2024-01-01T00:00:01.5+00:00,0.6,1\n",
    )
    table = load_table(iso, label="label", time="ts")
    np.testing.assert_array_equal(table.time_ms, [1704067200000, 1704067201500])
    parquet = tmp_path / "votes.parquet"
    pq.write_table(
        pa.table({"ts": table.time_ms, "a": table.votes[:, 0], "label": table.labels}), parquet
    )
    again = load_table(parquet, label="label", time="ts")
    np.testing.assert_array_equal(again.votes, table.votes)
    np.testing.assert_array_equal(again.time_ms, table.time_ms)
