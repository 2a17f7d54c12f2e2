"""The published model's score recalibration: fitted by the trainer without labels and
composed into the served calibration (decisions unchanged); older artifacts that carry it as
the optional ``score_recalibration`` block still load, and the label-free expected quality
still reads it from them."""

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
from metasignal.trainer.calibration import PlattCalibration, compose_transfer, fit_transfer

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
    """An artifact as the trainer published it before the transfer was served: the
    ``score_recalibration`` block beside the calibration it was fitted with."""
    doc: dict[str, Any] = dict(example_artifact(("a", "b")))
    doc["calibration"] = CALIBRATION.to_dict()
    if transfer is not None:
        doc["score_recalibration"] = {
            "method": "platt",
            "slope": transfer.slope,
            "intercept": transfer.intercept,
            "calibration": CALIBRATION.to_dict(),
        }
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


def test_the_served_transfer_keeps_every_decision_and_moves_the_threshold() -> None:
    rng = np.random.default_rng(7)
    transfer = _fitted_transfer(rng)
    served, threshold = compose_transfer(CALIBRATION, transfer, 0.3)
    assert served == transfer
    assert threshold < 0.3  # the published model over-stated the top: the same cut reads lower
    _, raw, _ = _committee(rng, 200_000, 0.01)
    np.testing.assert_array_equal(
        CALIBRATION.transform(raw) >= 0.3, served.transform(raw) >= threshold
    )
    # Always / never trade stays so; a transfer without order changes nothing.
    assert compose_transfer(CALIBRATION, transfer, 0.0) == (transfer, 0.0)
    assert compose_transfer(CALIBRATION, transfer, 1.0) == (transfer, 1.0)
    flat = PlattCalibration(slope=0.0, intercept=-4.0)
    assert compose_transfer(CALIBRATION, flat, 0.3) == (CALIBRATION, 0.3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_trainer_serves_the_recalibrated_score_with_the_same_decisions() -> None:
    from metasignal.trainer.data import VoteTable
    from metasignal.trainer.fit import FitConfig, fit_meta_model
    from metasignal.trainer.synthetic import generate_committee

    train = generate_committee(n_events=60_000, positive_rate=0.01, skill=3.0, seed=3)
    table = VoteTable(
        time_ms=train.time_ms, members=train.members, votes=train.votes, labels=train.labels
    )
    outcome = fit_meta_model(table, FitConfig(estimator={"strategy": "optimal_threshold"}))
    assert "score_recalibration" not in outcome.artifact
    text = dumps_artifact(sign_artifact(outcome.artifact, KEY))
    model = CompiledModel.from_artifact(load_artifact(text, keys=[KEY]))
    assert model.score_recalibration is None
    # The artifact as published before: the tuned calibration and threshold, unrecalibrated.
    before: dict[str, Any] = {
        **outcome.artifact,
        "calibration": outcome.report["calibration"],
        "threshold": {**outcome.artifact["threshold"], "value": outcome.report["threshold"]},
    }
    old = CompiledModel.from_artifact(before)
    assert outcome.report["served"]["threshold"] == model.threshold != old.threshold
    pool = generate_committee(n_events=300_000, positive_rate=0.01, skill=3.0, seed=4)
    served, old_served = model.predict_proba(pool.votes), old.predict_proba(pool.votes)
    above = model.decide(served).astype(bool)
    # The same trades; the fitted model's own probabilities and decisions.
    np.testing.assert_array_equal(above, old.decide(old_served).astype(bool))
    np.testing.assert_array_equal(model.decide(served), outcome.model.predict(pool.votes))
    np.testing.assert_allclose(served, outcome.model.predict_proba(pool.votes)[:, 1], atol=1e-9)
    realized = float(pool.labels[above].mean())
    over = old_served[above].mean() - realized
    assert over > 0.03  # the unrecalibrated score over-stated the top
    assert abs(served[above].mean() - realized) < over / 2
