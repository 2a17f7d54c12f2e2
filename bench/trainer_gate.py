"""Trainer benchmark, honesty part: the skill gate and purging on a real market panel.

* **Skill gate**: ``fit_meta_model`` with its defaults (``auto``, F1, 5 folds, holdout 0.3)
  on ``seeds`` committees whose eight members carry no information about the label
  (``generate_committee(skill=0.0, positive_rate=0.03)``) and on ``seeds`` of the
  generator's default committees (``generate_committee(seed=s)``, 2 % positives). Goal:
  the first refused 20/20, the second refused at most 1/20.
* **Market panel** (:mod:`bench.market_panel`): each strategy without purge (labels
  spanning six months overlap the folds' and the holdout's boundaries) and with the
  per-row label end (``label_end``) purged and a one-month embargo. Out-of-fold F1 (the
  walk-forward estimate the fit tunes on) against holdout F1 measures the leakage; PnL
  comes from the panel's payoff column (forward return less costs).
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.skill import DEFAULT_ALPHA, DEFAULT_PERMUTATIONS, NoSkillError
from metasignal.trainer.synthetic import generate_committee

log = logging.getLogger("bench.trainer")

DAY_MS = 86_400_000
EMBARGO_MS = 31 * DAY_MS


@dataclass(frozen=True)
class GateRun:
    kind: str
    seed: int
    refused: bool
    p_value: float
    lift: float
    holdout_f1: float
    seconds: float


def _table(skill: float | None, seed: int, n_events: int) -> VoteTable:
    extra: dict[str, Any] = {} if skill is None else {"skill": skill, "positive_rate": 0.03}
    c = generate_committee(n_events=n_events, seed=seed, **extra)
    return VoteTable(time_ms=c.time_ms, members=c.members, votes=c.votes, labels=c.labels)


def run_skill_gate(seeds: int, n_events: int) -> list[GateRun]:
    """The default fit on no-information and default committees, ``seeds`` of each."""
    runs = []
    for kind, skill in (("no information", 0.0), ("default", None)):
        for seed in range(seeds):
            table = _table(skill, 1000 + seed, n_events)
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    report = fit_meta_model(table, FitConfig()).report
                    refused = False
                except NoSkillError as exc:
                    assert exc.report is not None
                    report, refused = exc.report, True
            runs.append(
                GateRun(
                    kind=kind,
                    seed=1000 + seed,
                    refused=refused,
                    p_value=report["skill"]["p_value"],
                    lift=report["skill"]["lift"],
                    holdout_f1=report["holdout"]["f1"],
                    seconds=time.perf_counter() - started,
                )
            )
            log.info("skill gate %s seed %d: refused %s", kind, seed, refused)
    return runs


def render_skill_gate(runs: list[GateRun], n_events: int) -> list[str]:
    lines = [
        "### Skill gate",
        "",
        f"`fit_meta_model(table, FitConfig())` (defaults: `auto`, F1, 5 walk-forward folds, "
        f"holdout 0.3, α = {DEFAULT_ALPHA:g}, {DEFAULT_PERMUTATIONS} rotations) on "
        f"{n_events:,}-event committees, seeds "
        f"1000-{max(r.seed for r in runs)}. *No information*: "
        "`generate_committee(skill=0.0, positive_rate=0.03)`, eight members independent of "
        "the label. *Default*: `generate_committee(seed=s)` (2 % positives).",
        "",
        "| Committees | Refused | p-value median (min-max) | Lift median (min-max) | "
        "Holdout F1 mean | Fit s mean |",
        "|---|---|---|---|---|---|",
    ]
    goals = []
    for kind in ("no information", "default"):
        mine = [r for r in runs if r.kind == kind]
        refused = sum(r.refused for r in mine)
        p = [r.p_value for r in mine]
        lift = [r.lift for r in mine]
        lines.append(
            f"| {kind} | **{refused}/{len(mine)}** | {statistics.median(p):.3f} "
            f"({min(p):.3f}-{max(p):.3f}) | {statistics.median(lift):.2f} "
            f"({min(lift):.2f}-{max(lift):.2f}) | "
            f"{statistics.fmean(r.holdout_f1 for r in mine):.3f} | "
            f"{statistics.fmean(r.seconds for r in mine):.1f} |"
        )
        if kind == "no information":
            met = refused == len(mine)
            goals.append(
                f"* No-information committees refused {refused}/{len(mine)} (goal: all) → "
                f"**{'met' if met else 'not met'}**."
            )
        else:
            met = refused <= max(1, len(mine) // 20)
            goals.append(
                f"* Default committees refused {refused}/{len(mine)} (goal: at most 1 in 20) → "
                f"**{'met' if met else 'not met'}**."
            )
    return [*lines, "", *goals, ""]


def run_panel(strategies: tuple[str, ...], holdout: float) -> dict[str, Any]:
    """Each strategy on the market panel, without and with purge + embargo."""
    from bench.market_panel import market_panel

    panel = market_panel(holdout=holdout)
    rows = []
    for purged in (False, True):
        for strategy in strategies:
            estimator: dict[str, Any] = {"strategy": strategy}
            if purged:
                estimator["embargo"] = EMBARGO_MS
            config = FitConfig(
                holdout=holdout, refit_all=False, allow_no_skill=True, estimator=estimator
            )
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = fit_meta_model(
                    panel.table,
                    config,
                    payoff=panel.payoff,
                    label_end=panel.label_end_ms if purged else None,
                ).report
            rows.append(_panel_row(strategy, purged, report, time.perf_counter() - started))
            log.info("panel %s purged=%s done", strategy, purged)
    table = panel.table
    return {
        "rows": len(table),
        "entities": len(np.unique(panel.entities)),
        "months": len(np.unique(table.time_ms)),
        "rate": table.positives / len(table),
        "runs": rows,
    }


def _panel_row(strategy: str, purged: bool, report: dict[str, Any], seconds: float) -> dict:
    validation = report["validation"]
    chosen = validation["chosen"]
    return {
        "strategy": strategy,
        "chosen": report["strategy"],
        "purged": purged,
        "oof_f1": chosen["mean"],
        "oof_std": chosen["std"],
        "holdout_f1": report["holdout"]["f1"],
        "holdout_f1_interval": report["holdout"]["intervals"]["f1"],
        "purged_rows": chosen["purged_rows"] + validation["purge"]["holdout_purged"],
        "embargoed_rows": chosen["embargoed_rows"] + validation["purge"]["holdout_embargoed"],
        "skill": report["skill"],
        "oof_pnl": validation["pnl"],
        "holdout_pnl": report["holdout"]["pnl"],
        "seconds": seconds,
    }


def _iv(value: float, interval: list[float], digits: int = 2) -> str:
    return f"{value:.{digits}f} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def render_panel(panel: dict[str, Any]) -> list[str]:
    lines = [
        "### Market panel: leakage and money",
        "",
        f"`bench/market_panel.py`: {panel['entities']} US equity portfolios (12 industries, 9 "
        f"size/value, 9 size/momentum; `linearmodels.datasets.french`) × {panel['months']} "
        f"months = {panel['rows']:,} rows, eight rule members, label = 6-month forward return "
        f"in the top 3 % of the training window ({panel['rate']:.2%} positives), payoff = that "
        "return less 20 bp. *Without purge*: labels of the last six months before each "
        "validation block and before the holdout look into it. *Purged*: `label_end` = month "
        "+ 6 months, one-month embargo; rows of a month are never split (30 per timestamp). "
        "Gap = out-of-fold F1 − holdout F1 (positive: the walk-forward estimate promised more "
        "than the later period delivered). Every fit `allow_no_skill=True`, so figures exist "
        "even where the gate says no skill.",
        "",
        "| Strategy | Purge | OOF F1 ± fold std | Holdout F1 [95 % CI] | Gap | Rows purged "
        "(+embargo) | Skill (p, lift) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in panel["runs"]:
        name = r["strategy"] if r["chosen"] == r["strategy"] else f"{r['strategy']} → {r['chosen']}"
        skill = r["skill"]
        lines.append(
            f"| {name} | {'yes' if r['purged'] else 'no'} | {r['oof_f1']:.3f} ± "
            f"{r['oof_std']:.3f} | {_iv(r['holdout_f1'], r['holdout_f1_interval'], 3)} | "
            f"{r['oof_f1'] - r['holdout_f1']:+.3f} | {r['purged_rows']} (+{r['embargoed_rows']}) "
            f"| {'skill' if skill['skilled'] else 'no skill'} ({skill['p_value']:.3f}, "
            f"{skill['lift']:.2f}) |"
        )
    lines += [
        "",
        "PnL beside F1 (payoff units: 6-month return per trade; 95 % block-bootstrap "
        "intervals over time blocks). Out-of-fold: the walk-forward predictions of the "
        "training period at the tuned threshold; holdout: the later 30 %. The annualised "
        "Sharpe scales the per-trade Sharpe by √(trades per year), which assumes independent "
        "trades: here up to 30 trades a month hold overlapping 6-month positions, so it "
        "overstates; read the per-trade figure and the intervals.",
        "",
        "| Strategy | Purge | Period | Trades | Hit rate | Mean payoff | Total payoff | "
        "Sharpe / trade | Sharpe ann. | Max drawdown | Turnover |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in panel["runs"]:
        for period, pnl in (("out-of-fold", r["oof_pnl"]), ("holdout", r["holdout_pnl"])):
            lines.append(
                f"| {r['strategy']} | {'yes' if r['purged'] else 'no'} | {period} | "
                f"{pnl['trades']} | {_iv(pnl['hit_rate'], pnl['hit_rate_interval'])} | "
                f"{_iv(pnl['mean_payoff'], pnl['mean_payoff_interval'], 4)} | "
                f"{_iv(pnl['total_payoff'], pnl['total_payoff_interval'], 1)} | "
                f"{_iv(pnl['sharpe_per_trade'], pnl['sharpe_per_trade_interval'])} | "
                f"{_iv(pnl['sharpe_annualised'], pnl['sharpe_annualised_interval'])} | "
                f"{_iv(pnl['max_drawdown'], pnl['max_drawdown_interval'], 1)} | "
                f"{pnl['turnover']:.1%} |"
            )
    return [*lines, ""]
