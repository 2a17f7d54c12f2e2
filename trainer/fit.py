"""From a vote table to a published artifact and an honest report.

The last ``holdout`` fraction of rows (by time) is set aside first. Everything
that is tuned (strategy, calibration, threshold) is chosen by walk-forward
validation on the earlier rows only; the holdout is touched once, to report.
The published model is then refitted on every row with those tuned settings.
"""

from __future__ import annotations

import logging
import math
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from metasignal.stream.artifact import SCHEMA_VERSION, Artifact
from metasignal.stream.sizing import SizingRule, resolve_sizing
from metasignal.trainer.calibration import brier_score, reliability_curve
from metasignal.trainer.data import DataError, VoteTable, input_summary, load_table
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.report import holdout_warnings
from metasignal.trainer.thresholds import average_precision, confusion_at

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("metasignal.trainer")

LIBRARIES = ("numpy", "scipy", "scikit-learn", "imbalanced-learn", "metasignal")


@dataclass
class FitConfig:
    """Everything ``metasignal fit`` can set; ``estimator`` holds MetaModelClassifier params."""

    holdout: float = 0.3
    refit_all: bool = True
    model_name: str = "meta"
    model_version: int = 1
    missing_policy: str = "impute"
    estimator: dict[str, Any] = field(default_factory=dict)
    # The position-sizing rule (metasignal.stream.sizing.resolve_sizing's spec).
    sizing: dict[str, Any] = field(default_factory=lambda: {"method": "probability"})


@dataclass
class FitOutcome:
    artifact: Artifact
    report: dict[str, Any]
    model: MetaModelClassifier


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
    tp, fp, fn, _ = confusion_at(y, p, threshold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    positives = int(y.sum())
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "pr_auc": average_precision(y, p) if positives else None,
        "brier": brier_score(y, p),
        "n": len(y),
        "positives": positives,
        "predicted_positives": tp + fp,
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


def build_plots(
    model: MetaModelClassifier,
    y_oof: np.ndarray,
    p_oof: np.ndarray,
    y_ho: np.ndarray,
    p_ho: np.ndarray,
) -> dict[str, Any]:
    """Downsampled curve data for the HTML report (never full arrays)."""
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
        tp, fp, fn, _ = confusion_at(y_ho, p_ho, model.threshold_)
        plots["pr_curve"] = {
            "recall": _downsample(recall)[0],
            "precision": _downsample(precision)[0],
            "chosen": {
                "recall": tp / (tp + fn) if tp + fn else 0.0,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
            },
            "source": "holdout",
        }
        predicted, observed, count = reliability_curve(y_ho, p_ho)
        plots["calibration"] = {
            "predicted": predicted.tolist(),
            "observed": observed.tolist(),
            "count": count.tolist(),
            "source": "holdout",
        }
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
    }


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
) -> FitOutcome:
    """Tune on the training period, report on the holdout, publish a refit on all rows.

    ``data`` is a :class:`VoteTable`, or a pandas DataFrame or CSV/Parquet path read by
    :func:`metasignal.trainer.data.load_table` with ``label``, ``time`` and the other
    keywords (``fit_meta_model(df, label="y", time="ts", entity="ticker")``).
    """
    config = config or FitConfig()
    read = {"members": members, "entity": entity, "timezone": timezone, "time_unit": time_unit}
    table = (
        data
        if isinstance(data, VoteTable)
        else _read_table(data, config, label, time, strict=strict, **read)
    )
    started = perf_counter()
    if not 0.0 <= config.holdout < 0.9:
        raise DataError(f"--holdout must lie in [0, 0.9), got {config.holdout}")
    n = len(table)
    n_holdout = math.ceil(n * config.holdout)
    train, hold = table.rows(0, n - n_holdout), table.rows(n - n_holdout, n)
    estimator = MetaModelClassifier(**config.estimator)
    # Checked before the (long) fit: a bad sizing flag should not cost a fit.
    objective = estimator.objective
    profit = (objective.gain, objective.cost) if objective.metric == "profit" else None
    try:
        sizing = resolve_sizing(config.sizing, gain_cost=profit)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    needed = min_positives(estimator.n_splits)
    if train.positives < needed:
        raise DataError(
            f"only {train.positives} positives in the training period; {estimator.n_splits} "
            f"walk-forward folds need at least {needed} (lower --splits or --holdout)"
        )
    if len(set(train.labels.tolist())) < 2:
        raise DataError("the training period holds a single class")
    log.info(
        "training period: %d rows, %d positives (%.2f%%); holdout: %d rows",
        len(train),
        train.positives,
        100 * train.positives / len(train),
        len(hold),
    )
    try:
        model = estimator.fit(train.votes, train.labels)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    evidence = model.walk_forward_[model.strategy_]
    y_oof = train.labels[evidence.oof_index]
    p_ho = model.predict_proba(hold.votes)[:, 1] if len(hold) else np.array([])
    holdout = holdout_metrics(hold.labels, p_ho, model.threshold_) if len(hold) else None
    plots = build_plots(model, y_oof, evidence.oof_scores, hold.labels, p_ho)
    sizes = sizing_summary(sizing, p_ho, model.threshold_)
    published = model.refit(table.votes, table.labels) if config.refit_all and len(hold) else model
    fit_seconds = perf_counter() - started
    validation = {
        "metric": model.metric,
        "chosen": evidence.summary(),
        "strategies": {name: r.summary() for name, r in model.walk_forward_.items()},
        "oof_brier": brier_score(y_oof, evidence.oof_scores),
    }
    refit_note = (
        f"published model refitted on all {n} rows (training period + holdout) with the "
        "strategy, calibration map and threshold tuned on the training period; holdout "
        "figures come from the model fitted on the training period only"
        if published is not model
        else "published model is the one fitted on the training period"
    )
    artifact = build_artifact(
        published,
        table=table,
        config=config,
        training_window=(int(table.time_ms[0]), int(table.time_ms[-1])),
        validation=validation,
        holdout=holdout,
        sizing=sizing,
    )
    coef, intercept = published.linear_parameters()
    report = {
        "model": artifact["model"],
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
            "start": iso_ms(int(train.time_ms[0])),
            "end": iso_ms(int(train.time_ms[-1])),
        },
        "holdout_period": {
            "start": iso_ms(int(hold.time_ms[0])),
            "end": iso_ms(int(hold.time_ms[-1])),
        }
        if len(hold)
        else None,
        "published": refit_note,
        "member_weights": dict(zip(table.members, coef.tolist(), strict=True)),
        "intercept": intercept,
        "calibration": model.calibration_.to_dict(),
        "sizing": sizes,
        "plots": plots,
        "fit_seconds": fit_seconds,
        "libraries": artifact["libraries"],
        "input": input_summary(table),
    }
    return FitOutcome(artifact=artifact, report=report, model=published)


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


def build_artifact(
    model: MetaModelClassifier,
    *,
    table: VoteTable,
    config: FitConfig,
    training_window: tuple[int, int],
    validation: dict[str, Any],
    holdout: dict[str, Any] | None,
    sizing: SizingRule,
) -> Artifact:
    """The unsigned artifact body (sign with :func:`metasignal.stream.artifact.sign_artifact`)."""
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
