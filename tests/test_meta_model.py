from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from metasignal.stream.artifact import load_artifact, sign_artifact
from metasignal.stream.scoring import CompiledModel
from metasignal.trainer.calibration import fit_platt
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.preprocessing import LogitStandardizer
from metasignal.trainer.strategies import SmoteLogisticRegression
from metasignal.trainer.synthetic import Committee, generate_committee
from metasignal.trainer.walk_forward import walk_forward_splits
from tests.conftest import vote_table


@pytest.mark.parametrize(
    "estimator",
    [LogitStandardizer(kind="raw"), LogitStandardizer(), SmoteLogisticRegression()],
    ids=["standardizer-raw", "standardizer-logit", "smote"],
)
def test_components_pass_check_estimator(estimator: object) -> None:
    check_estimator(estimator)


@pytest.mark.parametrize("strategy", ["optimal_threshold", "smote_enhanced", "focal_loss"])
def test_numpy_scorer_reproduces_estimator_probabilities(
    committee: Committee, strategy: str
) -> None:
    table = vote_table(committee)
    outcome = fit_meta_model(table, FitConfig(estimator={"strategy": strategy}))
    artifact = load_artifact(sign_artifact(outcome.artifact, b"k"), keys=[b"k"])
    scorer = CompiledModel.from_artifact(artifact)
    votes = committee.votes.copy()
    votes[::7, 2] = np.nan  # a member missing now and then: imputed identically
    expected = outcome.model.predict_proba(votes)[:, 1]
    np.testing.assert_allclose(scorer.predict_proba(votes), expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(
        scorer.decide(scorer.predict_proba(votes)), outcome.model.predict(votes)
    )


def test_threshold_is_tuned_not_half_and_calibration_tracks_base_rate(
    committee: Committee,
) -> None:
    model = MetaModelClassifier(strategy="optimal_threshold").fit(committee.votes, committee.labels)
    assert model.threshold_ != 0.5
    # Balanced weights imply a 50 % base rate; calibrated scores must come back near 3 %.
    p = model.predict_proba(committee.votes)[:, 1]
    assert abs(p.mean() - committee.labels.mean()) < 0.01
    raw = model.decision_function(committee.votes)
    assert (1 / (1 + np.exp(-raw))).mean() > 0.1


def test_walk_forward_never_trains_on_the_future() -> None:
    for train, val in walk_forward_splits(1000, n_splits=5, gap=10):
        assert train.max() + 10 < val.min()


def test_resampling_only_sees_training_fold_rows(committee: Committee) -> None:
    seen: list[int] = []
    original = SmoteLogisticRegression.fit

    def recording_fit(self: SmoteLogisticRegression, X: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        seen.append(len(X))
        return original(self, X, y)

    n = 6000
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SmoteLogisticRegression, "fit", recording_fit)
        MetaModelClassifier(strategy="smote_enhanced").fit(
            committee.votes[:n], committee.labels[:n]
        )
    fold_sizes = [len(train) for train, _ in walk_forward_splits(n, n_splits=5)]
    assert seen == [*fold_sizes, n]


def test_auto_picks_by_positive_rate_and_guard_records_evidence() -> None:
    rare = generate_committee(n_events=30_000, positive_rate=0.01, seed=3)
    model = MetaModelClassifier(strategy="auto").fit(rare.votes, rare.labels)
    assert model.strategy_reason_.startswith("auto: positive rate")
    assert "smote_enhanced" in model.strategy_reason_
    assert "fold noise" in model.strategy_reason_
    assert set(model.walk_forward_) == {"smote_enhanced", "optimal_threshold"}
    assert model.strategy_ in model.walk_forward_


def test_select_scores_every_strategy_and_picks_the_best(committee: Committee) -> None:
    model = MetaModelClassifier(strategy="select").fit(committee.votes, committee.labels)
    table = model.walk_forward_
    assert set(table) == {"optimal_threshold", "smote_enhanced", "focal_loss", "plain_logistic"}
    assert all(0.0 <= r.pooled <= 1.0 for r in table.values())
    best = max(table.values(), key=lambda r: r.pooled)
    if model.strategy_ != best.strategy:
        # Only the anchor may stand in for the best, and only when the lead is within noise.
        assert model.strategy_ == "optimal_threshold"
        assert "within one standard error" in model.strategy_reason_
    else:
        assert "beats" in model.strategy_reason_ or best.strategy == "optimal_threshold"


def test_smote_fallback_ladder_is_recorded() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = np.zeros(300, dtype=int)
    y[[10, 20, 30]] = 1
    assert SmoteLogisticRegression().fit(X, y).sampler_ == "SMOTE(k_neighbors=2)"
    y1 = np.zeros(300, dtype=int)
    y1[5] = 1
    single = SmoteLogisticRegression().fit(X, y1)
    assert single.sampler_ == "RandomOverSampler"
    assert "random oversampling" in single.fallbacks_[0]
    balanced = SmoteLogisticRegression().fit(X, (np.arange(300) % 2 == 0).astype(int))
    assert balanced.sampler_ == "none"
    assert "class weights only" in balanced.fallbacks_[0]


def test_platt_recovers_known_map() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=50_000)
    y = (rng.random(50_000) < 1 / (1 + np.exp(-(1.5 * raw - 4)))).astype(int)
    cal = fit_platt(raw, y)
    assert cal.slope == pytest.approx(1.5, abs=0.1)
    assert cal.intercept == pytest.approx(-4.0, abs=0.15)


def test_holdout_is_reported_from_later_rows_and_model_refitted_on_all(
    committee: Committee,
) -> None:
    table = vote_table(committee)
    outcome = fit_meta_model(table, FitConfig(holdout=0.25))
    report = outcome.report
    assert report["holdout"]["n"] == 5000
    assert report["training"]["rows"] == 15000
    assert report["holdout"]["positives"] == int(committee.labels[15000:].sum())
    assert "refitted on all 20000 rows" in report["published"]
    assert outcome.artifact["training"]["rows"] == 20000
    assert 0.2 < report["holdout"]["f1"] < 0.95
    assert report["holdout"]["brier"] < committee.labels.mean()


def test_select_keeps_the_anchor_unless_the_lead_beats_fold_noise() -> None:
    from metasignal.trainer.calibration import PlattCalibration
    from metasignal.trainer.selection import select_best
    from metasignal.trainer.walk_forward import WalkForwardResult

    def result(name: str, values: list[float]) -> WalkForwardResult:
        return WalkForwardResult(
            strategy=name,
            calibration=PlattCalibration(1.0, 0.0),
            threshold=0.5,
            fold_thresholds=[0.5] * len(values),
            fold_values=values,
            oof_index=np.arange(1),
            oof_scores=np.zeros(1),
            fit_seconds=0.0,
        )

    # Lead 0.04, fold differences [0.2, -0.2, -0.1, 0.1, 0.2]: standard error 0.081.
    noisy = {
        "optimal_threshold": result("optimal_threshold", [0.3, 0.2, 0.5, 0.0, 0.4]),
        "plain_logistic": result("plain_logistic", [0.5, 0.0, 0.4, 0.1, 0.6]),
    }
    assert select_best(noisy)[0] == "optimal_threshold"
    # The pooled value ranks when present: a lead in pooled F1 the fold noise cannot explain.
    steady = {
        "optimal_threshold": result("optimal_threshold", [0.30, 0.32, 0.31, 0.30, 0.29]),
        "smote_enhanced": result("smote_enhanced", [0.31, 0.33, 0.32, 0.31, 0.30]),
    }
    steady["optimal_threshold"].pooled, steady["smote_enhanced"].pooled = 0.30, 0.33
    assert select_best(steady)[0] == "smote_enhanced"
    steady["smote_enhanced"].pooled = 0.295
    assert select_best(steady)[0] == "optimal_threshold"
    clear = {
        "optimal_threshold": result("optimal_threshold", [0.30, 0.31, 0.29, 0.30, 0.32]),
        "focal_loss": result("focal_loss", [0.40, 0.41, 0.40, 0.42, 0.41]),
    }
    assert select_best(clear)[0] == "focal_loss"


def test_threshold_maximises_the_fold_averaged_objective() -> None:
    from metasignal.trainer.objective import Objective
    from metasignal.trainer.walk_forward import pooled_threshold

    rng = np.random.default_rng(3)
    folds = []
    for _ in range(4):
        y = (rng.random(400) < 0.1).astype(int)
        folds.append((y, np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)))
    labels, scores = [f[0] for f in folds], [f[1] for f in folds]
    objective = Objective(metric="f1")
    threshold, values = pooled_threshold(objective, labels, scores)
    candidates = np.unique(np.concatenate(scores))
    # Brute force: the candidate with the best mean F1 over the folds (highest on ties).
    means = np.array([np.mean([objective.value_at(y, s, t) for y, s in folds]) for t in candidates])
    assert threshold == candidates[np.flatnonzero(np.isclose(means, means.max()))[-1]]
    # Each fold is graded at the threshold chosen without it.
    for k, (y, s) in enumerate(folds):
        rest = [f for j, f in enumerate(folds) if j != k]
        rest_means = np.array(
            [np.mean([objective.value_at(yy, ss, t) for yy, ss in rest]) for t in candidates]
        )
        chosen = candidates[np.flatnonzero(np.isclose(rest_means, rest_means.max()))[-1]]
        assert values[k] == pytest.approx(objective.value_at(y, s, chosen))


def test_pooled_value_sums_the_folds_counts_before_the_ratio() -> None:
    from metasignal.trainer.objective import Objective
    from metasignal.trainer.walk_forward import pooled_value

    # Fold 1: 1 trade, 1 hit, 1 positive (F1 1.0); fold 2: 10 trades, 2 hits, 10 positives.
    y1, s1 = np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2])
    y2 = np.array([1] * 10 + [0] * 30)
    s2 = np.array([0.9, 0.9] + [0.1] * 8 + [0.9] * 8 + [0.1] * 22)
    f1 = pooled_value(Objective(metric="f1"), [y1, y2], [s1, s2], [0.5, 0.5])
    # Pooled: TP 3, trades 11, positives 11 -> 2 * 3 / 22; the mean of the folds' F1 is 0.6.
    assert f1 == pytest.approx(6 / 22)
    payoff = [np.array([2.0, -1.0, -1.0]), np.where(s2 > 0.5, -0.5, 0.0)]
    profit = pooled_value(Objective(metric="profit"), [y1, y2], [s1, s2], [0.5, 0.5], payoff)
    assert profit == pytest.approx((2.0 - 5.0) / 43)


@pytest.mark.parametrize("metric", ["f1", "fbeta", "precision", "recall", "profit"])
def test_objective_curve_equals_value_at(metric: str) -> None:
    from metasignal.trainer.objective import Objective

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    s = np.round(rng.random(300), 2)
    objective = Objective(metric=metric, beta=2.0, min_recall=0.5, min_precision=0.3, cost=0.5)
    thresholds = np.unique(s)
    expected = [objective.value_at(y, s, t) for t in thresholds]
    np.testing.assert_allclose(objective.curve(y, s, thresholds), expected, atol=1e-12)
