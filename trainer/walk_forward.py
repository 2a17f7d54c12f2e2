"""Walk-forward validation: every tuning decision is made on later, unseen rows.

Rows are time-ordered. Fold ``k`` trains on everything before its validation
block and predicts the block. Blocks are cut at time boundaries (rows sharing a
timestamp stay together) and training rows whose label window reaches the block
are purged, with an optional embargo (:mod:`metasignal.trainer.purge`); resampling
happens inside the strategy's ``fit``, so only training rows are ever
synthesised. From the out-of-fold predictions we fit the calibration map,
choose the threshold that maximises the objective averaged over the folds (every
distinct out-of-fold score is a candidate), and score each fold at the threshold
chosen on the *other* folds: an honest estimate with its fold noise. Averaging
the objective rather than the folds' own optima keeps one odd fold from
dragging the threshold.

Examples
--------
>>> [(int(tr[-1]), int(va[0]), int(va[-1])) for tr, va in walk_forward_splits(12, n_splits=3)]
[(2, 3, 5), (5, 6, 8), (8, 9, 11)]
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from metasignal.trainer.calibration import PlattCalibration, fit_platt
from metasignal.trainer.metrics import Counts, counts_at, objective_values
from metasignal.trainer.objective import Objective
from metasignal.trainer.purge import Fold, time_folds
from metasignal.trainer.strategies import estimator_fallbacks
from metasignal.trainer.thresholds import average_precision

log = logging.getLogger("metasignal.trainer")


def walk_forward_splits(
    n_rows: int,
    *,
    n_splits: int = 5,
    gap: int = 0,
    times: np.ndarray | None = None,
    label_end: np.ndarray | None = None,
    embargo: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window ``(train_index, validation_index)`` pairs in time order.

    Without ``times`` every row is its own time (as ``TimeSeriesSplit``).
    """
    folds = time_folds(
        np.arange(n_rows) if times is None else times,
        n_splits=n_splits,
        gap=gap,
        label_end=label_end,
        embargo=embargo,
    )
    return [(f.train, f.validation) for f in folds]


@dataclass
class WalkForwardResult:
    """Out-of-fold evidence for one strategy."""

    strategy: str
    calibration: PlattCalibration
    threshold: float
    fold_thresholds: list[float]
    fold_values: list[float]
    oof_index: np.ndarray
    oof_scores: np.ndarray
    fit_seconds: float
    # The fold-averaged objective the threshold was chosen on, sampled for the report.
    threshold_curve: dict[str, Any] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)
    skipped_folds: list[int] = field(default_factory=list)
    folds: list[dict[str, int]] = field(default_factory=list)
    abstain_values: list[float] = field(default_factory=list)
    # The objective of all folds' decisions pooled (:func:`pooled_value`); NaN if unknown.
    pooled: float = math.nan

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_values))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_values, ddof=1)) if len(self.fold_values) > 1 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "mean": self.mean,
            "std": self.std,
            "pooled": self.pooled,
            "fold_values": self.fold_values,
            "fold_thresholds": self.fold_thresholds,
            "threshold": self.threshold,
            "fit_seconds": self.fit_seconds,
            "fallbacks": self.fallbacks,
            "skipped_folds": self.skipped_folds,
            "abstain_values": self.abstain_values,
            "folds": self.folds,
            "purged_rows": sum(f["purged"] for f in self.folds),
            "embargoed_rows": sum(f["embargoed"] for f in self.folds),
        }


def _best(candidates: np.ndarray, mean_curve: np.ndarray) -> float:
    """The best candidate; ties go to the highest threshold (fewer trades)."""
    top = np.flatnonzero(np.isclose(mean_curve, mean_curve.max(), rtol=0, atol=1e-12))
    return float(candidates[top[-1]])


def pooled_threshold(
    objective: Objective,
    fold_labels: list[np.ndarray],
    fold_scores: list[np.ndarray],
    fold_payoffs: list[np.ndarray] | None = None,
) -> tuple[float, list[float]]:
    """The threshold maximising the fold-averaged objective, and each fold's honest value.

    Fold ``k`` is graded at the threshold chosen on the other folds only.
    """
    threshold, values, _ = _pooled_threshold(objective, fold_labels, fold_scores, fold_payoffs)
    return threshold, values


def _pooled_threshold(
    objective: Objective,
    fold_labels: list[np.ndarray],
    fold_scores: list[np.ndarray],
    fold_payoffs: list[np.ndarray] | None = None,
) -> tuple[float, list[float], list[float]]:
    """:func:`pooled_threshold` and the threshold each fold was graded at."""
    payoffs: list[np.ndarray | None] = (
        list(fold_payoffs) if fold_payoffs is not None else [None] * len(fold_labels)
    )
    candidates = np.unique(np.concatenate(fold_scores))
    curves = np.vstack(
        [
            objective.curve(y, s, candidates, v)
            for y, s, v in zip(fold_labels, fold_scores, payoffs, strict=True)
        ]
    )
    threshold = _best(candidates, curves.mean(axis=0))
    values, graded_at = [], []
    for k, (y, s, v) in enumerate(zip(fold_labels, fold_scores, payoffs, strict=True)):
        others = np.delete(curves, k, axis=0) if len(curves) > 1 else curves
        honest = _best(candidates, others.mean(axis=0))
        graded_at.append(honest)
        values.append(objective.value_at(y, s, honest, v))
    return threshold, values, graded_at


def pooled_value(
    objective: Objective,
    fold_labels: list[np.ndarray],
    fold_scores: list[np.ndarray],
    graded_at: list[float],
    fold_payoffs: list[np.ndarray] | None = None,
) -> float:
    """The objective of every fold's decisions together (each at its honest threshold).

    With few trades per fold, a fold's F1 (or precision, recall) swings on one trade and the
    mean of such ratios weights a fold of 5 positives like one of 50; summing the confusion
    counts over the folds first is the steadier estimate of the same quantity (Forman and
    Scholz, "Apples-to-apples in cross-validation studies", SIGKDD Explorations 2010).
    ``pr_auc`` ranks scores rather than decisions: its value stays the mean over folds.
    """
    payoffs: list[np.ndarray | None] = (
        list(fold_payoffs) if fold_payoffs is not None else [None] * len(fold_labels)
    )
    if objective.metric == "pr_auc":
        return float(
            np.mean(
                [average_precision(y, s) for y, s in zip(fold_labels, fold_scores, strict=True)]
            )
        )
    parts = [
        counts_at(y, s, np.array([t]), v)
        for y, s, t, v in zip(fold_labels, fold_scores, graded_at, payoffs, strict=True)
    ]
    paid = [c.payoff for c in parts if c.payoff is not None]
    total = Counts(
        thresholds=np.zeros(1),
        tp=np.sum([c.tp for c in parts], axis=0),
        fp=np.sum([c.fp for c in parts], axis=0),
        n_pos=float(sum(c.n_pos for c in parts)),
        n=float(sum(c.n for c in parts)),
        payoff=np.sum(paid, axis=0) if len(paid) == len(parts) else None,
    )
    values, allowed = objective_values(total, objective.spec)
    value = float(values[0]) if allowed[0] else 0.0
    # Profit per event, as the fold values, so it compares with them.
    return value / max(total.n, 1.0) if objective.metric == "profit" else value


def evaluate_strategy(
    name: str,
    pipeline: Pipeline,
    X: np.ndarray,
    y: np.ndarray,
    *,
    objective: Objective,
    n_splits: int = 5,
    gap: int = 0,
    times: np.ndarray | None = None,
    label_end: np.ndarray | None = None,
    embargo: int = 0,
    payoff: np.ndarray | None = None,
) -> WalkForwardResult:
    """Walk-forward out-of-fold evaluation of one strategy's pipeline."""
    started = time.perf_counter()
    folds = time_folds(
        np.arange(len(y)) if times is None else times,
        n_splits=n_splits,
        gap=gap,
        label_end=label_end,
        embargo=embargo,
    )
    raw_parts: list[np.ndarray] = []
    fallbacks: list[str] = []
    for k, fold in enumerate(folds):
        raw_parts.append(_fit_fold(name, k, len(folds), pipeline, X, y, fold, fallbacks))
    oof_raw = np.concatenate(raw_parts)
    oof_index = np.concatenate([f.validation for f in folds])
    calibration = fit_platt(oof_raw, y[oof_index])
    fold_labels, fold_scores, thresholds, skipped, abstain = [], [], [], [], []
    fold_payoffs: list[np.ndarray] = []
    for k, (raw, fold) in enumerate(zip(raw_parts, folds, strict=True)):
        labels = y[fold.validation]
        if labels.max() == 0:
            # No trade in this block: no threshold can be tuned or graded on it.
            skipped.append(k + 1)
            continue
        scores = calibration.transform(raw)
        block_payoff = None if payoff is None else payoff[fold.validation]
        fold_labels.append(labels)
        fold_scores.append(scores)
        if block_payoff is not None:
            fold_payoffs.append(block_payoff)
        thresholds.append(objective.find(labels, scores, block_payoff).threshold)
        abstain.append(abstain_value(objective, labels, scores, block_payoff))
    if not thresholds:
        raise ValueError("no walk-forward validation fold contains a positive; cannot tune")
    payoffs = None if payoff is None else fold_payoffs
    threshold, fold_values, graded_at = _pooled_threshold(
        objective, fold_labels, fold_scores, payoffs
    )
    return WalkForwardResult(
        strategy=name,
        calibration=calibration,
        threshold=threshold,
        fold_thresholds=thresholds,
        fold_values=fold_values,
        pooled=pooled_value(objective, fold_labels, fold_scores, graded_at, payoffs),
        threshold_curve=fold_averaged_curve(
            objective,
            fold_labels,
            fold_scores,
            threshold,
            None if payoff is None else fold_payoffs,
        ),
        oof_index=oof_index,
        oof_scores=calibration.transform(oof_raw),
        fit_seconds=time.perf_counter() - started,
        fallbacks=fallbacks,
        skipped_folds=skipped,
        folds=[f.summary() for f in folds],
        abstain_values=abstain,
    )


def fold_averaged_curve(
    objective: Objective,
    fold_labels: list[np.ndarray],
    fold_scores: list[np.ndarray],
    threshold: float,
    fold_payoffs: list[np.ndarray] | None = None,
    points: int = 200,
) -> dict[str, Any]:
    """:func:`pooled_threshold`'s curves at a sample of its candidates, for the report.

    The candidates (every distinct out-of-fold score) are sampled evenly in rank and in
    value, plus every candidate near ``threshold``: rare-event scores crowd near zero, so
    sampling by rank alone would leave the chosen threshold a handful of points. Only the
    sample is evaluated, so this costs a sort, not a second threshold search.
    """
    candidates = np.unique(np.concatenate(fold_scores))
    n = len(candidates)
    chosen = int(np.searchsorted(candidates, threshold))
    keep = np.unique(
        np.concatenate(
            [
                np.linspace(0, n - 1, min(points, n)).astype(int),
                np.searchsorted(candidates, np.linspace(candidates[0], candidates[-1], points)),
                np.arange(max(chosen - 40, 0), min(chosen + 41, n)),
            ]
        ).clip(0, n - 1)
    )
    sample = candidates[keep]
    payoffs: list[np.ndarray | None] = (
        list(fold_payoffs) if fold_payoffs is not None else [None] * len(fold_labels)
    )
    curves = np.vstack(
        [
            objective.curve(y, s, sample, v)
            for y, s, v in zip(fold_labels, fold_scores, payoffs, strict=True)
        ]
    )
    return {
        "threshold": sample.tolist(),
        "value": curves.mean(axis=0).tolist(),
        "folds": curves.tolist(),
    }


def abstain_value(
    objective: Objective, y: np.ndarray, scores: np.ndarray, payoff: np.ndarray | None
) -> float:
    """The objective of never trading on a fold (for ``pr_auc``: the base rate)."""
    if objective.metric == "pr_auc":
        return float(np.mean(y))
    return objective.value_at(y, scores, math.inf, payoff)


def _fit_fold(
    name: str,
    k: int,
    n_folds: int,
    pipeline: Pipeline,
    X: np.ndarray,
    y: np.ndarray,
    fold: Fold,
    fallbacks: list[str],
) -> np.ndarray:
    """Fit fold ``k`` on its (purged) training rows; its raw scores on the validation block."""
    train = fold.train
    if train.size == 0 or y[train].min() == y[train].max():
        raise ValueError(
            f"walk-forward fold {k + 1} trains on a single class after purging "
            f"{fold.purged + fold.embargoed} rows; the training period has too few positives "
            "early on (use fewer --splits or a shorter --label-horizon/--embargo)"
        )
    fold_model = clone(pipeline).fit(X[train], y[train])
    for note in estimator_fallbacks(fold_model[-1]):
        fallbacks.append(f"fold {k + 1}: {note}")
    log.info("  %s fold %d/%d done", name, k + 1, n_folds)
    return np.asarray(fold_model.decision_function(X[fold.validation]))
