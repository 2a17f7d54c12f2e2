"""From a vote table to a published artifact and an honest report.

The last ``holdout`` fraction of rows (by time, cut between two distinct
timestamps) is set aside first; training rows whose label window reaches the
holdout are purged (and embargoed). Everything that is tuned (strategy,
calibration, threshold) is chosen by walk-forward validation on the earlier
rows only; the holdout is touched once, to report. The skill gate
(:mod:`metasignal.trainer.skill`) then decides from the out-of-fold evidence:
without evidence of skill no model is published (:class:`NoSkillError`, which
carries the report) unless ``allow_no_skill`` overrides it, and the artifact
records the override. The published model is refitted on every row with the
tuned settings, and its score is recalibrated to the out-of-fold scale (:func:`serve`).
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
import math
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from metasignal.stream.artifact import SCHEMA_VERSION, Artifact
from metasignal.stream.sizing import SizingRule, resolve_sizing
from metasignal.trainer.calibration import (
    brier_score,
    compose_transfer,
    fit_transfer,
    reliability_curve,
)
from metasignal.trainer.data import DataError, VoteTable, input_summary, load_table
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.metrics import decision_metrics
from metasignal.trainer.pnl import pnl_report
from metasignal.trainer.purge import purge_mask, snap_cut, time_blocks
from metasignal.trainer.report import holdout_warnings
from metasignal.trainer.resample import DEFAULT_BLOCKS
from metasignal.trainer.skill import NoSkillError
from metasignal.trainer.thresholds import average_precision
from metasignal.trainer.uncertainty import holdout_intervals, threshold_interval

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("metasignal.trainer")

P = ParamSpec("P")
R = TypeVar("R")

LIBRARIES = ("numpy", "scipy", "scikit-learn", "imbalanced-learn", "metasignal")


@dataclass
class FitConfig:
    """Everything ``metasignal fit`` can set; ``estimator`` holds MetaModelClassifier params."""

    holdout: float = 0.3
    refit_all: bool = True
    model_name: str = "meta"
    model_version: int = 1
    missing_policy: str = "impute"
    allow_no_skill: bool = False
    estimator: dict[str, Any] = field(default_factory=dict)
    # The position-sizing rule (metasignal.stream.sizing.resolve_sizing's spec).
    sizing: dict[str, Any] = field(default_factory=lambda: {"method": "probability"})


@dataclass
class FitOutcome:
    artifact: Artifact
    report: dict[str, Any]
    model: MetaModelClassifier


@dataclass(frozen=True)
class Period:
    """Rows of one period (index into the table) with their aligned side columns."""

    index: np.ndarray
    votes: np.ndarray
    labels: np.ndarray
    times: np.ndarray
    label_end: np.ndarray | None
    payoff: np.ndarray | None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def positives(self) -> int:
        return int(self.labels.sum())


def _period(
    table: VoteTable, index: np.ndarray, label_end: np.ndarray | None, payoff: np.ndarray | None
) -> Period:
    return Period(
        index=index,
        votes=table.votes[index],
        labels=table.labels[index],
        times=table.time_ms[index],
        label_end=None if label_end is None else label_end[index],
        payoff=None if payoff is None else payoff[index],
    )


def split_periods(
    table: VoteTable,
    holdout: float,
    *,
    label_end: np.ndarray | None,
    embargo: int,
    payoff: np.ndarray | None,
) -> tuple[Period, Period, dict[str, int]]:
    """Training period and holdout, cut at a time boundary, the training period purged.

    Training rows whose label window ``[t, end]`` overlaps the holdout (widened by the
    embargo) are dropped: their labels were decided by holdout-period prices.
    """
    n = len(table)
    cut = snap_cut(table.time_ms, n - math.ceil(n * holdout)) if holdout > 0 else n
    train_index = np.arange(cut)
    purged = embargoed = 0
    if label_end is not None and cut < n:
        p, e = purge_mask(
            table.time_ms[:cut],
            label_end[:cut],
            int(table.time_ms[cut]),
            int(table.time_ms[-1]),
            embargo,
        )
        purged, embargoed = int(p.sum()), int(e.sum())
        train_index = train_index[~(p | e)]
    return (
        _period(table, train_index, label_end, payoff),
        _period(table, np.arange(cut, n), label_end, payoff),
        {"holdout_purged": purged, "holdout_embargoed": embargoed},
    )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def min_positives(n_splits: int) -> int:
    """Every walk-forward fold must train on and be graded on some trades."""
    return 2 * (n_splits + 1)


def holdout_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """The report's block for a period the model never saw while being tuned."""
    decided = decision_metrics(y, p, threshold)
    positives = int(y.sum())
    return {
        "f1": decided["f1"],
        "precision": decided["precision"],
        "recall": decided["recall"],
        "pr_auc": average_precision(y, p) if positives else None,
        "brier": brier_score(y, p),
        "n": len(y),
        "positives": positives,
        "predicted_positives": decided["predicted_positives"],
        "observed_rate": float(y.mean()) if len(y) else None,
        "expected_rate": float(p.mean()) if len(y) else None,
        "threshold": threshold,
    }


def _downsample(*arrays: np.ndarray, points: int = 300) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).astype(int)) if n else np.array([], int)
    return [[round(float(v), 6) for v in a[keep]] for a in arrays]


def _pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    k = np.arange(1, len(y) + 1)
    return tp / max(int(y.sum()), 1), tp / k


def cumulative_pnl(
    payoff: np.ndarray, traded: np.ndarray, times_ms: np.ndarray, points: int = 400
) -> dict[str, Any]:
    """Cumulative payoff of the traded events against their time, downsampled for a plot.

    The running low and high between two kept points are kept as well, so a drawdown
    between samples still shows.
    """
    rows = np.flatnonzero(traded)
    cumulative = np.cumsum(np.asarray(payoff, dtype=np.float64)[rows])
    n = len(rows)
    if n == 0:
        return {"time_ms": [], "cumulative": [], "trades": 0}
    keep = np.unique(np.linspace(0, n - 1, min(points, n)).astype(int))
    bounds = np.append(keep, n)
    extremes = [
        [a + int(np.argmin(cumulative[a:b])), a + int(np.argmax(cumulative[a:b]))]
        for a, b in itertools.pairwise(bounds.tolist())
    ]
    keep = np.unique(np.concatenate([keep, np.ravel(extremes)]))
    return {
        "time_ms": np.asarray(times_ms)[rows][keep].astype(np.int64).tolist(),
        "cumulative": [round(float(v), 9) for v in cumulative[keep]],
        "trades": n,
    }


def build_plots(
    model: MetaModelClassifier,
    y_oof: np.ndarray,
    p_oof: np.ndarray,
    y_ho: np.ndarray,
    p_ho: np.ndarray,
    *,
    payoff: tuple[Period, Period] | None = None,
    holdout_threshold: float | None = None,
) -> dict[str, Any]:
    """Downsampled curve data for the HTML report (never full arrays).

    ``payoff``: the training period and the holdout when a payoff column was given; the
    cumulative PnL of the out-of-fold and the holdout trades is added.
    ``holdout_threshold``: the threshold on ``p_ho``'s scale (default the tuned one, on the
    out-of-fold scores' scale).
    """
    ho_threshold = model.threshold_ if holdout_threshold is None else holdout_threshold
    # pr_auc has no threshold of its own: its threshold is the F1-optimal one.
    curve_metric = "f1" if model.metric == "pr_auc" else model.metric
    evidence = model.walk_forward_[model.strategy_]
    folds = len(evidence.fold_values)
    plots: dict[str, Any] = {
        # The very curve the threshold maximised: the objective averaged over the folds.
        "metric_vs_threshold": {
            **evidence.threshold_curve,
            "metric": curve_metric,
            "chosen": model.threshold_,
            "source": f"the {folds} walk-forward validation folds of the training period",
        }
    }
    if len(y_ho) and y_ho.sum():
        recall, precision = _pr_curve(y_ho, p_ho)
        chosen = decision_metrics(y_ho, p_ho, ho_threshold)
        plots["pr_curve"] = {
            "recall": _downsample(recall)[0],
            "precision": _downsample(precision)[0],
            "chosen": {"recall": chosen["recall"], "precision": chosen["precision"]},
            "source": "holdout",
        }
        predicted, observed, count = reliability_curve(y_ho, p_ho)
        plots["calibration"] = {
            "predicted": predicted.tolist(),
            "observed": observed.tolist(),
            "count": count.tolist(),
            "source": "holdout",
        }
    if payoff is not None:
        train, hold = payoff
        index = evidence.oof_index
        assert train.payoff is not None
        plots["pnl"] = {
            "out_of_fold": cumulative_pnl(
                train.payoff[index], p_oof >= model.threshold_, train.times[index]
            ),
            "threshold": model.threshold_,
        }
        if len(hold) and hold.payoff is not None:
            plots["pnl"]["holdout"] = cumulative_pnl(hold.payoff, p_ho >= ho_threshold, hold.times)
    return plots


def sizing_summary(rule: SizingRule, p_holdout: np.ndarray, threshold: float) -> dict[str, Any]:
    """The report's sizing block: the rule, and the sizes it gives the holdout's trades."""
    sizes = rule.size(p_holdout, threshold)[p_holdout >= threshold]
    counts, edges = np.histogram(sizes, bins=20, range=(0.0, 1.0))
    return {
        "rule": rule.to_dict(),
        "description": rule.describe(),
        "holdout_trades": len(sizes),
        "holdout_mean_size": float(sizes.mean()) if len(sizes) else None,
        "holdout_zero_size_trades": int(np.count_nonzero(sizes == 0)),
        "holdout_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "threshold": float(threshold),  # the served threshold the sizes were taken at
    }


def _one_blas_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with one BLAS thread.

    The meta-model's matrices are rows x members (a handful of columns): every product is
    memory-bound, and BLAS threads only add hand-offs and spin-waiting, which on a shared
    machine take CPU from the other processes and time from this one.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@_one_blas_thread
def fit_meta_model(
    data: VoteTable | pd.DataFrame | str | Path,
    config: FitConfig | None = None,
    *,
    label: str | None = None,
    time: str | None = None,
    members: list[str] | None = None,
    entity: str | None = None,
    timezone: str = "UTC",
    time_unit: str = "ms",
    strict: bool = False,
    payoff: np.ndarray | None = None,
    label_end: np.ndarray | None = None,
) -> FitOutcome:
    """Tune on the training period, report on the holdout, publish a refit on all rows.

    ``data`` is a :class:`VoteTable`, or a pandas DataFrame or CSV/Parquet path read by
    :func:`metasignal.trainer.data.load_table` with ``label``, ``time`` and the other
    keywords (``fit_meta_model(df, label="y", time="ts", entity="ticker")``).

    ``payoff`` (realized payoff of trading each row) and ``label_end`` (each row's
    label-window end, epoch ms), aligned with the table's rows, default to the table's own
    ``payoff`` and ``label_end_ms`` columns. Raises :class:`NoSkillError` (carrying the
    report) when the committee shows no evidence of skill and ``config.allow_no_skill`` is
    off.
    """
    config = config or FitConfig()
    read = {"members": members, "entity": entity, "timezone": timezone, "time_unit": time_unit}
    table = (
        data
        if isinstance(data, VoteTable)
        else _read_table(data, config, label, time, strict=strict, **read)
    )
    payoff = table.payoff if payoff is None else payoff
    label_end = table.label_end_ms if label_end is None else label_end
    started = perf_counter()
    if not 0.0 <= config.holdout < 0.9:
        raise DataError(f"--holdout must lie in [0, 0.9), got {config.holdout}")
    estimator = MetaModelClassifier(**config.estimator)
    # Checked first: a bad sizing flag should cost neither a fit nor a data check.
    objective = estimator.objective
    profit = (objective.gain, objective.cost) if objective.metric == "profit" else None
    try:
        resolve_sizing(config.sizing, payoff=payoff, labels=table.labels, gain_cost=profit)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    try:
        ends = estimator.label_end(table.time_ms, label_end)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if payoff is not None and (len(payoff) != len(table) or not np.isfinite(payoff).all()):
        raise DataError("the payoff column must hold one finite number per row")
    train, hold, holdout_purge = split_periods(
        table, config.holdout, label_end=ends, embargo=int(estimator.embargo), payoff=payoff
    )
    _check_training_period(train, estimator.n_splits)
    # Kelly's payoff ratio comes from the training period's payoffs only.
    sizing = resolve_sizing(
        config.sizing, payoff=train.payoff, labels=train.labels, gain_cost=profit
    )
    log.info(
        "training period: %d rows, %d positives (%.2f%%), %d purged; holdout: %d rows",
        len(train),
        train.positives,
        100 * train.positives / len(train),
        holdout_purge["holdout_purged"] + holdout_purge["holdout_embargoed"],
        len(hold),
    )
    try:
        model = estimator.fit(
            train.votes,
            train.labels,
            times=train.times,
            label_end=train.label_end,
            payoff=train.payoff,
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    evidence = model.walk_forward_[model.strategy_]
    y_oof = train.labels[evidence.oof_index]
    # The holdout reads the served score: the tuned model recalibrated as the artifact is
    # (serve); its decisions are the tuned model's own, its probabilities what users get.
    tuned_served = serve(model, train.votes)
    p_ho = tuned_served.predict_proba(hold.votes)[:, 1] if len(hold) else np.array([])
    holdout = _holdout_block(hold, p_ho, tuned_served.threshold_) if len(hold) else None
    plots = build_plots(
        model,
        y_oof,
        evidence.oof_scores,
        hold.labels,
        p_ho,
        payoff=None if train.payoff is None else (train, hold),
        holdout_threshold=tuned_served.threshold_,
    )
    sizes = sizing_summary(sizing, p_ho, tuned_served.threshold_)
    skill = model.skill_.to_dict()
    skill["overridden"] = not model.skill_.skilled and config.allow_no_skill
    if skill["overridden"]:
        skill["verdict"] = "no skill (overridden by --allow-no-skill)"
    validation = {
        "metric": model.metric,
        "chosen": evidence.summary(),
        "strategies": {name: r.summary() for name, r in model.walk_forward_.items()},
        "oof_brier": brier_score(y_oof, evidence.oof_scores),
        "threshold_uncertainty": _threshold_uncertainty(model, train),
        "purge": {
            "label_horizon_ms": model.label_horizon,
            "label_end_column": label_end is not None,
            "embargo_ms": int(model.embargo),
            **holdout_purge,
            "folds": evidence.folds,
        },
    }
    if train.payoff is not None:
        validation["pnl"] = pnl_report(
            train.payoff[evidence.oof_index],
            evidence.oof_scores >= model.threshold_,
            train.times[evidence.oof_index],
            n_resamples=200,
        )
    published = model.refit(table.votes, table.labels) if config.refit_all and len(hold) else model
    refit_note = (
        f"published model refitted on all {len(table)} rows (training period + holdout) with "
        "the strategy, calibration map and threshold tuned on the training period; holdout "
        "figures come from the model fitted on the training period only"
        if published is not model
        else "published model is the one fitted on the training period"
    )
    served = serve(published, train.votes)
    artifact = served_artifact(
        served,
        table=table,
        config=config,
        training_window=(int(table.time_ms[0]), int(table.time_ms[-1])),
        validation=validation,
        holdout=holdout,
        sizing=sizing,
    )
    artifact["skill"] = skill
    coef, intercept = published.linear_parameters()
    report = {
        "skill": skill,
        "model": artifact["model"],
        "published": refit_note,
        "strategy": model.strategy_,
        "strategy_reason": model.strategy_reason_,
        "fallbacks": published.fallbacks_,
        "threshold": model.threshold_,
        "metric": model.metric,
        "objective": model.objective.to_dict(),
        "holdout": holdout,
        "warnings": holdout_warnings(holdout),
        "validation": validation,
        "training": {
            "rows": len(train),
            "positives": train.positives,
            "positive_rate": model.positive_rate_,
            "start": iso_ms(int(train.times[0])),
            "end": iso_ms(int(train.times[-1])),
        },
        "holdout_period": {
            "start": iso_ms(int(hold.times[0])),
            "end": iso_ms(int(hold.times[-1])),
        }
        if len(hold)
        else None,
        "member_weights": dict(zip(table.members, coef.tolist(), strict=True)),
        "intercept": intercept,
        "calibration": model.calibration_.to_dict(),
        # What the artifact serves: the same decisions on the recalibrated score (serve()).
        "served": {"calibration": served.calibration_.to_dict(), "threshold": served.threshold_},
        "sizing": sizes,
        "plots": plots,
        "fit_seconds": perf_counter() - started,
        "libraries": artifact["libraries"],
        "input": input_summary(table),
    }
    if not (skill["skilled"] or skill["overridden"]):
        refused = f"no model published: {model.skill_.reason}"
        report["published"] = refused
        raise NoSkillError(refused, report=report)
    return FitOutcome(artifact=artifact, report=report, model=served)


def _read_table(
    data: pd.DataFrame | str | Path,
    config: FitConfig,
    label: str | None,
    time: str | None,
    **read: Any,
) -> VoteTable:
    if label is None or time is None:
        raise DataError("reading a DataFrame or file needs label= and time= column names")
    raw = config.estimator.get("kind") == "raw"
    return load_table(data, label=label, time=time, raw_scores=raw, **read)


def _check_training_period(train: Period, n_splits: int) -> None:
    needed = min_positives(n_splits)
    if train.positives < needed:
        raise DataError(
            f"only {train.positives} positives in the training period; {n_splits} "
            f"walk-forward folds need at least {needed} (lower --splits or --holdout)"
        )
    if len(set(train.labels.tolist())) < 2:
        raise DataError("the training period holds a single class")


def _holdout_block(hold: Period, p_ho: np.ndarray, threshold: float) -> dict[str, Any]:
    """Holdout metrics with block-bootstrap intervals (and PnL with a payoff)."""
    block = holdout_metrics(hold.labels, p_ho, threshold)
    blocks = time_blocks(hold.times, DEFAULT_BLOCKS)
    block["intervals"] = holdout_intervals(hold.labels, p_ho, threshold, blocks)
    if hold.payoff is not None:
        block["pnl"] = pnl_report(hold.payoff, p_ho >= threshold, hold.times, n_resamples=200)
    return block


def _threshold_uncertainty(model: MetaModelClassifier, train: Period) -> dict[str, Any]:
    """Fold spread and a block-bootstrap interval of the threshold (out-of-fold scores)."""
    evidence = model.walk_forward_[model.strategy_]
    folds = np.asarray(evidence.fold_thresholds, dtype=np.float64)
    index = evidence.oof_index
    low, high = threshold_interval(
        model.objective,
        train.labels[index],
        evidence.oof_scores,
        time_blocks(train.times[index], DEFAULT_BLOCKS),
        None if train.payoff is None else train.payoff[index],
    )
    return {
        "threshold": model.threshold_,
        "fold_min": float(folds.min()),
        "fold_max": float(folds.max()),
        "fold_std": float(folds.std(ddof=1)) if folds.size > 1 else 0.0,
        "bootstrap_interval": [low, high],
    }


def serve(model: MetaModelClassifier, training_votes: np.ndarray) -> MetaModelClassifier:
    """A copy of ``model`` whose score means on the published model what the out-of-fold one did.

    The calibration map was fitted on out-of-fold decision values of fold models trained on
    fewer rows; the model refitted on every row spreads its decision values wider, so the
    same map over-states P(trade) at the top. The copy's calibration is instead a Platt map
    of its own decision values fitted to the out-of-fold calibrated scores on the training
    rows (:func:`~metasignal.trainer.calibration.fit_transfer`: no label beyond the ones
    the calibration used), and its threshold is the old one carried through the same
    monotone map (:func:`~metasignal.trainer.calibration.compose_transfer`): every
    decision is the model's own, only the score (and so a position's size) moves.
    """
    evidence = model.walk_forward_[model.strategy_]
    transfer = fit_transfer(
        model.decision_function(training_votes[evidence.oof_index]), evidence.oof_scores
    )
    calibration, threshold = compose_transfer(model.calibration_, transfer, model.threshold_)
    served = copy.copy(model)
    served.calibration_ = calibration
    served.threshold_ = threshold
    return served


def build_artifact(
    model: MetaModelClassifier,
    *,
    table: VoteTable,
    config: FitConfig,
    training_window: tuple[int, int],
    validation: dict[str, Any],
    holdout: dict[str, Any] | None,
    sizing: SizingRule,
    training_votes: np.ndarray | None = None,
) -> Artifact:
    """The unsigned artifact body (sign with :func:`metasignal.stream.artifact.sign_artifact`).

    The model is published as :func:`serve` makes it: ``training_votes`` are the rows the
    walk-forward evidence indexes (default: the table's), on which its served calibration
    is fitted.
    """
    served = serve(model, table.votes if training_votes is None else training_votes)
    return served_artifact(
        served,
        table=table,
        config=config,
        training_window=training_window,
        validation=validation,
        holdout=holdout,
        sizing=sizing,
    )


def served_artifact(
    model: MetaModelClassifier,
    *,
    table: VoteTable,
    config: FitConfig,
    training_window: tuple[int, int],
    validation: dict[str, Any],
    holdout: dict[str, Any] | None,
    sizing: SizingRule,
) -> Artifact:
    """The artifact body of a model as it stands (already passed through :func:`serve`)."""
    features = model.pipeline_[0]
    coef, intercept = model.linear_parameters()
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": config.model_name, "version": config.model_version},
        "created_at": datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "strategy": {
            "name": model.strategy_,
            "reason": model.strategy_reason_,
            "fallbacks": model.fallbacks_,
            "params": model.strategy_params.to_dict(),
        },
        "members": list(table.members),
        "preprocessing": {
            "transform": "logit" if model.kind == "probability" else "identity",
            "clip_eps": model.clip_eps,
            "missing_policy": config.missing_policy,
            "impute": features.impute_.tolist(),
            "mean": features.mean_.tolist(),
            "scale": features.scale_.tolist(),
        },
        "linear": {"coef": coef.tolist(), "intercept": intercept},
        "calibration": model.calibration_.to_dict(),
        "threshold": {
            "value": model.threshold_,
            "metric": model.metric,
            "objective": model.objective.to_dict(),
            "fold_thresholds": validation["chosen"]["fold_thresholds"],
        },
        "sizing": sizing.to_dict(),
        "training": {
            "window": {"start": iso_ms(training_window[0]), "end": iso_ms(training_window[1])},
            "rows": len(table),
            "positive_rate": model.positive_rate_,
        },
        "metrics": {
            "validation": {
                "metric": validation["metric"],
                "mean": validation["chosen"]["mean"],
                "std": validation["chosen"]["std"],
                "oof_brier": validation["oof_brier"],
            },
            "holdout": holdout,
        },
        "libraries": library_versions(),
    }
