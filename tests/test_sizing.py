"""Position sizing: one formula, carried by the artifact, reproduced by the scorer, on the wire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from metasignal.stream.artifact import Artifact, load_artifact, sign_artifact
from metasignal.stream.errors import ArtifactError
from metasignal.stream.messages import encode_signal
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.sizing import SizingRule, estimate_payoff_ratio, resolve_sizing
from metasignal.stream.topics import Topics
from metasignal.trainer.challenge import retune_artifact
from metasignal.trainer.cli import main
from metasignal.trainer.data import DataError, VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.objective import Objective
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY, vote_table
from tests.streaming import decode_all, memory_bus, publish_model, send_votes, versioned

probability = st.floats(min_value=0.0, max_value=1.0)


@given(p=st.lists(probability, min_size=1, max_size=50), threshold=probability)
def test_bet_size_is_two_phi_z_minus_one_against_the_threshold(
    p: list[float], threshold: float
) -> None:
    scores = np.array(p)
    size = SizingRule(method="probability").size(scores, threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (scores - threshold) / np.sqrt(scores * (1 - scores))
    reference = np.where(scores >= threshold, np.nan_to_num(2 * norm.cdf(z) - 1, nan=0.0), 0.0)
    np.testing.assert_allclose(size, reference, rtol=0, atol=1e-12)
    assert ((size >= 0) & (size <= 1)).all()
    assert (size[scores < threshold] == 0).all()


def test_bet_size_grows_with_the_probability_and_stops_at_the_cap() -> None:
    p = np.linspace(0.2, 1.0, 101)
    size = SizingRule(method="probability", cap=0.6).size(p, threshold=0.2)
    assert size[0] == 0.0  # no edge at the threshold itself
    assert (np.diff(size) >= 0).all()
    assert size.max() == 0.6 and size[-1] == 0.6
    ladder = SizingRule(method="probability", step=0.25).size(p, threshold=0.2)
    assert set(np.round(ladder, 12)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert (ladder <= SizingRule(method="probability").size(p, 0.2) + 1e-12).all()


def test_fractional_kelly_from_the_payoff_ratio() -> None:
    rule = SizingRule(method="kelly", payoff_ratio=3.0, fraction=0.25, cap=0.2)
    p = np.array([0.1, 0.25, 0.3, 0.6, 0.95])
    expected = np.clip(0.25 * (p - (1 - p) / 3.0), 0, 0.2)
    expected[p < 0.25] = 0.0
    np.testing.assert_allclose(rule.size(p, threshold=0.25), expected, rtol=0, atol=1e-15)
    # Below Kelly's break-even 1 / (1 + b) there is no edge: a trade of size 0.
    assert rule.size(np.array([0.25]), threshold=0.2)[0] == 0.0
    assert SizingRule(method="fixed", cap=0.5).size(np.array([0.1, 0.3]), 0.2).tolist() == [
        0.0,
        0.5,
    ]


def test_payoff_ratio_comes_from_payoffs_then_gain_and_cost() -> None:
    payoff, labels = [0.04, -0.01, 0.02, -0.01, -0.02], [1, 0, 1, 0, 0]
    assert estimate_payoff_ratio(payoff, labels) == pytest.approx(0.03 / (0.04 / 3))
    rule = resolve_sizing({"method": "kelly"}, payoff=payoff, labels=labels, gain_cost=(9, 1))
    assert rule.payoff_ratio == pytest.approx(2.25)
    assert resolve_sizing({"method": "kelly"}, gain_cost=(2.0, 1.0)).payoff_ratio == 2.0
    assert resolve_sizing({"method": "kelly", "payoff_ratio": 1.5}).payoff_ratio == 1.5
    with pytest.raises(ValueError, match="--payoff-ratio"):
        resolve_sizing({"method": "kelly"})
    with pytest.raises(ValueError, match="gain and negative events lose"):
        estimate_payoff_ratio([-0.01, 0.02], [1, 0])


@pytest.mark.parametrize(
    "block, message",
    [
        ({"method": "martingale"}, "unknown sizing method"),
        ({"method": "probability", "cap": 0.0}, "size cap"),
        ({"method": "probability", "cap": 1.5}, "size cap"),
        ({"method": "probability", "step": 0.5, "cap": 0.3}, "size step"),
        ({"method": "kelly", "payoff_ratio": -1.0}, "payoff ratio"),
        ({"method": "kelly", "payoff_ratio": 2.0, "fraction": 0.0}, "Kelly fraction"),
        ({"method": "probability", "cap": True}, "size cap"),
        ({"method": "probability", "leverage": 3}, "unknown sizing field"),
        ([1, 2], "must be an object"),
    ],
)
def test_a_bad_sizing_block_is_refused_by_the_artifact_loader(
    artifact_body: dict[str, Any], block: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SizingRule.from_dict(block)
    body = {**artifact_body, "sizing": block}
    with pytest.raises(ArtifactError, match=f"'sizing': .*{message}"):
        load_artifact(sign_artifact(body, TEST_KEY), keys=[TEST_KEY])


def test_round_trip_and_older_artifacts_size_all_or_nothing(artifact_body: dict) -> None:
    for rule in (
        SizingRule(),
        SizingRule(method="kelly", payoff_ratio=1.7, fraction=0.3, cap=0.5, step=0.1),
        SizingRule(method="fixed", cap=0.25),
    ):
        assert SizingRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    older = {k: v for k, v in artifact_body.items() if k != "sizing"}
    model = CompiledModel.from_artifact(
        load_artifact(sign_artifact(older, None), keys=[], allow_unsigned=True)
    )
    scores = np.array([model.threshold - 1e-9, model.threshold, 0.99])
    assert model.size(scores).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "spec",
    [
        {"method": "probability"},
        {"method": "probability", "cap": 0.5, "step": 0.05},
        {"method": "kelly", "payoff_ratio": 40.0, "fraction": 0.5},
    ],
    ids=["probability", "probability-capped-ladder", "kelly"],
)
def test_the_numpy_scorer_reproduces_the_trainers_sizes(
    committee: Committee, spec: dict[str, Any]
) -> None:
    table = vote_table(committee)
    config = FitConfig(estimator={"strategy": "optimal_threshold"}, sizing=spec)
    outcome = fit_meta_model(table, config)
    assert outcome.artifact["sizing"] == SizingRule.from_dict(spec).to_dict()
    rule = SizingRule.from_dict(spec)
    trainer_p = outcome.model.predict_proba(committee.votes)[:, 1]
    trainer_sizes = rule.size(trainer_p, outcome.model.threshold_)
    signed = sign_artifact(outcome.artifact, TEST_KEY)
    scorer = CompiledModel.from_artifact(load_artifact(signed, keys=[TEST_KEY]))
    scorer_sizes = scorer.size(scorer.predict_proba(committee.votes))
    np.testing.assert_allclose(scorer_sizes, trainer_sizes, rtol=0, atol=1e-9)
    traded = trainer_p >= outcome.model.threshold_
    assert traded.any() and (scorer_sizes[~traded] == 0).all()
    assert 0 < scorer_sizes[traded].max() <= rule.cap
    report = outcome.report["sizing"]
    assert report["rule"] == rule.to_dict()
    assert sum(report["holdout_histogram"]["counts"]) == report["holdout_trades"] > 0


def test_every_signal_on_the_wire_carries_its_size(
    committee: Committee, artifact_body: dict
) -> None:
    topics = Topics(prefix="s.")
    bus = memory_bus(topics)
    body = {**artifact_body, "sizing": {"method": "probability", "cap": 0.9}}
    publish_model(bus, topics, versioned(body, 1, TEST_KEY))
    ids = send_votes(bus, topics, committee, 0, 800)
    scorer = Scorer(
        transport=bus,
        options=ScorerOptions(topics=topics, poll_timeout_ms=10, model_check_interval_s=0.0),
        keys=[TEST_KEY],
    )
    for _ in range(40):
        scorer.step()
    out = {s["id"]: s for s in decode_all(r.value for r in bus.records(topics.signals))}
    assert set(out) == set(ids)
    model = CompiledModel.from_artifact(
        load_artifact(versioned(body, 1, TEST_KEY), keys=[TEST_KEY])
    )
    expected = model.size(model.predict_proba(committee.votes[:800]))
    got = np.array([out[i]["size"] for i in ids])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    decisions = np.array([out[i]["decision"] for i in ids])
    assert (got[decisions == 0] == 0).all() and (got[decisions == 1] > 0).any()
    assert got.max() <= 0.9


def test_a_retuned_champion_keeps_its_sizing_rule(
    committee: Committee, artifact_body: dict[str, Any]
) -> None:
    rule = {"method": "kelly", "cap": 0.4, "step": 0.1, "fraction": 0.25, "payoff_ratio": 3.0}
    champion = {**artifact_body, "sizing": rule}
    table = vote_table(committee, slice(-6000, None))
    candidate, _ = retune_artifact(cast(Artifact, champion), table, Objective(metric="f1"))
    assert candidate["sizing"] == rule
    assert CompiledModel.from_artifact(candidate).sizing == SizingRule.from_dict(rule)


def test_a_signal_with_a_size_outside_the_unit_interval_is_refused() -> None:
    for size in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="size in"):
            encode_signal(
                event_id="e",
                ts_ms=1,
                decision=1,
                score=0.5,
                threshold=0.2,
                size=size,
                model_name="meta",
                model_version=1,
                scored_at_ms=2,
            )


def test_fit_flags_choose_the_rule(
    committee_csv: Path, tmp_path: Path, signing_key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["fit", "--data", str(committee_csv), "--label", "label", "--time", "ts"]
    common += ["--strategy", "optimal_threshold", "--quiet"]
    code = main([*common, "--out", str(tmp_path / "k"), "--sizing", "kelly", "--metric",
                 "profit", "--gain", "4", "--size-cap", "0.3"])  # fmt: skip
    assert code == 0
    artifact = json.loads((tmp_path / "k" / "model.json").read_text())
    assert artifact["sizing"] == {
        "method": "kelly",
        "cap": 0.3,
        "step": 0.0,
        "fraction": 0.5,
        "payoff_ratio": 4.0,
    }
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "k" / "model.json")]) == 0
    assert "sizing      fractional Kelly: 0.5 × (p − (1 − p) / 4); capped at 0.3" in (
        capsys.readouterr().out
    )
    code = main([*common, "--out", str(tmp_path / "f1"), "--sizing", "kelly"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--payoff-ratio" in err[0]
    with pytest.raises(SystemExit):
        main([*common, "--out", str(tmp_path / "x"), "--size-cap", "0"])
    with pytest.raises(DataError, match="size step"):
        fit_meta_model(
            VoteTable(time_ms=np.arange(4), members=("a",), votes=np.zeros((4, 1)),
                      labels=np.array([0, 1, 0, 1])),
            FitConfig(sizing={"method": "probability", "cap": 0.2, "step": 0.5}),
        )  # fmt: skip
