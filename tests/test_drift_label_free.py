"""Label-free estimates, the label-shift detector, and the policy's label-shift path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metasignal.stream.drift.consistency import (
    VoteWindow,
    logit_center,
    shift_features,
    shift_z,
)
from metasignal.stream.drift.detectors import BernoulliCUSUM
from metasignal.stream.drift.expected import expected_confusion, expected_quality
from metasignal.stream.drift.label_free import LabelFreeEstimator
from metasignal.stream.drift.label_shift import PriorShiftCUSUM, score_divergence
from metasignal.stream.drift.monitor import DriftMonitor, LabelShiftAlarm
from metasignal.stream.drift.policy import Decision, DriftPolicy
from metasignal.stream.drift.prior import (
    adjust_posteriors,
    estimate_prior,
    mixture_weight,
    prior_agreement,
)


def calibrated_stream(
    rng: np.random.Generator, rate: float, n: int, *, reference: float = 0.01, skill: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Labels at ``rate`` and scores calibrated at ``reference`` (p(x | y) fixed: label shift)."""
    labels = rng.random(n) < rate
    x = np.where(labels, skill, -skill) + rng.standard_normal(n)
    odds = np.exp(2 * skill * x) * reference / (1 - reference)
    return odds / (1 + odds), labels


# -- prior ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.005, 0.01, 0.02, 0.05])
def test_the_prior_estimate_recovers_the_live_rate_under_label_shift(rate: float) -> None:
    scores, labels = calibrated_stream(np.random.default_rng(1), rate, 400_000)
    estimate = estimate_prior(scores, 0.01)
    assert abs(estimate - labels.mean()) < 0.1 * rate
    # The EM fixed point of Saerens et al.: the adjusted posteriors average to it.
    assert float(adjust_posteriors(scores, 0.01, estimate).mean()) == pytest.approx(estimate)
    # ...while the raw scores' mean moves much less than the rate does.
    assert abs(scores.mean() - 0.01) < abs(estimate - 0.01) or rate == 0.01


def test_mixture_weight_has_mean_one_under_the_reference_and_adjusting_is_bayes() -> None:
    scores, _ = calibrated_stream(np.random.default_rng(2), 0.01, 400_000)
    assert float(mixture_weight(scores, 0.01, 0.03).mean()) == pytest.approx(1.0, abs=0.01)
    s = np.array([0.01, 0.2, 0.9])
    odds = s / (1 - s) * (0.03 / 0.97) / (0.01 / 0.99)
    np.testing.assert_allclose(adjust_posteriors(s, 0.01, 0.03), odds / (1 + odds))
    np.testing.assert_allclose(adjust_posteriors(s, 0.01, 0.01), s)


def test_prior_estimate_edges_and_bad_input() -> None:
    assert estimate_prior(np.zeros(100), 0.01) == pytest.approx(0.0, abs=1e-5)
    assert estimate_prior(np.ones(100), 0.01) == pytest.approx(1.0, abs=1e-5)
    assert math.isnan(estimate_prior(np.array([]), 0.01))
    with pytest.raises(ValueError, match="reference_rate"):
        estimate_prior(np.array([0.1]), 0.0)


def test_agreement_is_small_under_label_shift_and_large_when_p_y_given_x_moved() -> None:
    rng = np.random.default_rng(3)
    scores, labels = calibrated_stream(rng, 0.02, 20_000)
    rate = estimate_prior(scores, 0.01)
    assert abs(prior_agreement(labels, scores, 0.01, rate)) < 3
    # Same votes, labels of a different P(y | x) (twice as many positives for the same x).
    doubled = rng.random(len(scores)) < np.minimum(2 * adjust_posteriors(scores, 0.01, rate), 1)
    assert prior_agreement(doubled, scores, 0.01, rate) > 5


# -- expected quality --------------------------------------------------------------------------
def test_expected_quality_matches_the_realized_quality_of_calibrated_probabilities() -> None:
    rng = np.random.default_rng(4)
    p = rng.beta(0.5, 20, 500_000)
    labels = rng.random(len(p)) < p
    decisions = p >= 0.1
    expected = expected_quality(p, decisions)
    tp = float(np.sum(labels & decisions))
    assert expected.precision == pytest.approx(tp / decisions.sum(), abs=0.01)
    assert expected.recall == pytest.approx(tp / labels.sum(), abs=0.01)
    assert expected.f1 == pytest.approx(2 * tp / (labels.sum() + decisions.sum()), abs=0.01)
    assert expected_confusion(p, decisions)[0] == pytest.approx(p[decisions].sum())


def test_expected_quality_is_nan_without_trades_or_positives() -> None:
    quality = expected_quality(np.zeros(5), np.zeros(5, dtype=bool))
    assert math.isnan(quality.precision) and math.isnan(quality.recall)


# -- sliding window ----------------------------------------------------------------------------
def test_the_window_holds_the_last_votes_in_order_across_wraparound() -> None:
    estimator = LabelFreeEstimator(window=5, warmup=3)
    estimator.update(np.array([0.1, 0.2]), np.array([False, True]))
    assert estimator.reference_rate is None and estimator.estimate() is None
    estimator.update(np.array([0.3, 0.4, 0.5, 0.6]), np.array([False] * 4))
    assert estimator.reference_rate == pytest.approx(0.2)  # mean of the first 3
    scores, decisions = estimator.recent()
    assert scores.tolist() == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert decisions.tolist() == [True, False, False, False, False]
    assert estimator.recent(2)[0].tolist() == [0.5, 0.6]
    estimator.update(np.arange(7) / 10, np.zeros(7, dtype=bool))  # more than the window
    assert estimator.recent()[0].tolist() == [0.2, 0.3, 0.4, 0.5, 0.6]
    assert estimator.events == 13
    estimator.reset()
    assert estimator.events == 0 and estimator.reference_rate is None


def test_window_estimates_track_a_label_shift() -> None:
    rng = np.random.default_rng(5)
    estimator = LabelFreeEstimator(window=20_000, warmup=20_000)
    scores, _ = calibrated_stream(rng, 0.01, 20_000)
    estimator.update(scores, scores >= 0.2)
    scores, labels = calibrated_stream(rng, 0.03, 20_000)
    decisions = scores >= 0.2
    estimator.update(scores, decisions)
    estimate = estimator.estimate()
    assert estimate is not None and estimate.events == 20_000
    assert abs(estimate.positive_rate - labels.mean()) < 0.004
    realized = float(labels[decisions].mean())
    assert abs(estimate.precision - realized) < 0.05
    # Without the prior correction the expected precision would be far too low.
    assert expected_quality(scores, decisions).precision < realized - 0.1


# -- the detector ------------------------------------------------------------------------------
def first_alarm(detector: BernoulliCUSUM | PriorShiftCUSUM, values: np.ndarray) -> int:
    """Index of the first drift, feeding one value at a time (river's API)."""
    for i, value in enumerate(values.tolist()):
        detector.update(int(value) if isinstance(detector, BernoulliCUSUM) else value)
        if detector.drift_detected:
            return i
    return -1


def test_on_outcomes_the_label_shift_cusum_is_the_outcome_cusum() -> None:
    """0/1 scores: the mixture ratio is the Bernoulli one, D is the Bernoulli KL."""
    rng = np.random.default_rng(6)
    outcomes = np.r_[rng.random(20_000) < 0.01, rng.random(20_000) < 0.03].astype(float)
    bernoulli = BernoulliCUSUM(warmup=5_000, track_rate=False, reestimate=False)
    shift = PriorShiftCUSUM(warmup=5_000, track_rate=False, arl0=1e6)
    expected = first_alarm(bernoulli, outcomes)
    found = first_alarm(shift, outcomes)
    assert found == expected > 20_000
    assert shift.drift_direction == bernoulli.drift_direction == "up"


def test_batch_and_one_by_one_updates_agree() -> None:
    rng = np.random.default_rng(7)
    scores = np.r_[calibrated_stream(rng, 0.01, 15_000)[0], calibrated_stream(rng, 0.03, 15_000)[0]]
    batched = PriorShiftCUSUM(warmup=5_000, track_rate=False)
    single = PriorShiftCUSUM(warmup=5_000, track_rate=False)
    at_batch = next(
        start + at
        for start in range(0, len(scores), 700)
        if (at := batched.update_many(scores[start : start + 700])) is not None
    )
    at_single = first_alarm(single, scores)
    assert at_batch == at_single
    assert batched.change_point == single.change_point
    assert abs((batched.change_point or 0) - 15_000) < 2_000


@pytest.mark.parametrize(("after", "direction"), [(0.025, "up"), (0.004, "down")])
def test_the_detector_sees_a_shift_both_ways_after_the_change(after: float, direction: str) -> None:
    rng = np.random.default_rng(8)
    detector = PriorShiftCUSUM(warmup=5_000)
    scores = np.r_[
        calibrated_stream(rng, 0.01, 20_000)[0], calibrated_stream(rng, after, 40_000)[0]
    ]
    alarms = [
        start + at
        for start in range(0, len(scores), 500)
        if (at := detector.update_many(scores[start : start + 500])) is not None
    ]
    assert alarms and alarms[0] > 20_000
    assert detector.n_detections >= 1 and detector.drift_direction == direction


def test_false_alarms_stay_within_the_budget_and_thresholds_follow_it() -> None:
    rng = np.random.default_rng(9)
    scores, _ = calibrated_stream(rng, 0.01, 1_000_000)
    counts = {}
    for arl0 in (1e5, 1e6):
        detector = PriorShiftCUSUM(warmup=5_000, arl0=arl0)
        counts[arl0] = sum(
            detector.update_many(scores[s : s + 500]) is not None
            for s in range(0, len(scores), 500)
        )
    # A budget of one false alarm per 1e5 in-control scores: about 10 here, at most 20.
    assert 2 <= counts[1e5] <= 20
    assert counts[1e6] <= 3
    detector = PriorShiftCUSUM(warmup=5_000)
    detector.update_many(scores[:5_000])
    warm = scores[:5_000]
    d_up = score_divergence(warm, float(warm.mean()), 2.0)
    assert detector.arl0 == 2e6  # twice the budget: see PriorShiftCUSUM
    assert detector.threshold_up == pytest.approx(math.log(2 * detector.arl0 * d_up))


def test_detector_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="ratio_up"):
        PriorShiftCUSUM(ratio_up=0.5)
    with pytest.raises(ValueError, match="both be None"):
        PriorShiftCUSUM(ratio_up=None, ratio_down=None)


# -- monitor -----------------------------------------------------------------------------------
def feed(monitor: DriftMonitor, scores: np.ndarray) -> list[tuple[int, LabelShiftAlarm]]:
    alarms = []
    for start in range(0, len(scores), 500):
        chunk = scores[start : start + 500]
        alarm = monitor.observe(chunk, (chunk >= 0.2).astype(np.int8))
        if alarm is not None:
            alarms.append((start + len(chunk), alarm))
    return alarms


def test_the_monitor_raises_a_label_shift_alarm_with_the_new_rate_from_votes_alone() -> None:
    rng = np.random.default_rng(10)
    monitor = DriftMonitor(members=("a",))
    before, _ = calibrated_stream(rng, 0.01, 20_000)
    after, _ = calibrated_stream(rng, 0.03, 20_000)
    alarms = feed(monitor, np.r_[before, after])
    assert alarms
    at, alarm = alarms[0]
    assert at > 20_000 and alarm.direction == "up"
    assert alarm.reference_rate == pytest.approx(0.01, abs=0.002)
    assert 0.018 < alarm.estimated_rate < 0.045
    assert 0 < alarm.events_since_change < at - 19_000
    assert json.loads(json.dumps(alarm.to_dict())) == alarm.to_dict()  # it goes on the wire
    estimate = monitor.label_free_estimate()
    assert estimate is not None and estimate.positive_rate > 0.02
    assert set(monitor.label_shift_ratios()) == {"up", "down"}
    monitor.reset_quality()  # a new model: its own calibration
    assert monitor.label_free_estimate() is None


def test_the_snapshot_compares_realized_and_label_free_rates_on_the_same_events() -> None:
    rng = np.random.default_rng(11)
    monitor = DriftMonitor(members=("a",), window=3_000, label_free_window=3_000)
    scores, labels = calibrated_stream(rng, 0.01, 6_000)
    feed(monitor, scores)
    for s, y in zip(scores, labels, strict=True):
        monitor.update(label=int(y), score=float(s), decision=int(s >= 0.2), votes=np.array([s]))
    snap = monitor.snapshot()
    assert abs(snap.rate_agreement_z) < 3 and snap.estimated_rate == pytest.approx(0.01, abs=0.005)
    assert snap.to_dict()["estimated_rate"] == snap.estimated_rate


# -- policy ------------------------------------------------------------------------------------
ALARM = LabelShiftAlarm(
    direction="up",
    reference_rate=0.01,
    estimated_rate=0.021,
    events_since_change=3_000,
    events=30_000,
)
MEMBERS = {"a": 0.8, "b": 0.8, "c": 0.8}


def decide(
    policy: DriftPolicy,
    outcomes: int,
    *,
    rate_drift: bool = False,
    member_auc: dict[str, float] = MEMBERS,
    rate: float = math.nan,
    z: float = math.nan,
) -> Decision | None:
    """One outcome snapshot with steady quality (200 trades, F1 and PR-AUC 0.4)."""
    return policy.decide(
        outcomes=outcomes,
        window_positives=200,
        rolling_f1=0.4,
        rolling_pr_auc=0.4,
        member_auc=member_auc,
        rate_drift=rate_drift,
        rate_direction="up" if rate_drift else None,
        estimated_rate=rate,
        rate_agreement_z=z,
    )


def test_a_label_free_alarm_asks_for_a_label_shift_retune_once() -> None:
    policy = DriftPolicy()
    policy.start(model_version=3)
    assert policy.decide_label_free(None) is None
    decision = policy.decide_label_free(ALARM)
    assert decision is not None
    assert (decision.kind, decision.source) == ("label_shift", "label_free")
    assert decision.prior == {
        "reference_rate": 0.01,
        "estimated_rate": 0.021,
        "events_since_change": 3_000,
    }
    assert "0.0210 estimated" in decision.reason
    assert policy.decide_label_free(ALARM) is None  # within the retry period
    later = LabelShiftAlarm("up", 0.01, 0.02, 1_000, ALARM.events + 60_000)
    assert policy.decide_label_free(later) is not None
    assert DriftPolicy(label_free=False).decide_label_free(ALARM) is None


def test_label_free_requests_stop_when_outcomes_disagree_with_the_estimate() -> None:
    policy = DriftPolicy(min_outcomes=100, min_agreement_outcomes=100)
    policy.start(model_version=1)
    decide(policy, 0)
    decide(policy, 500, rate=0.01, z=9.0)
    assert policy.decide_label_free(ALARM) is None
    policy.start(model_version=2)  # a new model: trusted again until shown otherwise
    assert policy.decide_label_free(ALARM) is not None


def test_label_free_requests_stop_once_the_ranking_changed() -> None:
    policy = DriftPolicy(min_outcomes=100, min_positives=1, quality_min_positives=1)
    policy.start(model_version=1)
    decide(policy, 0)
    decide(policy, 200)  # baselines
    decision = decide(policy, 400, member_auc={"a": 0.6, "b": 0.8, "c": 0.8})
    assert decision is not None and decision.kind == "retrain" and decision.source == "outcomes"
    assert policy.decide_label_free(ALARM) is None


def _label_shift_model(policy: DriftPolicy) -> None:
    policy.start(model_version=1)
    assert policy.decide_label_free(ALARM) is not None
    policy.start(model_version=2)  # the trainer's answer is serving


def test_outcomes_confirm_a_label_shift_retune_instead_of_retuning_again() -> None:
    policy = DriftPolicy(min_outcomes=100, min_agreement_outcomes=100, settle_outcomes=0)
    _label_shift_model(policy)
    decide(policy, 0)
    decide(policy, 200, rate=0.02, z=0.3)
    decision = decide(policy, 400, rate_drift=True, rate=0.02, z=0.5)
    assert decision is None and policy.label_shift_confirmed is True


def test_outcomes_that_disagree_fall_back_to_an_outcome_retune() -> None:
    policy = DriftPolicy(min_outcomes=100, min_agreement_outcomes=100, settle_outcomes=0)
    _label_shift_model(policy)
    decide(policy, 0)
    decide(policy, 200, rate=0.02, z=0.3)
    decision = decide(policy, 400, rate=0.02, z=-8.0)
    assert policy.label_shift_confirmed is False
    assert decision is not None and decision.kind == "retune" and decision.source == "outcomes"
    assert "not confirmed" in decision.reason


def test_an_alarm_the_members_do_not_bear_out_is_not_a_label_shift() -> None:
    policy = DriftPolicy()
    policy.start(model_version=1)
    drifted = LabelShiftAlarm("up", 0.01, 0.02, 3_000, 30_000, member_shift_z=6.5)
    assert policy.decide_label_free(drifted) is None
    assert policy.not_label_shift is not None and "6.5 standard errors" in policy.not_label_shift
    consistent = LabelShiftAlarm("up", 0.01, 0.02, 3_000, 31_000, member_shift_z=1.2)
    decision = policy.decide_label_free(consistent)
    assert decision is not None and decision.kind == "label_shift"


def test_the_vote_window_splits_at_the_change_point() -> None:
    window = VoteWindow(reference=4, recent=5)
    scores = np.arange(12) / 100
    votes = np.arange(24).reshape(12, 2) / 100
    window.update(scores[:3], votes[:3])
    assert window.split(2, 3, min_reference=2) is not None
    assert window.split(1, 3, min_reference=2) is None  # too few events before the change
    window.update(scores[3:], votes[3:])
    parts = window.split(9, 12, min_reference=2)
    assert parts is not None
    ref_scores, ref_votes, recent_scores, recent_votes = parts
    # The reference is the first events (not those just before the change)...
    assert ref_scores.tolist() == [0.0, 0.01, 0.02, 0.03] and ref_votes.shape == (4, 2)
    # ...and the recent part every event from the change to the end.
    assert recent_scores.tolist() == [0.09, 0.1, 0.11]
    assert recent_votes.tolist() == [[0.18, 0.19], [0.2, 0.21], [0.22, 0.23]]
    # A change longer ago than the buffer holds: the recent part is what is held.
    parts = window.split(3, 12, min_reference=2)
    assert parts is not None and parts[2].tolist() == [0.07, 0.08, 0.09, 0.1, 0.11]
    assert parts[0].tolist() == [0.0, 0.01, 0.02]  # the reference stops at the change
    # A change inside the reference period cuts the reference there.
    parts = window.split(2, 12, min_reference=2)
    assert parts is not None and parts[0].tolist() == [0.0, 0.01]


def test_member_votes_follow_a_prior_shift_and_not_a_decay() -> None:
    rng = np.random.default_rng(12)

    def events(rate: float, n: int, decayed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = rng.random(n) < rate
        x = np.where(y, 1.5, -1.5)[:, None] + rng.standard_normal((n, 3))
        if decayed:  # member 3 turns to noise with the same marginal
            x[:, 2] = rng.standard_normal(n) + np.where(rng.random(n) < rate, 1.5, -1.5)
        odds = np.exp(3 * x.sum(axis=1)) * 0.01 / 0.99
        return odds / (1 + odds), 1 / (1 + np.exp(-x))

    ref_scores, ref_votes = events(0.01, 30_000)
    center = logit_center(ref_scores, ref_votes)
    reference = shift_features(ref_scores, ref_votes, center)

    def largest_z(scores: np.ndarray, votes: np.ndarray) -> float:
        new = shift_features(scores, votes, center)
        return float(np.abs(shift_z(ref_scores, reference, new, 0.01, 0.03)).max())

    assert largest_z(*events(0.03, 20_000)) < 2.5
    assert largest_z(*events(0.01, 20_000, decayed=True)) > 4
