"""Folds cut at time boundaries, purge and embargo (issue 10 §2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import split_periods
from metasignal.trainer.purge import parse_duration, purge_mask, snap_cut, time_folds

DAY = 86_400_000


@st.composite
def panels(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int]:
    """Sorted times of a panel (several rows per time), a horizon, an embargo, folds."""
    n_times = draw(st.integers(8, 60))
    steps = draw(st.lists(st.integers(1, 5), min_size=n_times, max_size=n_times))
    stamps = np.cumsum(steps) * DAY
    per_time = draw(st.lists(st.integers(1, 6), min_size=n_times, max_size=n_times))
    times = np.repeat(stamps, per_time).astype(np.int64)
    horizon = draw(st.integers(0, 6)) * DAY + draw(st.sampled_from([0, 1, DAY // 2]))
    embargo = draw(st.integers(0, 3)) * DAY
    n_splits = draw(st.integers(2, 5))
    return times, horizon, embargo, n_splits


@settings(max_examples=200, deadline=None)
@given(panels())
def test_no_training_label_window_reaches_its_validation_block(
    panel: tuple[np.ndarray, int, int, int],
) -> None:
    times, horizon, embargo, n_splits = panel
    try:
        folds = time_folds(times, n_splits=n_splits, label_end=times + horizon, embargo=embargo)
    except ValueError as exc:
        # Too few distinct times for the folds: refused, never cut inside a timestamp.
        assert "distinct times" in str(exc) or "cannot make" in str(exc)
        return
    assert len(folds) == n_splits
    for fold in folds:
        block = times[fold.validation]
        lo, hi = block.min() - embargo, block.max() + embargo
        train_t = times[fold.train]
        # [t, t + horizon] never meets the block widened by the embargo.
        assert not ((train_t <= hi) & (train_t + horizon >= lo)).any()
        # No timestamp is split across the cut, and blocks are contiguous.
        start, stop = int(fold.validation[0]), int(fold.validation[-1]) + 1
        assert np.array_equal(fold.validation, np.arange(start, stop))
        assert start == 0 or times[start - 1] < times[start]
        assert stop == len(times) or times[stop - 1] < times[stop]
        # Training rows are in the past, and only what overlaps was dropped.
        assert (train_t < block.min()).all()
        kept_or_dropped = len(fold.train) + fold.purged + fold.embargoed
        assert kept_or_dropped == start


@settings(max_examples=100, deadline=None)
@given(panels(), st.floats(0.1, 0.5))
def test_holdout_is_cut_at_a_time_boundary_and_purged(
    panel: tuple[np.ndarray, int, int, int], holdout: float
) -> None:
    times, horizon, embargo, _ = panel
    n = len(times)
    table = VoteTable(
        time_ms=times,
        members=("a",),
        votes=np.zeros((n, 1)),
        labels=np.zeros(n, dtype=np.int8),
    )
    train, hold, counts = split_periods(
        table, holdout, label_end=times + horizon, embargo=embargo, payoff=None
    )
    if len(hold):
        cut = int(hold.index[0])
        assert cut == 0 or times[cut - 1] < times[cut]
        lo = times[cut] - embargo
        assert not (train.times + horizon >= lo).any()
        assert len(train) + counts["holdout_purged"] + counts["holdout_embargoed"] == cut


def test_a_panel_day_is_never_split_and_overlapping_labels_are_purged() -> None:
    # 10 instruments x 30 days, 5-day labels: the leaky rows are the 5 days before a block.
    times = np.repeat(np.arange(30) * DAY, 10)
    folds = time_folds(times, n_splits=4, label_end=times + 5 * DAY)
    for fold in folds:
        first = times[fold.validation[0]]
        assert times[fold.validation[0] - 1] < first
        assert fold.purged == 10 * 5  # days first-5 .. first-1, all ten instruments
        assert times[fold.train].max() == first - 6 * DAY


def test_embargo_widens_the_block() -> None:
    times = np.arange(20) * DAY
    purged, embargoed = purge_mask(times, times + DAY, 10 * DAY, 12 * DAY, embargo=2 * DAY)
    assert np.flatnonzero(purged).tolist() == [9, 10, 11, 12]
    assert np.flatnonzero(embargoed).tolist() == [7, 8, 13, 14]


def test_without_times_the_folds_are_time_series_split() -> None:
    from sklearn.model_selection import TimeSeriesSplit

    ours = time_folds(np.arange(103), n_splits=4, gap=3)
    theirs = list(TimeSeriesSplit(n_splits=4, gap=3).split(np.zeros((103, 1))))
    for fold, (train, val) in zip(ours, theirs, strict=True):
        assert np.array_equal(fold.train, train)
        assert np.array_equal(fold.validation, val)


def test_snap_cut_moves_to_the_nearest_boundary() -> None:
    times = np.array([1, 1, 1, 2, 2, 2, 2, 2, 3])
    assert snap_cut(times, 4) == 3
    assert snap_cut(times, 7) == 8
    assert snap_cut(times, 3) == 3


def test_too_few_distinct_times_is_refused() -> None:
    with pytest.raises(ValueError, match="3 distinct times"):
        time_folds(np.repeat([1, 2, 3], 10), n_splits=5)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("5d", 5 * DAY), ("30min", 1_800_000), ("1h30min", 5_400_000), ("250ms", 250), ("0", 0)],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["5", "d", "5 days", "-1d", "5x"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration(text)


def panel_committee(seed: int = 0) -> tuple[VoteTable, np.ndarray]:
    """A committee over 40 instruments x 250 days; labels span 5 days (a forward return)."""
    from metasignal.trainer.synthetic import generate_committee

    n_days, n_entities = 250, 40
    c = generate_committee(n_events=n_days * n_entities, positive_rate=0.05, seed=seed)
    times = np.repeat(1_577_836_800_000 + np.arange(n_days) * DAY, n_entities)
    rng = np.random.default_rng(seed)
    payoff = np.where(c.labels == 1, 0.02, -0.005) + 0.01 * rng.standard_normal(len(times))
    table = VoteTable(time_ms=times, members=c.members, votes=c.votes, labels=c.labels)
    return table, payoff


def test_fit_reports_the_rows_each_fold_purged() -> None:
    from metasignal.trainer.fit import FitConfig, fit_meta_model

    table, _ = panel_committee()
    config = FitConfig(
        estimator={"strategy": "optimal_threshold", "label_horizon": 5 * DAY, "embargo": DAY}
    )
    report = fit_meta_model(table, config).report
    purge = report["validation"]["purge"]
    assert purge["label_horizon_ms"] == 5 * DAY and purge["embargo_ms"] == DAY
    # 5 days of label overlap + 1 day of embargo, 40 instruments a day.
    assert purge["holdout_purged"] == 5 * 40
    assert purge["holdout_embargoed"] == 1 * 40
    assert [f["purged"] for f in purge["folds"]] == [5 * 40] * 5
    assert [f["embargoed"] for f in purge["folds"]] == [40] * 5
    chosen = report["validation"]["chosen"]
    assert chosen["purged_rows"] == 5 * 5 * 40
    hold_start = report["holdout_period"]["start"]
    assert hold_start.endswith("T00:00:00Z")  # the holdout starts with a whole day
    assert report["training"]["rows"] + 240 == len(table) - report["holdout"]["n"]


def test_cli_reads_label_end_and_payoff_columns_and_refuses_bad_durations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metasignal.trainer.cli import main

    table, payoff = panel_committee(seed=1)
    rows = ["ts,entity_day_end,pnl," + ",".join(table.members) + ",label"]
    order = np.random.default_rng(0).permutation(len(table))  # unsorted on disk
    for i in order:
        votes = ",".join(f"{v:.6f}" for v in table.votes[i])
        end = int(table.time_ms[i] + 5 * DAY)
        rows.append(f"{table.time_ms[i]},{end},{payoff[i]:.6f},{votes},{table.labels[i]}")
    data = tmp_path / "panel.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    base = ["fit", "--data", str(data), "--label", "label", "--time", "ts", "--out", str(out),
            "--quiet", "--unsigned", "--strategy", "optimal_threshold"]  # fmt: skip
    code = main([*base, "--label-end", "entity_day_end", "--payoff", "pnl", "--metric", "profit"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert "pnl" not in report["member_weights"]  # a side column is never a member
    assert "entity_day_end" not in report["member_weights"]
    assert report["validation"]["purge"]["label_end_column"] is True
    assert report["validation"]["purge"]["holdout_purged"] == 5 * 40
    pnl = report["holdout"]["pnl"]
    assert pnl["trades"] == report["holdout"]["predicted_positives"]
    assert set(pnl) >= {"hit_rate", "sharpe_annualised", "max_drawdown", "turnover"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([*base, "--label-horizon", "5 days"])
    assert exited.value.code == 2
    assert "cannot read duration '5 days'" in capsys.readouterr().err
