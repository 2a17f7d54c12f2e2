"""The skill gate (issue 10 §3): no evidence of skill, no model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from metasignal.stream.artifact import load_artifact, sign_artifact
from metasignal.trainer.cli import main
from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.selection import beats_abstain
from metasignal.trainer.skill import (
    EXIT_NO_SKILL,
    NoSkillError,
    _rotated_average_precisions,
    assess_ranking,
)
from metasignal.trainer.synthetic import Committee, generate_committee


def committee_table(skill: float, seed: int, n_events: int = 20_000) -> VoteTable:
    c = generate_committee(n_events=n_events, positive_rate=0.03, skill=skill, seed=seed)
    return VoteTable(time_ms=c.time_ms, members=c.members, votes=c.votes, labels=c.labels)


def test_average_precision_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.07).astype(int)
    s = np.round(rng.random(2000) + 0.4 * y, 1)  # heavy ties
    order = np.argsort(-s, kind="stable")
    ends = np.append(np.flatnonzero(s[order][1:] != s[order][:-1]), s.size - 1)
    assert assess_ranking(y, s, np.arange(2000), n_permutations=9).pr_auc == pytest.approx(
        average_precision_score(y, s), abs=1e-12
    )
    rank = np.empty(s.size, dtype=np.int64)
    rank[order] = np.arange(s.size)
    run_end = np.repeat(ends, np.diff(ends, prepend=-1))
    shifts = np.array([1, 250, 1999])
    run_end_of_row = run_end[rank].astype(np.int32)
    run_end_twice = np.concatenate([run_end_of_row, run_end_of_row])
    rotated = _rotated_average_precisions(np.flatnonzero(y), shifts, run_end_twice)
    expected = [average_precision_score(np.roll(y, k), s) for k in shifts]
    np.testing.assert_allclose(rotated, expected, atol=1e-12)


def test_rotation_test_is_calibrated_under_no_information() -> None:
    # Autocorrelated labels and scores without any link: p-values are roughly uniform,
    # so at 0.05 about 5 % of independent pairs are called significant.
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(60):
        regime = np.repeat(rng.random(40) < 0.3, 50)
        y = (rng.random(2000) < np.where(regime, 0.12, 0.02)).astype(int)
        s = np.convolve(rng.standard_normal(2000), np.ones(50) / 50, mode="same")
        p_values.append(assess_ranking(y, s, np.arange(2000), n_permutations=199).p_value)
    assert np.mean(np.array(p_values) <= 0.05) <= 0.15
    assert 0.3 < np.median(p_values) < 0.7


def test_lift_interval_brackets_the_lift() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(5000) < 0.05).astype(int)
    s = rng.random(5000) + 0.5 * y
    evidence = assess_ranking(y, s, np.arange(5000))
    low, high = evidence.lift_interval
    assert low < evidence.lift < high
    assert evidence.p_value == pytest.approx(1 / 2000)
    assert evidence.lift > 3


def test_abstain_must_be_beaten_beyond_fold_noise() -> None:
    assert beats_abstain([0.4, 0.45, 0.38], [0.0, 0.0, 0.0])[0]
    ok, detail = beats_abstain([0.01, -0.02, 0.015, -0.005], [0.0] * 4)
    assert not ok
    assert "abstain (never trade) is as good" in detail


def test_profit_with_losing_payoffs_lets_abstain_win() -> None:
    # A skilled ranking whose trades all lose money: no strategy beats never trading.
    table = committee_table(skill=1.0, seed=2)
    payoff = np.full(len(table), -1.0)
    model = MetaModelClassifier(strategy="auto", metric="profit").fit(
        table.votes, table.labels, times=table.time_ms, payoff=payoff
    )
    assert not model.skill_.beats_abstain
    assert not model.skill_.skilled
    assert "abstain" in model.strategy_reason_


def test_no_information_committee_is_refused_with_its_report() -> None:
    with pytest.raises(NoSkillError, match="no evidence of skill") as caught:
        fit_meta_model(committee_table(skill=0.0, seed=5), FitConfig())
    report = caught.value.report
    assert report is not None
    assert report["skill"]["verdict"] == "no skill"
    assert report["skill"]["p_value"] > report["skill"]["alpha"] == 0.001
    assert report["published"].startswith("no model published")
    assert next(iter(report)) == "skill"  # the report leads with the verdict


def test_skilled_committee_is_published_with_its_evidence() -> None:
    outcome = fit_meta_model(committee_table(skill=1.0, seed=5), FitConfig())
    skill = outcome.report["skill"]
    assert skill["verdict"] == "skill" and skill["p_value"] <= 0.001
    assert skill["lift_interval"][0] > 1
    assert outcome.artifact["skill"]["overridden"] is False


def test_override_is_recorded_in_the_signed_artifact() -> None:
    config = FitConfig(allow_no_skill=True)
    outcome = fit_meta_model(committee_table(skill=0.0, seed=5), config)
    artifact = load_artifact(json.dumps(sign_artifact(outcome.artifact, b"k")), keys=[b"k"])
    assert artifact["skill"]["overridden"] is True
    assert artifact["skill"]["verdict"] == "no skill (overridden by --allow-no-skill)"


def _noise_csv(tmp_path: Path) -> Path:
    c = generate_committee(n_events=20_000, positive_rate=0.03, skill=0.0, seed=5)
    path = tmp_path / "noise.csv"
    c.to_csv(path)
    return path


def test_cli_exits_with_the_no_skill_code_and_writes_only_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.json").write_text("{}")  # a stale model must not survive a refusal
    args = ["fit", "--data", str(_noise_csv(tmp_path)), "--label", "label", "--time", "ts",
            "--out", str(out), "--quiet", "--unsigned"]  # fmt: skip
    assert main(args) == EXIT_NO_SKILL
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith("metasignal: error: no model published: no evidence of skill")
    assert "PR-AUC" in error[0] and "p = " in error[0]
    assert not (out / "model.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["skill"]["skilled"] is False
    assert (out / "report.html").exists()
    assert main([*args, "--allow-no-skill"]) == 0
    model = json.loads((out / "model.json").read_text())
    assert model["skill"]["overridden"] is True


def test_trainer_service_never_publishes_a_candidate_without_skill(
    artifact_body: dict, committee: Committee
) -> None:
    from metasignal.stream.topics import Topics
    from metasignal.trainer.service import TrainerOptions, TrainerService
    from tests.conftest import TEST_KEY
    from tests.streaming import (
        memory_bus,
        publish_model,
        send_requests,
        send_training_rows,
        versioned,
    )

    topics = Topics(prefix="skill.")
    bus = memory_bus(topics, partitions=1)
    publish_model(bus, topics, versioned(artifact_body, 1, TEST_KEY))
    # Labels without any link to the votes: whatever the candidate learns is noise.
    labels = np.random.default_rng(0).permutation(committee.labels)
    send_training_rows(bus, topics, committee, labels)
    request = {"id": "noise", "kind": "retune", "reason": "test", "model_version": 1}
    send_requests(bus, topics, request)
    trainer = TrainerService(
        transport=bus,
        # Even a forced request (which skips the champion comparison) is refused.
        options=TrainerOptions(topics=topics, force=True, window_rows=20_000),
        keys=[TEST_KEY],
    )
    while trainer.step():
        pass
    [verdict] = trainer.verdicts
    assert verdict.outcome == "refused"
    assert verdict.detail.startswith("refused: no evidence of skill")
    assert verdict.gate is not None and verdict.gate["skill"]["skilled"] is False
    assert len(bus.records(topics.models)) == 1  # only the champion
    counted = trainer.metrics.skill_refusals.labels(reason="no_ranking_skill")._value.get()
    assert counted == 1
    assert trainer.metrics.refusals._value.get() == 0


def test_html_report_leads_with_the_verdict() -> None:
    from metasignal.trainer.report import render_html

    with pytest.raises(NoSkillError) as caught:
        fit_meta_model(committee_table(skill=0.0, seed=6), FitConfig())
    assert caught.value.report is not None
    page = render_html(caught.value.report)
    # The verdict is the first section, and says why no model was published.
    assert page.index("<h2>Verdict</h2>") == page.index("<h2>")
    verdict = page[page.index('data-verdict="fail"') :]
    assert "No evidence of skill" in verdict[: verdict.index("</div>")]
    assert "no evidence of skill" in verdict.lower()
