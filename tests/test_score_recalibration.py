"""The published model's score recalibration: fitted by the trainer without labels, carried
by the artifact (optional), read by the label-free expected quality only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from metasignal.stream.artifact import (
    dumps_artifact,
    example_artifact,
    load_artifact,
    sign_artifact,
)
from metasignal.stream.drift.label_free import LabelFreeEstimator, recalibrate
from metasignal.stream.drift.monitor import DriftMonitor
from metasignal.stream.drift.prior import adjust_posteriors
from metasignal.stream.errors import ArtifactError
from metasignal.stream.scoring import CompiledModel, logit, score_recalibration
from metasignal.trainer.calibration import PlattCalibration, fit_transfer
from metasignal.trainer.calibration import score_recalibration as recalibration_block

KEY = b"r" * 32
MEANS, SD = (-0.1, 1.3), 0.7  # the fold models' decision values per class
# P(y | fold decision value) at 1 % for those Gaussian classes: the calibration map.
CALIBRATION = PlattCalibration(
    slope=(MEANS[1] - MEANS[0]) / SD**2,
    intercept=(MEANS[0] ** 2 - MEANS[1] ** 2) / (2 * SD**2) + float(np.log(0.01 / 0.99)),
)
SPREAD = 1.6  # the published model's decision values are 1.6 times the fold models'


def _committee(
    rng: np.random.Generator, n: int, rate: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold-model decision values, the published model's, and labels calibrated by
    ``CALIBRATION`` on the fold models' scale (a label-shift mix at ``rate``)."""
    y = rng.random(n) < rate
    fold_raw = np.where(y, MEANS[1], MEANS[0]) + rng.normal(0.0, SD, n)
    return fold_raw, SPREAD * fold_raw + 0.2, y


def _artifact(transfer: PlattCalibration | None) -> dict[str, Any]:
    doc: dict[str, Any] = dict(example_artifact(("a", "b")))
    doc["calibration"] = CALIBRATION.to_dict()
    if transfer is not None:
        doc["score_recalibration"] = recalibration_block(CALIBRATION, transfer)
    return doc


def _fitted_transfer(rng: np.random.Generator) -> PlattCalibration:
    fold_raw, published_raw, _ = _committee(rng, 100_000, 0.01)
    return fit_transfer(published_raw, CALIBRATION.transform(fold_raw))


def test_an_over_confident_models_expected_precision_is_corrected() -> None:
    rng = np.random.default_rng(11)
    recalibration = score_recalibration(_artifact(_fitted_transfer(rng)))
    assert recalibration is not None
    errors: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(8):
        _, warm_raw, _ = _committee(rng, 20_000, 0.01)
        _, raw, y = _committee(rng, 20_000, 0.02)  # a label shift to 2 %
        warm = CALIBRATION.transform(warm_raw)
        served = CALIBRATION.transform(raw)  # the published model's scores: over-confident
        decisions = served >= 0.3
        realized = float(y[decisions].mean())
        for corrected in (True, False):
            estimator = LabelFreeEstimator(
                window=20_000, warmup=20_000, recalibration=recalibration if corrected else None
            )
            estimator.update(warm, warm >= 0.3)
            estimator.update(served, decisions)
            estimate = estimator.estimate()
            assert estimate is not None
            errors[corrected].append(estimate.precision - realized)
    bias, uncorrected = np.mean(errors[True]), np.mean(errors[False])
    assert uncorrected > 0.05  # the served scores over-state the precision
    assert abs(bias) < 0.02
    assert abs(bias) < abs(uncorrected) / 3


def test_the_transfer_recovers_the_published_models_calibration() -> None:
    rng = np.random.default_rng(5)
    transfer = _fitted_transfer(rng)
    # Truth: P(y | published raw r) = sigmoid(k (r - 0.2) / SPREAD + c).
    assert transfer.slope == pytest.approx(CALIBRATION.slope / SPREAD, rel=0.03)
    assert transfer.intercept == pytest.approx(
        CALIBRATION.intercept - 0.2 * CALIBRATION.slope / SPREAD, abs=0.1
    )


def test_the_artifact_round_trips_with_and_without_the_recalibration() -> None:
    transfer = PlattCalibration(slope=1.5, intercept=-6.0)
    with_it = load_artifact(dumps_artifact(sign_artifact(_artifact(transfer), KEY)), keys=[KEY])
    assert with_it["score_recalibration"]["slope"] == 1.5
    assert with_it["score_recalibration"]["calibration"] == CALIBRATION.to_dict()
    model = CompiledModel.from_artifact(with_it)
    a = 1.5 / CALIBRATION.slope
    assert model.score_recalibration == pytest.approx((a, -6.0 - a * CALIBRATION.intercept))
    older = load_artifact(dumps_artifact(sign_artifact(_artifact(None), KEY)), keys=[KEY])
    assert "score_recalibration" not in older
    old_model = CompiledModel.from_artifact(older)
    assert old_model.score_recalibration is None
    # Decisions and scores never read it.
    votes = np.array([[0.2, 0.9], [0.6, 0.7], [0.99, 0.95]])
    assert np.array_equal(model.predict_proba(votes), old_model.predict_proba(votes))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("slope", 0.0, "score_recalibration.slope"),
        ("slope", "1.5", "score_recalibration.slope"),
        ("method", "isotonic", "score_recalibration.method"),
        ("calibration", {"method": "platt", "slope": 1.0}, "calibration.intercept"),
    ],
)
def test_a_broken_recalibration_is_refused_with_its_field(
    field: str, value: object, message: str
) -> None:
    doc = _artifact(PlattCalibration(slope=1.5, intercept=-6.0))
    doc["score_recalibration"] = {**doc["score_recalibration"], field: value}
    text = dumps_artifact(sign_artifact(doc, KEY))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(text, keys=[KEY])


def test_a_label_shift_retune_carries_the_recalibration_an_outcome_retune_drops_it() -> None:
    doc = _artifact(PlattCalibration(slope=1.5, intercept=-6.0))
    before = score_recalibration(doc)
    shift = float(logit(np.array([0.02]), 1e-9)[0] - logit(np.array([0.01]), 1e-9)[0])
    shifted = {
        **doc,
        "calibration": {**doc["calibration"], "intercept": CALIBRATION.intercept + shift},
    }
    after = score_recalibration(shifted)
    scores = np.array([0.001, 0.05, 0.4, 0.9])
    moved = adjust_posteriors(scores, 0.01, 0.02)  # what the intercept shift does to scores
    # The recalibrated meaning moves by the same prior shift.
    np.testing.assert_allclose(
        recalibrate(moved, after), adjust_posteriors(recalibrate(scores, before), 0.01, 0.02)
    )
    refitted = {**doc, "calibration": {"method": "platt", "slope": 1.1, "intercept": -5.0}}
    assert score_recalibration(refitted) is None


def test_the_monitor_hands_the_recalibration_to_its_estimator_at_every_model() -> None:
    monitor = DriftMonitor(members=("a", "b"), score_recalibration=(0.8, -0.5))
    assert monitor.label_free.recalibration == (0.8, -0.5)
    monitor.reset_quality(score_recalibration=None)
    assert monitor.label_free.recalibration is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_trainer_publishes_a_recalibration_that_fixes_the_tail_and_no_decision() -> None:
    from metasignal.trainer.data import VoteTable
    from metasignal.trainer.fit import FitConfig, fit_meta_model
    from metasignal.trainer.synthetic import generate_committee

    train = generate_committee(n_events=60_000, positive_rate=0.01, skill=3.0, seed=3)
    table = VoteTable(
        time_ms=train.time_ms, members=train.members, votes=train.votes, labels=train.labels
    )
    outcome = fit_meta_model(table, FitConfig(estimator={"strategy": "optimal_threshold"}))
    text = dumps_artifact(sign_artifact(outcome.artifact, KEY))
    model = CompiledModel.from_artifact(load_artifact(text, keys=[KEY]))
    assert model.score_recalibration is not None
    pool = generate_committee(n_events=300_000, positive_rate=0.01, skill=3.0, seed=4)
    served = model.predict_proba(pool.votes)
    # Decisions are the fitted model's own.
    assert np.array_equal(model.decide(served), outcome.model.predict(pool.votes))
    above = model.decide(served).astype(bool)
    realized = float(pool.labels[above].mean())
    recalibrated = recalibrate(served[above], model.score_recalibration)
    assert served[above].mean() - realized > 0.03  # over-confident at the top as served
    assert abs(recalibrated.mean() - realized) < (served[above].mean() - realized) / 2
