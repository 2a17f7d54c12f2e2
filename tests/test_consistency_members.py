"""Concept drift is not label shift: a decaying member of a strong committee is told apart.

The committees come from the synthetic generator at high skill (8 strong members, so one
member's decay hardly moves the committee's score distribution): the case the moments
check alone missed. Scores are a logistic regression on the vote logits fitted on a
stationary stream, so they are calibrated at the 1 % the streams start at.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from metasignal.stream.drift.consistency import (
    LeaveOneOut,
    bonferroni_p,
    member_contrasts,
    shift_z,
)
from metasignal.stream.drift.monitor import DriftMonitor, LabelShiftAlarm
from metasignal.stream.drift.policy import DriftPolicy
from metasignal.stream.drift.prior import estimate_prior
from metasignal.trainer.synthetic import Committee, RateStep, generate_committee

SKILL = 4.0
RATE = 0.01


def _logits(votes: np.ndarray) -> np.ndarray:
    v = np.clip(votes, 1e-6, 1 - 1e-6)
    return np.log(v / (1 - v))


@pytest.fixture(scope="module")
def scorer() -> LogisticRegression:
    train = generate_committee(n_events=60_000, positive_rate=RATE, skill=SKILL, seed=11)
    return LogisticRegression(C=1.0, max_iter=1_000).fit(_logits(train.votes), train.labels)


def _scores(model: LogisticRegression, committee: Committee) -> np.ndarray:
    return np.asarray(model.predict_proba(_logits(committee.votes))[:, 1])


def _decaying(seed: int) -> Committee:
    return generate_committee(
        n_events=60_000,
        positive_rate=RATE,
        skill=SKILL,
        seed=seed,
        decaying_member=7,
        decay_start=1 / 3,
    )


def _label_shift(seed: int, rate: float) -> Committee:
    return generate_committee(
        n_events=60_000,
        positive_rate=RATE,
        skill=SKILL,
        seed=seed,
        rate_steps=[RateStep(1 / 3, rate)],
        label_shift=True,
    )


def _member_p(model: LogisticRegression, committee: Committee) -> tuple[int, float]:
    """Reference: the first 20,000 events; recent: 30,000-40,000."""
    scores = _scores(model, committee)
    ref_scores, ref_votes = scores[:20_000], committee.votes[:20_000]
    new_scores, new_votes = scores[30_000:40_000], committee.votes[30_000:40_000]
    reference_rate = float(ref_scores.mean())
    colleagues = LeaveOneOut.fit(ref_scores, ref_votes)
    z = shift_z(
        ref_scores,
        member_contrasts(colleagues, ref_scores, ref_votes),
        member_contrasts(colleagues, new_scores, new_votes),
        reference_rate,
        estimate_prior(new_scores, reference_rate),
        recent_scores=new_scores,
    )
    return int(np.nanargmax(np.abs(z))), bonferroni_p(z)


def test_a_decaying_member_of_a_strong_committee_is_singled_out(
    scorer: LogisticRegression,
) -> None:
    for seed in (21, 22, 23):
        worst, p = _member_p(scorer, _decaying(seed))
        assert worst == 7 and p < 1e-4, (seed, worst, p)


@pytest.mark.parametrize("rate", [0.005, 0.02])
def test_under_a_pure_label_shift_every_member_agrees(
    scorer: LogisticRegression, rate: float
) -> None:
    for seed in (31, 32, 33):
        _, p = _member_p(scorer, _label_shift(seed, rate))
        assert p > 0.01, (seed, p)


def test_the_leave_one_out_score_is_calibrated_on_the_reference(
    scorer: LogisticRegression,
) -> None:
    committee = generate_committee(n_events=40_000, positive_rate=RATE, skill=SKILL, seed=41)
    scores = _scores(scorer, committee)
    colleagues = LeaveOneOut.fit(scores[:20_000], committee.votes[:20_000])
    held_out = colleagues.predict(committee.votes[20_000:])
    labels = committee.labels[20_000:]
    # Each column is P(trade | the other members): its mean is the rate, and it ranks.
    assert held_out.shape == (20_000, 8)
    np.testing.assert_allclose(held_out.mean(axis=0), labels.mean(), atol=0.003)
    top = held_out[:, 0] > np.quantile(held_out[:, 0], 0.99)
    assert labels[top].mean() > 20 * labels.mean()
    # A missing vote counts as the member's reference mean instead of breaking the row.
    votes = committee.votes[20_000:20_010].copy()
    votes[:, 3] = math.nan
    assert np.isfinite(colleagues.predict(votes)).all()


def _requests(
    model: LogisticRegression, committee: Committee
) -> tuple[list[str], list[LabelShiftAlarm]]:
    """Kinds of the label-free requests made, and the alarms."""
    scores = _scores(model, committee)
    decisions = (scores >= 0.2).astype(np.int8)
    monitor = DriftMonitor(members=committee.members)
    policy = DriftPolicy()
    policy.start(model_version=1)
    kinds, alarms = [], []
    for start in range(0, len(scores), 500):
        batch = slice(start, start + 500)
        alarm = monitor.observe(scores[batch], decisions[batch], committee.votes[batch])
        decision = policy.decide_label_free(alarm)
        if decision is not None:
            kinds.append(decision.kind)
        if alarm is not None:
            alarms.append(alarm)
    return kinds, alarms


def test_the_policy_asks_no_label_shift_retune_for_a_decaying_member(
    scorer: LogisticRegression,
) -> None:
    for seed in (24, 25):
        kinds, alarms = _requests(scorer, _decaying(seed))
        assert kinds == []
        # The detector did fire, and the member check alone would stop every alarm: it
        # names the member that moved.
        assert alarms
        for alarm in alarms:
            assert alarm.member_contrast == "m8" and alarm.member_contrast_p < 0.01, alarm


def test_the_policy_still_asks_for_a_label_shift_retune_on_a_label_shift(
    scorer: LogisticRegression,
) -> None:
    kinds, alarms = _requests(scorer, _label_shift(34, 0.02))
    assert kinds == ["label_shift"], alarms


def test_the_member_check_vetoes_by_its_family_wise_p_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = DriftPolicy()
    policy.start(model_version=1)
    decayed = LabelShiftAlarm(
        direction="down",
        reference_rate=0.01,
        estimated_rate=0.005,
        events_since_change=9_000,
        events=40_000,
        member_shift_z=1.0,
        member_contrast="m8",
        member_contrast_z=5.1,
        member_contrast_p=2.7e-6,
    )
    with caplog.at_level(logging.WARNING, logger="metasignal.stream.drift.policy"):
        assert policy.decide_label_free(decayed) is None
    assert policy.not_label_shift is not None and "+5.1 standard errors" in policy.not_label_shift
    # Operators see why no re-tune was asked for: the member that changed.
    (record,) = caplog.records
    assert "not acted on" in record.getMessage() and "without m8" in record.getMessage()
    shifted = LabelShiftAlarm(
        direction="down",
        reference_rate=0.01,
        estimated_rate=0.005,
        events_since_change=9_000,
        events=41_000,
        member_shift_z=1.0,
        member_contrast="m3",
        member_contrast_z=2.9,
        member_contrast_p=0.03,
    )
    decision = policy.decide_label_free(shifted)
    assert decision is not None and decision.kind == "label_shift"


def test_bonferroni_p_counts_the_columns_it_tests() -> None:
    one = bonferroni_p(np.array([3.0]))
    assert one == pytest.approx(math.erfc(3.0 / math.sqrt(2)))
    assert bonferroni_p(np.array([3.0, 0.1, -0.2, math.nan])) == pytest.approx(3 * one)
    assert bonferroni_p(np.array([0.1] * 50)) == 1.0
    assert math.isnan(bonferroni_p(np.array([math.nan])))


def test_a_member_that_never_voted_does_not_break_the_member_check() -> None:
    rng = np.random.default_rng(5)
    votes = rng.random((3_000, 3))
    votes[:, 1] = math.nan  # joined the committee later: no vote in the reference
    scores = rng.random(3_000) * 0.05
    colleagues = LeaveOneOut.fit(scores, votes)
    contrasts = member_contrasts(colleagues, scores, votes)
    assert np.isfinite(contrasts).all()
    z = shift_z(scores, contrasts, contrasts, 0.025, 0.025, recent_scores=scores)
    assert np.isfinite(z).all() and bonferroni_p(z) > 0.5
