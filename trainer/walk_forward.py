"""Walk-forward validation: every tuning decision is made on later, unseen rows.

Rows are time-ordered. Fold ``k`` trains on everything before its validation
block (minus an optional purge ``gap``) and predicts the block; resampling
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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import Pipeline

from metasignal.trainer.calibration import PlattCalibration, fit_platt
from metasignal.trainer.objective import Objective
from metasignal.trainer.strategies import estimator_fallbacks

log = logging.getLogger("metasignal.trainer")


def walk_forward_splits(
    n_rows: int, *, n_splits: int = 5, gap: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window ``(train_index, validation_index)`` pairs in time order."""
    splitter = TimeSeriesSplit(n_splits=n_splits, gap=gap)
    return [(train, val) for train, val in splitter.split(np.empty((n_rows, 1)))]


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
            "fold_values": self.fold_values,
            "fold_thresholds": self.fold_thresholds,
            "threshold": self.threshold,
            "fit_seconds": self.fit_seconds,
            "fallbacks": self.fallbacks,
            "skipped_folds": self.skipped_folds,
        }


def _best(candidates: np.ndarray, mean_curve: np.ndarray) -> float:
    """The best candidate; ties go to the highest threshold (fewer trades)."""
    top = np.flatnonzero(np.isclose(mean_curve, mean_curve.max(), rtol=0, atol=1e-12))
    return float(candidates[top[-1]])


def pooled_threshold(
    objective: Objective, fold_labels: list[np.ndarray], fold_scores: list[np.ndarray]
) -> tuple[float, list[float]]:
    """The threshold maximising the fold-averaged objective, and each fold's honest value.

    Fold ``k`` is graded at the threshold chosen on the other folds only.
    """
    candidates = np.unique(np.concatenate(fold_scores))
    curves = np.vstack(
        [objective.curve(y, s, candidates) for y, s in zip(fold_labels, fold_scores, strict=True)]
    )
    threshold = _best(candidates, curves.mean(axis=0))
    values = []
    for k, (y, s) in enumerate(zip(fold_labels, fold_scores, strict=True)):
        others = np.delete(curves, k, axis=0) if len(curves) > 1 else curves
        values.append(objective.value_at(y, s, _best(candidates, others.mean(axis=0))))
    return threshold, values


def evaluate_strategy(
    name: str,
    pipeline: Pipeline,
    X: np.ndarray,
    y: np.ndarray,
    *,
    objective: Objective,
    n_splits: int = 5,
    gap: int = 0,
) -> WalkForwardResult:
    """Walk-forward out-of-fold evaluation of one strategy's pipeline."""
    started = time.perf_counter()
    folds = walk_forward_splits(len(y), n_splits=n_splits, gap=gap)
    raw_parts, index_parts, fallbacks, skipped = [], [], [], []
    for k, (train, val) in enumerate(folds):
        if y[train].min() == y[train].max():
            raise ValueError(
                f"walk-forward fold {k + 1} trains on a single class; "
                "the training period has too few positives early on (use fewer --splits)"
            )
        fold_model = clone(pipeline).fit(X[train], y[train])
        for note in estimator_fallbacks(fold_model[-1]):
            fallbacks.append(f"fold {k + 1}: {note}")
        raw_parts.append(fold_model.decision_function(X[val]))
        index_parts.append(val)
        log.info("  %s fold %d/%d done", name, k + 1, len(folds))
    oof_raw = np.concatenate(raw_parts)
    oof_index = np.concatenate(index_parts)
    calibration = fit_platt(oof_raw, y[oof_index])
    fold_labels, fold_scores, thresholds = [], [], []
    for k, (raw, index) in enumerate(zip(raw_parts, index_parts, strict=True)):
        labels = y[index]
        if labels.max() == 0:
            # No trade in this block: no threshold can be tuned or graded on it.
            skipped.append(k + 1)
            continue
        scores = calibration.transform(raw)
        fold_labels.append(labels)
        fold_scores.append(scores)
        thresholds.append(objective.find(labels, scores).threshold)
    if not thresholds:
        raise ValueError("no walk-forward validation fold contains a positive; cannot tune")
    threshold, fold_values = pooled_threshold(objective, fold_labels, fold_scores)
    return WalkForwardResult(
        strategy=name,
        calibration=calibration,
        threshold=threshold,
        fold_thresholds=thresholds,
        fold_values=fold_values,
        threshold_curve=fold_averaged_curve(objective, fold_labels, fold_scores, threshold),
        oof_index=oof_index,
        oof_scores=calibration.transform(oof_raw),
        fit_seconds=time.perf_counter() - started,
        fallbacks=fallbacks,
        skipped_folds=skipped,
    )


def fold_averaged_curve(
    objective: Objective,
    fold_labels: list[np.ndarray],
    fold_scores: list[np.ndarray],
    threshold: float,
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
    curves = np.vstack(
        [objective.curve(y, s, sample) for y, s in zip(fold_labels, fold_scores, strict=True)]
    )
    return {
        "threshold": sample.tolist(),
        "value": curves.mean(axis=0).tolist(),
        "folds": curves.tolist(),
    }
