"""One metrics engine, payoffs, PnL and threshold uncertainty (issue 10 §4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, cumulative_pnl, fit_meta_model
from metasignal.trainer.metrics import MetricSpec, counts_at, objective_values, sweep
from metasignal.trainer.objective import Objective
from metasignal.trainer.pnl import pnl_statistics
from metasignal.trainer.report import render_html
from metasignal.trainer.synthetic import generate_committee
from metasignal.trainer.thresholds import find_optimal_threshold, threshold_curve

DAY = 86_400_000


@st.composite
def samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 40))
    y = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    y[0] = 1
    s = np.array(draw(st.lists(st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]), min_size=n, max_size=n)))
    payoff = np.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), dtype=float)
    return y, s, payoff


@settings(max_examples=200, deadline=None)
@given(samples())
def test_payoff_profit_maximises_the_summed_payoff_of_trades(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    y, s, payoff = sample
    result = find_optimal_threshold(y, s, metric="profit", payoff=payoff)
    brute = {float(t): float(payoff[s >= t].sum()) for t in np.unique(s)}
    best = max(brute.values())
    if best > 0:
        assert result.feasible
        assert result.value == pytest.approx(best)
        # Ties go to the higher threshold (fewer trades).
        assert result.threshold == max(t for t, v in brute.items() if v == pytest.approx(best))
    else:
        assert not result.feasible
        assert result.threshold == s.max()


@settings(max_examples=200, deadline=None)
@given(samples(), st.sampled_from(["f1", "fbeta", "precision", "recall", "profit"]))
def test_every_caller_gets_the_same_numbers_from_the_engine(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray], metric: str
) -> None:
    y, s, payoff = sample
    kwargs = {"fbeta": {"beta": 2.0}, "precision": {"min_recall": 0.5},
              "recall": {"min_precision": 0.3}}.get(metric, {})  # fmt: skip
    objective = Objective(metric=metric, **kwargs)
    thresholds, curve = threshold_curve(y, s, metric=metric, payoff=payoff, **kwargs)
    per_event = len(y) if metric == "profit" else 1
    for t, v in zip(thresholds, curve, strict=True):
        graded = objective.value_at(y, s, float(t), payoff)
        assert graded == pytest.approx(0.0 if np.isnan(v) else v / per_event, abs=1e-12)
    # Counts at any threshold (between or beyond scores) are the brute-force ones.
    probe = np.array([0.0, 0.15, 0.7, 1.5])
    c = counts_at(y, s, probe, payoff)
    for k, t in enumerate(probe):
        traded = s >= t
        assert c.tp[k] == int((traded & (y == 1)).sum())
        assert c.fp[k] == int((traded & (y == 0)).sum())
        assert c.payoff is not None and c.payoff[k] == pytest.approx(payoff[traded].sum())


def test_sweep_and_counts_agree() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = np.round(rng.random(500), 2)
    swept = sweep(y, s)
    at = counts_at(y, s, swept.thresholds)
    np.testing.assert_array_equal(swept.tp, at.tp)
    np.testing.assert_array_equal(swept.fp, at.fp)
    values, _ = objective_values(at, MetricSpec("f1"))
    f1 = [2 * ((s >= t) & y).sum() / ((s >= t).sum() + y.sum()) for t in swept.thresholds]
    np.testing.assert_allclose(values, f1)


def test_pnl_statistics_by_hand() -> None:
    payoff = np.array([0.02, -0.01, 0.03, -0.04, 0.01, 0.5])
    traded = np.array([True, True, True, True, True, False])
    stats = pnl_statistics(payoff, traded, span_days=365.25)
    trades = payoff[:5]
    assert stats["trades"] == 5
    assert stats["hit_rate"] == pytest.approx(0.6)
    assert stats["total_payoff"] == pytest.approx(0.01)
    assert stats["mean_payoff"] == pytest.approx(0.002)
    assert stats["sharpe_per_trade"] == pytest.approx(trades.mean() / trades.std(ddof=1))
    assert stats["sharpe_annualised"] == pytest.approx(stats["sharpe_per_trade"] * np.sqrt(5))
    # Cumulative 0.02, 0.01, 0.04, 0.00, 0.01: the worst fall from a peak is 0.04.
    assert stats["max_drawdown"] == pytest.approx(0.04)
    assert stats["turnover"] == pytest.approx(5 / 6)


def test_fit_with_a_payoff_maximises_money_and_reports_pnl_with_intervals() -> None:
    c = generate_committee(n_events=20_000, positive_rate=0.03, seed=4)
    rng = np.random.default_rng(4)
    # Winners pay 3, losers cost 1, plus noise: the payoff column carries the economics.
    payoff = np.where(c.labels == 1, 3.0, -1.0) + 0.1 * rng.standard_normal(len(c))
    table = VoteTable(time_ms=c.time_ms, members=c.members, votes=c.votes, labels=c.labels)
    outcome = fit_meta_model(
        table,
        FitConfig(
            refit_all=False, estimator={"strategy": "optimal_threshold", "metric": "profit"}
        ),
        payoff=payoff,
    )  # fmt: skip
    report = outcome.report
    pnl = report["holdout"]["pnl"]
    hold = slice(len(c) - report["holdout"]["n"], None)
    # The served model's decisions are the tuned ones (its threshold moved with its score).
    traded = outcome.model.predict(c.votes[hold]) == 1
    assert pnl["trades"] == int(traded.sum())
    assert pnl["total_payoff"] == pytest.approx(payoff[hold][traded].sum())
    for name in ("hit_rate", "mean_payoff", "total_payoff", "sharpe_per_trade", "max_drawdown"):
        low, high = pnl[f"{name}_interval"]
        assert low <= pnl[name] <= high or np.isclose(pnl[name], low) or np.isclose(pnl[name], high)
    assert "pnl" in report["validation"]
    assert pnl["total_payoff"] > 0
    # Threshold uncertainty: the fold spread and a bootstrap interval around the choice.
    spread = report["validation"]["threshold_uncertainty"]
    assert spread["fold_min"] <= spread["fold_max"]
    low, high = spread["bootstrap_interval"]
    assert low <= report["threshold"] <= high
    for name in ("f1", "precision", "recall"):
        low, high = report["holdout"]["intervals"][name]
        assert low <= report["holdout"][name] <= high
    # The cumulative PnL curves end where the PnL tables' totals are, and the report draws them.
    curves = report["plots"]["pnl"]
    for curve, block in (
        (curves["holdout"], pnl),
        (curves["out_of_fold"], report["validation"]["pnl"]),
    ):
        assert curve["trades"] == block["trades"]
        assert curve["cumulative"][-1] == pytest.approx(block["total_payoff"])
        assert curve["time_ms"] == sorted(curve["time_ms"])
    assert curves["holdout"]["time_ms"][0] >= c.time_ms[hold][0]
    assert 'data-plot="pnl"><img src="data:image/png;base64,' in render_html(report)


def test_cumulative_pnl_keeps_the_drawdown_between_samples() -> None:
    payoff = np.ones(10_000)
    payoff[5_001] = -500.0  # one loss between two kept points
    curve = cumulative_pnl(payoff, np.ones(10_000, dtype=bool), np.arange(10_000), points=10)
    assert min(curve["cumulative"]) == pytest.approx(np.cumsum(payoff).min())
    assert len(curve["cumulative"]) <= 30
    empty = cumulative_pnl(payoff, np.zeros(10_000, dtype=bool), np.arange(10_000))
    assert empty == {"time_ms": [], "cumulative": [], "trades": 0}


def test_payoff_changes_the_threshold_the_constant_cost_would_pick() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.2).astype(int)
    s = np.clip(0.2 + 0.3 * y + 0.15 * rng.standard_normal(4000), 0, 1)
    flat = find_optimal_threshold(y, s, metric="profit")
    # Expensive false trades: the payoff search must trade less.
    payoff = np.where(y == 1, 1.0, -5.0)
    costly = find_optimal_threshold(y, s, metric="profit", payoff=payoff)
    assert costly.threshold > flat.threshold
    assert costly.value == pytest.approx(payoff[s >= costly.threshold].sum())
