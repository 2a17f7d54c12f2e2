"""The label-shift gate: non-inferiority on the metric (paired), calibration must improve."""

from __future__ import annotations

import numpy as np

from metasignal.stream.drift.promotion import paired_f1_difference
from metasignal.trainer.label_shift import class_weights, judge_label_shift

REFERENCE, ESTIMATED = 0.01, 0.04


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1.0 - p))


def expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gate_rows(seed: int = 3, n: int = 4_500) -> tuple[np.ndarray, np.ndarray]:
    """Pre-shift rows at 1 %, a champion calibrated to that rate (logistic in a score)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < REFERENCE).astype(np.int8)
    score = rng.normal(np.where(labels == 1, 2.5, 0.0), 1.0)
    # log-odds of a 1 % base rate plus the likelihood ratio of N(2.5, 1) vs N(0, 1)
    champion = expit(logit(REFERENCE) + 2.5 * score - 2.5**2 / 2)
    return labels, champion


def shifted(p: np.ndarray, to: float) -> np.ndarray:
    return expit(logit(p) + logit(to) - logit(REFERENCE))


def test_a_tie_within_noise_with_better_calibration_passes() -> None:
    labels, champion = gate_rows()
    candidate = shifted(champion, ESTIMATED)
    weights = class_weights(labels, ESTIMATED)
    # The candidate's threshold: a few events from the champion's (in the same ranking).
    champion_threshold = 0.5
    candidate_threshold = float(np.quantile(candidate[champion >= 0.5], 0.1))
    evidence, refusal = judge_label_shift(
        labels, (champion, champion_threshold), (candidate, candidate_threshold), weights=weights
    )
    assert refusal is None
    assert evidence["difference"] != 0.0 and abs(evidence["difference"]) < 0.05
    assert (
        evidence["upper_bound"] > 0.0 > evidence["difference"] - 1.645 * evidence["standard_error"]
    )
    assert evidence["calibration_after"] < evidence["calibration_before"]
    assert evidence["alpha"] == 0.05


def test_a_clearly_worse_candidate_is_refused() -> None:
    labels, champion = gate_rows()
    candidate = shifted(champion, ESTIMATED)
    weights = class_weights(labels, ESTIMATED)
    # A threshold that trades on almost everything: precision collapses.
    evidence, refusal = judge_label_shift(
        labels, (champion, 0.5), (candidate, float(np.quantile(candidate, 0.5))), weights=weights
    )
    assert refusal is not None and refusal.startswith("candidate significantly worse")
    assert evidence["upper_bound"] < 0.0 and evidence["p_value"] < 0.05
    assert evidence["calibration_after"] < evidence["calibration_before"]  # not the reason


def test_a_candidate_whose_calibration_does_not_improve_is_refused() -> None:
    labels, champion = gate_rows()
    wrong_way = shifted(champion, 0.0025)  # the prior moved down instead of up
    weights = class_weights(labels, ESTIMATED)
    # Same decisions as the champion (same ranking, matching threshold): no metric gap.
    threshold = float(shifted(np.array([0.5]), 0.0025)[0])
    evidence, refusal = judge_label_shift(
        labels, (champion, 0.5), (wrong_way, threshold), weights=weights
    )
    assert evidence["difference"] == 0.0
    assert refusal is not None and refusal.startswith("calibration does not improve")
    assert evidence["calibration_after"] >= evidence["calibration_before"]


def test_weighted_paired_f1_is_the_ratio_of_weighted_counts() -> None:
    counts = np.array([900, 20, 30, 10, 20, 10, 5, 5])
    by_label = np.array([1, 1, 1, 1, 4, 4, 4, 4], dtype=np.float64)
    weighted = paired_f1_difference(counts, weights=by_label)
    replicated = paired_f1_difference(counts * by_label)
    assert np.isclose(weighted.incumbent_f1, replicated.incumbent_f1)
    assert np.isclose(weighted.challenger_f1, replicated.challenger_f1)
    # Weights that are all equal change nothing, the standard error included.
    plain, scaled = (
        paired_f1_difference(counts),
        paired_f1_difference(counts, weights=3 * np.ones(8)),
    )
    assert np.isclose(plain.standard_error, scaled.standard_error)
    # Up-weighting the rare class on the same events adds no information: a wider error.
    assert weighted.standard_error > replicated.standard_error
