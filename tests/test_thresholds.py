"""Tests for trainer.thresholds: exactness against brute force, sklearn parity, validation."""

from __future__ import annotations

import doctest
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from metasignal.trainer import thresholds
from metasignal.trainer.thresholds import (
    METRICS,
    ThresholdResult,
    average_precision,
    confusion_at,
    elkan_threshold,
    find_optimal_threshold,
    threshold_curve,
)

# Brute force runs in exact rational arithmetic on the *intended* values (e.g. 3/10), while the
# code under test sees their float approximations, so exact ties in the brute force exercise
# the implementation's floating-point tie tolerance.
DECIMALS = ("0.1", "0.2", "0.25", "0.3", "0.5", "0.7", "1", "2", "3", "10")


@dataclass(frozen=True)
class Case:
    labels: list[int]
    scores: list[Fraction]

    @property
    def y(self) -> np.ndarray:
        return np.array(self.labels)

    @property
    def s(self) -> np.ndarray:
        return np.array([float(x) for x in self.scores])


@st.composite
def tied_cases(draw: st.DrawFn, max_size: int = 40) -> Case:
    """Scores on a coarse grid (many ties) with at least one positive label."""
    n = draw(st.integers(1, max_size))
    denom = draw(st.sampled_from([1, 2, 3, 4, 5, 7, 10]))
    nums = draw(st.lists(st.integers(-denom, 2 * denom), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if not any(labels):
        labels[draw(st.integers(0, n - 1))] = 1
    return Case(labels, [Fraction(k, denom) for k in nums])


decimals = st.sampled_from(DECIMALS).map(Fraction)
bounds = st.sampled_from([3, 7, 20]).flatmap(
    lambda d: st.integers(0, d).map(lambda k: Fraction(k, d))
)


@dataclass(frozen=True)
class Expected:
    threshold: Fraction
    value: Fraction
    feasible: bool


def first_max(values: Sequence[Fraction], allowed: Sequence[bool]) -> int:
    """Index of the first allowed maximum: candidates are in descending threshold order."""
    best = max(v for v, ok in zip(values, allowed, strict=True) if ok)
    return next(
        i for i, (v, ok) in enumerate(zip(values, allowed, strict=True)) if ok and v == best
    )


def brute_force(
    case: Case,
    metric: str,
    *,
    beta: Fraction = Fraction(1),
    min_recall: Fraction = Fraction(0),
    min_precision: Fraction = Fraction(0),
    gain: Fraction = Fraction(1),
    cost: Fraction = Fraction(1),
) -> Expected:
    cands = sorted(set(case.scores), reverse=True)
    n_pos = sum(case.labels)
    prec, rec, fbeta, profit = [], [], [], []
    for t in cands:
        pred = [s >= t for s in case.scores]
        tp = sum(p and y == 1 for p, y in zip(pred, case.labels, strict=True))
        fp = sum(p and y == 0 for p, y in zip(pred, case.labels, strict=True))
        p, r = Fraction(tp, tp + fp), Fraction(tp, n_pos)
        prec.append(p)
        rec.append(r)
        b2 = beta * beta
        fbeta.append((1 + b2) * p * r / (b2 * p + r) if tp else Fraction(0))
        profit.append(gain * tp - cost * fp)
    everywhere = [True] * len(cands)

    if metric in ("f1", "fbeta", "pr_auc"):
        i = first_max(fbeta, everywhere)
        if metric == "pr_auc":
            steps = zip(rec, [Fraction(0), *rec], prec, strict=False)
            ap = sum(((r - r0) * p for r, r0, p in steps), start=Fraction(0))
            return Expected(cands[i], ap, True)
        return Expected(cands[i], fbeta[i], True)
    if metric in ("precision", "recall"):
        values, other, bound = (
            (prec, rec, min_recall) if metric == "precision" else (rec, prec, min_precision)
        )
        ok = [o >= bound for o in other]
        if any(ok):
            i = first_max(values, ok)
            return Expected(cands[i], values[i], True)
        i = first_max(other, everywhere)
        return Expected(cands[i], values[i], False)
    assert metric == "profit"
    elkan = cost / (cost + gain)
    best = max(profit)
    if best > 0:
        tied = [v == best for v in profit]
        i = first_max([-abs(t - elkan) for t in cands], tied)
        return Expected(cands[i], profit[i], True)
    above = [i for i, t in enumerate(cands) if t >= elkan]
    i = above[-1] if above else 0
    return Expected(cands[i], profit[i], False)


def assert_matches(result: ThresholdResult, expected: Expected, case: Case) -> None:
    assert result.threshold == float(expected.threshold)
    assert result.feasible == expected.feasible
    assert result.value == pytest.approx(float(expected.value), rel=1e-9, abs=1e-12)
    tp, fp, fn, _ = confusion_at(case.y, case.s, result.threshold)
    assert result.n_predicted == tp + fp
    assert result.precision == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert result.recall == pytest.approx(tp / (tp + fn), rel=1e-12)
    assert result.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)


@settings(deadline=None)
@given(case=tied_cases(), metric=st.sampled_from(["f1", "pr_auc"]))
def test_unparametrised_metrics_match_brute_force(case: Case, metric: str) -> None:
    result = find_optimal_threshold(case.y, case.s, metric=metric)
    assert_matches(result, brute_force(case, metric), case)


@settings(deadline=None)
@given(case=tied_cases(), beta=decimals)
def test_fbeta_matches_brute_force(case: Case, beta: Fraction) -> None:
    result = find_optimal_threshold(case.y, case.s, metric="fbeta", beta=float(beta))
    assert_matches(result, brute_force(case, "fbeta", beta=beta), case)


@settings(deadline=None)
@given(case=tied_cases(), min_recall=bounds)
def test_precision_with_min_recall_matches_brute_force(case: Case, min_recall: Fraction) -> None:
    result = find_optimal_threshold(
        case.y, case.s, metric="precision", min_recall=float(min_recall)
    )
    assert_matches(result, brute_force(case, "precision", min_recall=min_recall), case)


@settings(deadline=None)
@given(case=tied_cases(), min_precision=bounds)
def test_recall_with_min_precision_matches_brute_force(case: Case, min_precision: Fraction) -> None:
    result = find_optimal_threshold(
        case.y, case.s, metric="recall", min_precision=float(min_precision)
    )
    assert_matches(result, brute_force(case, "recall", min_precision=min_precision), case)


@settings(deadline=None)
@given(case=tied_cases(), gain=decimals, cost=decimals)
def test_profit_matches_brute_force(case: Case, gain: Fraction, cost: Fraction) -> None:
    result = find_optimal_threshold(
        case.y, case.s, metric="profit", gain=float(gain), cost=float(cost)
    )
    assert_matches(result, brute_force(case, "profit", gain=gain, cost=cost), case)


finite_scores = st.floats(-1e9, 1e9, allow_nan=False)


@st.composite
def float_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Arbitrary float scores or tie-heavy grid scores, with at least one positive."""
    n = draw(st.integers(1, 60))
    pool = draw(st.lists(finite_scores, min_size=1, max_size=draw(st.sampled_from([3, n]))))
    scores = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    if not any(labels):
        labels[draw(st.integers(0, n - 1))] = 1
    return np.array(labels), np.array(scores)


@settings(deadline=None)
@given(data=float_cases())
def test_average_precision_equals_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@settings(deadline=None)
@given(data=float_cases(), metric=st.sampled_from(["f1", "precision", "recall", "profit"]))
def test_result_metrics_equal_sklearn_on_induced_predictions(
    data: tuple[np.ndarray, np.ndarray], metric: str
) -> None:
    y, s = data
    result = find_optimal_threshold(y, s, metric=metric)
    pred = (s >= result.threshold).astype(int)
    assert result.threshold in s
    assert result.n_predicted == pred.sum()
    assert result.f1 == pytest.approx(f1_score(y, pred), abs=1e-12)
    assert result.precision == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert result.recall == pytest.approx(recall_score(y, pred), abs=1e-12)
    if metric == "f1":
        assert result.value == pytest.approx(f1_score(y, pred), abs=1e-12)


@settings(deadline=None)
@given(data=float_cases(), threshold=finite_scores)
def test_confusion_at_equals_sklearn(data: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    y, s = data
    tn, fp, fn, tp = confusion_matrix(y, s >= threshold, labels=[0, 1]).ravel()
    assert confusion_at(y, s, threshold) == (tp, fp, fn, tn)


@settings(deadline=None)
@given(case=tied_cases(), metric=st.sampled_from(METRICS))
def test_curve_is_consistent_with_optimum(case: Case, metric: str) -> None:
    t, v = threshold_curve(case.y, case.s, metric=metric)
    result = find_optimal_threshold(case.y, case.s, metric=metric)
    np.testing.assert_array_equal(t, np.unique(case.s)[::-1])
    assert v.shape == t.shape
    at_result = v[t == result.threshold].item()
    expected = result.f1 if metric == "pr_auc" else result.value
    assert at_result == pytest.approx(expected, rel=1e-12)
    if result.feasible:
        assert at_result == pytest.approx(np.nanmax(v), rel=1e-12)


def test_pr_auc_returns_average_precision_at_the_f1_threshold() -> None:
    y, s = [1, 0, 1, 1, 0, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    result = find_optimal_threshold(y, s, metric="pr_auc")
    assert result.value == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert result.threshold == find_optimal_threshold(y, s, metric="f1").threshold


def test_objective_ties_choose_the_higher_threshold() -> None:
    # Precision is 1.0 at both 0.9 and 0.8; the higher threshold trades less.
    result = find_optimal_threshold([1, 1, 0], [0.9, 0.8, 0.1], metric="precision")
    assert (result.threshold, result.value, result.n_predicted) == (0.9, 1.0, 1)


def test_tied_scores_are_one_candidate() -> None:
    # The tie at 0.5 mixes a positive and a negative: 0.5 admits both or neither, so the
    # precision-1 decision "only the positive" is not achievable.
    result = find_optimal_threshold([1, 0, 0], [0.5, 0.5, 0.1], metric="precision")
    assert (result.threshold, result.precision, result.n_predicted) == (0.5, 0.5, 2)


@pytest.mark.parametrize(
    ("gain", "cost", "expected"),
    [(1.0, 1.0, 0.5), (3.0, 1.0, 0.25), (1.0, 3.0, 0.75), (9.0, 1.0, 0.1), (0.5, 2.0, 0.8)],
)
def test_elkan_threshold_values(gain: float, cost: float, expected: float) -> None:
    assert elkan_threshold(gain, cost) == pytest.approx(expected, rel=1e-15)


def test_recall_constraint_infeasible_returns_highest_precision() -> None:
    # The top score ties a positive with a negative, so precision never reaches 1.
    y, s = [1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1]
    result = find_optimal_threshold(y, s, metric="recall", min_precision=1.0)
    assert not result.feasible
    assert result.precision == 2 / 3
    assert result.threshold == 0.5  # precision 1/2 at 0.9, 2/3 at 0.5, 1/2 at 0.1
    _, v = threshold_curve(y, s, metric="recall", min_precision=1.0)
    assert np.isnan(v).all()


def test_recall_constraint_feasible_is_reported_feasible() -> None:
    result = find_optimal_threshold(
        [1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1], metric="recall", min_precision=0.6
    )
    assert result.feasible and result.threshold == 0.5 and result.recall == 1.0


def test_min_recall_one_is_always_feasible() -> None:
    # The lowest positive's score predicts every positive, so recall 1 is always reachable.
    result = find_optimal_threshold(
        [0, 1, 0, 1, 0], [0.9, 0.8, 0.6, 0.4, 0.2], metric="precision", min_recall=1.0
    )
    assert result.feasible and result.threshold == 0.4 and result.value == 0.5


def test_profit_ties_break_toward_elkan() -> None:
    # Profit is 1 at both 0.9 and 0.55; Elkan's threshold for gain == cost is 0.5.
    y, s = [1, 0, 1, 0], [0.9, 0.6, 0.55, 0.2]
    result = find_optimal_threshold(y, s, metric="profit")
    assert (result.threshold, result.value, result.feasible) == (0.55, 1.0, True)


def test_profit_equidistant_from_elkan_chooses_higher_threshold() -> None:
    # As floats 0.8 - 0.5 > 0.5 - 0.2, which would pick 0.2; the tolerance calls it a tie.
    assert 0.8 - 0.5 > 0.5 - 0.2
    result = find_optimal_threshold([1, 0, 1], [0.8, 0.5, 0.2], metric="profit")
    assert (result.threshold, result.value) == (0.8, 1.0)


def test_profit_float_ties_use_tolerance() -> None:
    # gain*TP - cost*FP: 0.1*3 - 0 and 0.1*5 - 0.2*1 are both 0.3 but differ as floats.
    assert 0.1 * 3 != 0.1 * 5 - 0.2 * 1
    y, s = [1, 1, 1, 1, 0, 1], [0.9, 0.9, 0.9, 2 / 3, 2 / 3, 2 / 3]
    result = find_optimal_threshold(y, s, metric="profit", gain=0.1, cost=0.2)
    # Tied at 0.3; Elkan is 2/3, so the tie goes to the threshold at Elkan's.
    assert result.threshold == 2 / 3 and result.feasible


def test_unprofitable_returns_closest_threshold_above_elkan() -> None:
    # gain 1, cost 5: Elkan = 5/6; every threshold loses money.
    y, s = [0, 0, 1, 0], [0.95, 0.9, 0.8, 0.1]
    result = find_optimal_threshold(y, s, metric="profit", gain=1.0, cost=5.0)
    assert (result.threshold, result.feasible) == (0.9, False)
    assert result.value == -10.0


def test_unprofitable_with_all_scores_below_elkan_returns_highest_score() -> None:
    result = find_optimal_threshold([0, 1], [0.3, 0.2], metric="profit", gain=1.0, cost=9.0)
    assert (result.threshold, result.feasible, result.n_predicted) == (0.3, False, 1)


def test_to_dict_has_plain_python_values() -> None:
    d = find_optimal_threshold(np.array([1, 0, 1]), np.array([0.9, 0.4, 0.6])).to_dict()
    assert set(d) == {
        "threshold",
        "metric",
        "value",
        "precision",
        "recall",
        "f1",
        "n_predicted",
        "feasible",
    }
    assert all(type(v) in (float, int, str, bool) for v in d.values())
    assert d["n_predicted"] == 2 and d["metric"] == "f1"


def test_accepts_bool_labels_and_integer_scores() -> None:
    result = find_optimal_threshold(np.array([True, False, True]), np.array([3, 2, 1]))
    assert result.threshold == 1.0 and result.f1 == 0.8


def test_confusion_at_allows_no_positives() -> None:
    assert confusion_at([0, 0, 0], [0.1, 0.5, 0.9], 0.5) == (0, 2, 0, 1)


GOOD_Y, GOOD_S = [0, 1, 1], [0.1, 0.5, 0.9]


@pytest.mark.parametrize(
    ("y", "s", "kwargs", "match"),
    [
        ([0, 1], [0.1], {}, "same length"),
        ([], [], {}, "empty"),
        ([[0, 1]], [[0.1, 0.2]], {}, "1-D"),
        (GOOD_Y, [0.1, float("nan"), 0.9], {}, "finite"),
        (GOOD_Y, [0.1, float("inf"), 0.9], {}, "finite"),
        (GOOD_Y, ["a", "b", "c"], {}, "real numbers"),
        ([0, 2, 1], GOOD_S, {}, "0 and 1"),
        ([0, 0.5, 1], GOOD_S, {}, "0 and 1"),
        (["0", "1", "1"], GOOD_S, {}, "0 and 1"),
        ([0, 0, 0], GOOD_S, {}, "no positive"),
        (GOOD_Y, GOOD_S, {"metric": "accuracy"}, "unknown metric"),
        (GOOD_Y, GOOD_S, {"metric": "fbeta", "beta": 0.0}, "beta"),
        (GOOD_Y, GOOD_S, {"metric": "fbeta", "beta": -1.0}, "beta"),
        (GOOD_Y, GOOD_S, {"metric": "fbeta", "beta": math.nan}, "beta"),
        (GOOD_Y, GOOD_S, {"metric": "precision", "min_recall": -0.1}, "min_recall"),
        (GOOD_Y, GOOD_S, {"metric": "precision", "min_recall": 1.1}, "min_recall"),
        (GOOD_Y, GOOD_S, {"metric": "recall", "min_precision": 1.5}, "min_precision"),
        (GOOD_Y, GOOD_S, {"metric": "recall", "min_precision": math.nan}, "min_precision"),
        (GOOD_Y, GOOD_S, {"metric": "f1", "min_recall": 0.5}, "only applies"),
        (GOOD_Y, GOOD_S, {"metric": "precision", "min_precision": 0.5}, "only applies"),
        (GOOD_Y, GOOD_S, {"metric": "profit", "gain": 0.0}, "gain"),
        (GOOD_Y, GOOD_S, {"metric": "profit", "cost": -1.0}, "cost"),
        (GOOD_Y, GOOD_S, {"metric": "profit", "cost": math.inf}, "cost"),
    ],
)
@pytest.mark.parametrize("func", [find_optimal_threshold, threshold_curve])
def test_invalid_inputs_raise(
    func: Any, y: Any, s: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        func(y, s, **kwargs)


@pytest.mark.parametrize(("gain", "cost"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (math.nan, 1.0)])
def test_elkan_threshold_rejects_non_positive(gain: float, cost: float) -> None:
    with pytest.raises(ValueError, match=r"gain|cost"):
        elkan_threshold(gain, cost)


def test_average_precision_rejects_no_positives() -> None:
    with pytest.raises(ValueError, match="no positive"):
        average_precision([0, 0], [0.1, 0.2])


def test_confusion_at_rejects_nan_threshold() -> None:
    with pytest.raises(ValueError, match="NaN"):
        confusion_at(GOOD_Y, GOOD_S, math.nan)


def test_docstring_examples() -> None:
    failures, tried = doctest.testmod(thresholds, raise_on_error=False)
    assert tried > 0 and failures == 0
