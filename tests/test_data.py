from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metasignal.trainer.data import DataError, VoteTable, input_summary, load_table

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch ms
GOOD = f"ts,a,b,label\n{T0},0.2,0.9,1\n{T0 + 1},0.1,0.3,0\n{T0 + 2},0.4,0.2,0\n"


def write(tmp_path: Path, text: str, name: str = "votes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def epoch_rows(n: int, *, bad: dict[int, str] | None = None) -> str:
    """``n`` data rows ``ts,a,label``; ``bad`` replaces the ts cell of some rows (0-based)."""
    lines = ["ts,a,label"]
    for i in range(n):
        ts = (bad or {}).get(i, str(T0 + 1000 * i))
        lines.append(f"{ts},{(i % 10) / 10},{i % 2}")
    return "\n".join(lines) + "\n"


def error_of(tmp_path: Path, text: str, **kwargs: object) -> str:
    args = {"label": "label", "time": "ts", **kwargs}
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path, text), **args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert "np." not in message and "numpy" not in message
    return message


def test_members_default_to_numeric_columns_and_the_rest_is_left_out_with_why(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, f"id,ts,a,b,note,label\nx,{T0},0.2,0.9,,1\ny,{T0 + 1},0.1,0.3,,0\n")
    table = load_table(path, label="label", time="ts")
    assert table.members == ("a", "b")
    np.testing.assert_array_equal(table.votes, [[0.2, 0.9], [0.1, 0.3]])
    assert table.source is not None
    assert table.source.left_out == {"id": "not numeric (e.g. 'x')", "note": "empty"}


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "is empty"),
        ("ts,a,label\n", {}, "no rows"),
        (GOOD, {"label": "y"}, "label column 'y' not found"),
        (GOOD, {"time": "when"}, "time column 'when' not found"),
        (GOOD, {"members": ["a", "zz"]}, "unknown member column"),
        (GOOD, {"members": ["a", "ts"]}, "the time column 'ts' cannot be a member"),
        (f"ts,a,label\n{T0},0.2,0\n{T0},0.3,0\n", {}, "single class"),
        (f"ts,a,label\n{T0},0.2,0\n{T0},0.3,2\n", {}, "label column 'label' row 3: 2; labels"),
        (f"ts,a,label\n{T0},nan,0\n{T0},0.3,1\n", {}, "'a' row 2: missing, NaN or infinite"),
        (f"ts,a,label\n{T0},0.3,1\n{T0},inf,0\n", {}, "'a' row 3: missing, NaN or infinite"),
        (f"ts,a,label\n{T0},,0\n{T0},0.3,1\n", {}, "'a' row 2: missing"),
        (f"ts,a,b,label\n{T0},0.1,x,0\n{T0},0.3,y,1\n", {"members": ["a", "b"]}, "'b' row 2: 'x'"),
        (f"ts,a,label\n{T0},0.2,0\n{T0},0.3\n", {}, "row 3 has 2 fields, header has 3"),
        (f"ts,a,label\nyesterday,0.2,0\n{T0},0.3,1\n", {}, "'ts' row 2: 'yesterday' is not a"),
        ("ts,a,a,label\n1,0.2,0.2,0\n", {}, "duplicate column names: a"),
        (GOOD, {"timezone": "Mars/Olympus"}, "unknown --timezone 'Mars/Olympus'"),
        (GOOD, {"entity": "a", "members": ["a", "b"]}, "the entity column 'a' cannot be a member"),
    ],
)
def test_bad_input_is_a_one_line_error(
    tmp_path: Path, text: str, kwargs: dict[str, object], message: str
) -> None:
    assert message in error_of(tmp_path, text, **kwargs)


def test_a_bad_time_cell_is_reported_at_its_own_row_without_numpy_reprs(tmp_path: Path) -> None:
    # Was: "row 2: np.str_('1704067200000') is neither epoch ms nor ISO-8601".
    message = error_of(tmp_path, epoch_rows(150, bad={100: "1704067250135x"}))
    assert message.startswith("time column 'ts' row 102: '1704067250135x' is not a number")


def test_row_numbers_are_the_file_rows_even_after_blank_lines(tmp_path: Path) -> None:
    text = epoch_rows(5, bad={3: "oops"}).replace("\n", "\n\n", 2)  # two blank lines
    assert "row 7:" in error_of(tmp_path, text)


def test_out_of_range_votes_print_plain_numbers_and_point_to_members_first(
    tmp_path: Path,
) -> None:
    text = f"order_id,ts,a,label\n17,{T0},0.2,0\n18,{T0 + 1},0.3,1\n"
    message = error_of(tmp_path, text)
    assert message.startswith("member column 'order_id' row 2: 17 is outside [0, 1]")
    assert message.index("--members") < message.index("--raw-scores")
    named = error_of(tmp_path, f"ts,a,label\n{T0},0.2,0\n{T0 + 1},2.0,1\n", members=["a"])
    assert named == (
        "member column 'a' row 3: 2 is outside [0, 1]; pass --raw-scores if the members "
        "emit unbounded scores, not probabilities"
    )


def test_a_member_with_one_non_numeric_cell_is_an_error_not_dropped(tmp_path: Path) -> None:
    lines = ["ts,a,b,label"] + [f"{T0 + i},0.{i % 9},0.5,{i % 2}" for i in range(50)]
    lines[31] = f"{T0 + 30},0.3,n/a?,0"
    message = error_of(tmp_path, "\n".join(lines) + "\n")
    assert message == "member column 'b' row 32: 'n/a?' is not a number"


def test_a_model_names_itself_instead_of_suggesting_raw_scores(tmp_path: Path) -> None:
    text = f"ts,a,label\n{T0},0.2,0\n{T0 + 1},1.5,1\n"
    message = error_of(tmp_path, text, members=["a"], expected_by="model meta v2")
    assert "--raw-scores" not in message
    assert message.endswith("model meta v2 takes probabilities in [0, 1] for its members")
    missing = error_of(tmp_path, text, members=["a", "m9"], expected_by="model meta v2")
    assert missing == "model meta v2 needs member column(s) m9 (columns: ts, a, label)"


def test_times_without_a_zone_are_utc_by_default_or_in_the_timezone_given(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(
        {"ts": pd.date_range("2020-01-01", periods=4, freq="D"), "a": 0.5, "label": [0, 1, 0, 1]}
    )
    frame.to_csv(tmp_path / "pandas.csv", index=False)  # writes "2020-01-01 00:00:00"
    utc = load_table(tmp_path / "pandas.csv", label="label", time="ts")
    assert utc.time_ms[0] == 1_577_836_800_000
    assert utc.source is not None
    assert utc.source.time_statement == (
        "times have no zone; read as UTC (the default; --timezone to change)"
    )
    ny = load_table(tmp_path / "pandas.csv", label="label", time="ts", timezone="America/New_York")
    np.testing.assert_array_equal(ny.time_ms - utc.time_ms, 5 * 3_600_000)
    assert ny.source is not None
    assert input_summary(ny)["time"]["timezone"] == "America/New_York"
    assert ny.source.time_statement == "times have no zone; read as America/New_York (--timezone)"
    zoned = write(
        tmp_path, "ts,a,label\n2020-01-01T00:00:00+01:00,0.1,0\n2020-07-01T00:00Z,0.2,1\n"
    )
    again = load_table(zoned, label="label", time="ts", timezone="America/New_York")
    assert again.time_ms.tolist() == [1_577_833_200_000, 1_593_561_600_000]
    assert again.source is not None and not again.source.naive_times


def test_local_times_that_do_not_exist_and_mixed_zones_are_refused(tmp_path: Path) -> None:
    gap = "ts,a,label\n2024-03-10 01:30:00,0.1,0\n2024-03-10 02:30:00,0.2,1\n"
    assert "row 3: 2024-03-10 02:30:00 does not exist or is ambiguous in America/New_York" in (
        error_of(tmp_path, gap, timezone="America/New_York")
    )
    mixed = "ts,a,label\n2024-03-10T01:30:00Z,0.1,0\n2024-03-10 02:30:00,0.2,1\n"
    assert "row 3: '2024-03-10 02:30:00' has no zone while other rows have one" in (
        error_of(tmp_path, mixed)
    )


def test_epoch_units_and_the_1990_to_2100_guard(tmp_path: Path) -> None:
    seconds = f"ts,a,label\n{T0 // 1000},0.1,0\n{T0 // 1000 + 60},0.2,1\n"
    table = load_table(write(tmp_path, seconds), label="label", time="ts", time_unit="s")
    assert table.time_ms.tolist() == [T0, T0 + 60_000]
    message = error_of(tmp_path, seconds)
    assert message == (
        "time column 'ts' row 2: 1704067200 read as epoch ms is 1970-01-20T17:21:07Z, "
        "before 1990; pass --time-unit s"
    )
    nanos = f"ts,a,label\n{T0 * 1_000_000},0.1,0\n{T0 * 1_000_000 + 5},0.2,1\n"
    assert error_of(tmp_path, nanos).endswith("after 2100; pass --time-unit ns")
    table = load_table(write(tmp_path, nanos), label="label", time="ts", time_unit="ns")
    assert table.time_ms.tolist() == [T0, T0]


def test_entity_column_is_never_a_member_and_follows_the_rows(tmp_path: Path) -> None:
    text = (
        "ts,permno,a,label\n"
        f"{T0 + 2},10001,0.3,1\n{T0},10002,0.1,0\n{T0 + 1},10001,0.2,1\n{T0 + 3},10003,0.4,0\n"
    )
    table = load_table(write(tmp_path, text), label="label", time="ts", entity="permno")
    assert table.members == ("a",)
    assert table.entities is not None
    assert table.entities.tolist() == [10002, 10001, 10001, 10003]  # sorted by time with rows
    assert table.rows(1, 3).entities.tolist() == [10001, 10001]  # type: ignore[union-attr]
    summary = input_summary(table)
    assert summary["entity_column"] == "permno"
    entities = summary["entities"]
    assert entities["count"] == 3
    assert entities["top"][0] == {"entity": 10001, "rows": 2, "positives": 2}
    assert {e["entity"]: e["rows"] for e in entities["per_entity"]} == {
        10001: 2,
        10002: 1,
        10003: 1,
    }
    missing = f"ts,sym,a,label\n{T0},AAPL,0.1,0\n{T0 + 1},,0.2,1\n"
    assert "entity column 'sym' row 3: missing instrument id" in error_of(
        tmp_path, missing, entity="sym"
    )


def test_a_dataframe_reads_like_the_file_and_names_rows_by_index(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01 09:30", "2024-01-01 09:31", "2024-01-01 09:32"]),
            "sym": ["AAPL", "MSFT", "AAPL"],
            "a": [0.1, 0.7, 0.4],
            "label": [0, 1, 0],
        },
        index=[10, 11, 12],
    )
    table = load_table(frame, label="label", time="when", entity="sym", timezone="Europe/Berlin")
    assert table.members == ("a",)
    assert table.time_ms[0] == T0 + (9 * 60 + 30 - 60) * 60_000  # 09:30 CET is 08:30 UTC
    assert table.entities is not None and table.entities.tolist() == ["AAPL", "MSFT", "AAPL"]
    frame.loc[11, "a"] = 3.0
    with pytest.raises(DataError, match=r"'a' row 1 \(index 11\): 3 is outside"):
        load_table(frame, label="label", time="when", members=["a"])


def test_rows_keep_their_order_without_a_time_column(tmp_path: Path) -> None:
    path = write(tmp_path, f"ts,a,label\n{T0 + 5},0.1,0\n{T0},0.2,1\n")
    table = load_table(path, label="label", time=None, members=["a"])
    np.testing.assert_array_equal(table.votes[:, 0], [0.1, 0.2])


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv", label="label", time="ts")


def test_raw_scores_accept_unbounded_values(tmp_path: Path) -> None:
    path = write(tmp_path, f"ts,a,label\n{T0},-3.5,0\n{T0 + 1},7.25,1\n")
    table = load_table(path, label="label", time="ts", raw_scores=True)
    np.testing.assert_array_equal(table.votes[:, 0], [-3.5, 7.25])


def test_unsorted_time_is_sorted_with_a_warning_or_refused_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, f"ts,a,label\n{T0 + 3},0.3,0\n{T0 + 1},0.1,1\n{T0 + 2},0.2,0\n")
    table = load_table(path, label="label", time="ts")
    np.testing.assert_array_equal(table.time_ms, [T0 + 1, T0 + 2, T0 + 3])
    np.testing.assert_array_equal(table.votes[:, 0], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(table.labels, [1, 0, 0])
    assert "not sorted" in caplog.text
    assert table.source is not None and table.source.sorted_by_time
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


def test_fit_meta_model_takes_a_dataframe_with_an_entity_column() -> None:
    from metasignal.trainer.fit import fit_meta_model
    from metasignal.trainer.synthetic import generate_committee

    c = generate_committee(n_events=6000, n_members=3, positive_rate=0.05, seed=5)
    frame = pd.DataFrame(c.votes, columns=list(c.members))
    frame["when"] = pd.to_datetime(c.time_ms, unit="ms").strftime("%Y-%m-%d %H:%M:%S.%f")
    frame["ticker"] = np.array(["AAA", "BBB", "CCC"])[np.arange(len(c)) % 3]
    frame["y"] = c.labels
    outcome = fit_meta_model(
        frame, label="y", time="when", entity="ticker", timezone="America/New_York"
    )
    assert outcome.artifact["members"] == ["m1", "m2", "m3"]
    block = outcome.report["input"]
    assert block["source"] == "the DataFrame"
    assert block["time"]["timezone"] == "America/New_York"
    assert block["entities"]["count"] == 3
    assert sum(e["positives"] for e in block["entities"]["per_entity"]) == int(c.labels.sum())
    with pytest.raises(DataError, match="needs label= and time="):
        fit_meta_model(frame)
    table = VoteTable(c.time_ms, c.members, c.votes, c.labels)
    assert input_summary(table)["entities"] is None


def test_payoff_and_label_end_columns_are_never_members_and_follow_the_rows(
    tmp_path: Path,
) -> None:
    text = (
        "ts,a,ret5d,until,label\n"
        "2024-01-03 00:00,0.3,-0.02,2024-01-08 00:00,0\n"
        "2024-01-02 00:00,0.6,0.05,2024-01-07 00:00,1\n"
    )
    table = load_table(
        write(tmp_path, text), label="label", time="ts", payoff="ret5d", label_end="until"
    )
    assert table.members == ("a",)
    assert table.payoff is not None and table.payoff.tolist() == [0.05, -0.02]
    assert table.label_end_ms is not None
    assert (table.label_end_ms - table.time_ms).tolist() == [5 * 86_400_000] * 2
    assert table.rows(1, 2).payoff.tolist() == [-0.02]  # type: ignore[union-attr]
    bad = text.replace("-0.02", "")
    assert "payoff column 'ret5d' row 2: missing or infinite payoff" in error_of(
        tmp_path, bad, payoff="ret5d"
    )


def test_parquet_rows_are_counted_from_one_and_timestamps_keep_their_zone(tmp_path: Path) -> None:
    path = tmp_path / "votes.parquet"
    stamps = pd.to_datetime([T0, T0 + 1000, T0 + 2000], unit="ms", utc=True)
    pq.write_table(pa.table({"ts": stamps, "a": [0.1, 0.2, 1.5], "label": [0, 1, 0]}), path)
    with pytest.raises(DataError, match=r"'a' row 3: 1.5 is outside"):
        load_table(path, label="label", time="ts", timezone="Asia/Tokyo")
    table = load_table(path, label="label", time="ts", timezone="Asia/Tokyo", raw_scores=True)
    assert table.time_ms.tolist() == [T0, T0 + 1000, T0 + 2000]  # zoned: --timezone not applied
    assert table.source is not None and table.source.time_format == "datetime"


@pytest.mark.parametrize(
    "raw", [b"ts,sym,a,label\n1704067200000,caf\xe9,0.5,1\n", b"ts,caf\xe9,label\n1,0.5,1\n"]
)
def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(raw)
    with pytest.raises(
        DataError, match=r"^data file latin1.csv is not UTF-8 text \(CSV expected\)$"
    ):
        load_table(path, label="label", time="ts")


def test_text_columns_that_cannot_be_members_are_not_parsed_in_full(tmp_path: Path) -> None:
    from metasignal.trainer.data import Wanted, read_frame

    lines = ["id,ts,a,note,label"] + [
        f"evt-{i},{T0 + i},0.{i % 9 + 1},,{i % 2}" for i in range(3 * 1000)
    ]
    path = write(tmp_path, "\n".join(lines) + "\n")
    raw = read_frame(path, Wanted(frozenset({"ts", "label"})))
    assert list(raw.frame.columns) == ["ts", "a", "note", "label"]  # note: empty, so judged late
    assert raw.columns == ["id", "ts", "a", "note", "label"]
    assert list(raw.skipped) == ["id"] and len(raw.skipped["id"]) == 3000  # one block
    table = load_table(path, label="label", time="ts")
    assert table.members == ("a",)
    assert table.source is not None
    assert table.source.left_out == {"id": "not numeric (e.g. 'evt-0')", "note": "empty"}
    only = load_table(path, label="label", time="ts", members=["a"])
    assert only.source is not None and only.source.left_out["id"] == "not in --members"
