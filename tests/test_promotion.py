"""The shadow comparison: error rates in simulation, verdicts, validation, properties."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.markdown import write_section
from metasignal.stream.drift.promotion import (
    ShadowComparison,
    efficacy_boundaries,
    futility_boundaries,
    look_schedule,
    paired_counts,
    paired_f1_difference,
)


def decisions(
    rng: np.random.Generator,
    n: int,
    *,
    rate: float,
    recall: tuple[float, float],
    false_alarm: tuple[float, float],
    correlation: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' decisions with given recall and false-alarm rate each.

    With probability ``correlation`` an event's two decisions come from one shared draw
    (the models agree as far as their marginals allow), else from independent draws.
    """
    labels = rng.random(n) < rate
    shared, own_b, own_c = rng.random(n), rng.random(n), rng.random(n)
    together = rng.random(n) < correlation
    out = []
    for side, own in ((0, own_b), (1, own_c)):
        draw = np.where(together, shared, own)
        out.append(np.where(labels, draw < recall[side], draw < false_alarm[side]))
    return labels, out[0], out[1]


def run(test: ShadowComparison, stream: tuple[np.ndarray, ...], batch: int = 500) -> str | None:
    labels, incumbent, challenger = stream
    for start in range(0, len(labels), batch):
        window = slice(start, start + batch)
        if test.update(labels[window], incumbent[window], challenger[window]) is not None:
            break
    return test.verdict


SMALL = {"min_outcomes": 2_000, "max_outcomes": 20_000, "look_every": 500}


def test_false_better_rate_under_equal_quality_is_at_most_alpha() -> None:
    # Both models have the same recall and false-alarm rate, so the same F1: any "better"
    # is false. A naive z > 1.645 at each of the 37 looks says "better" in about a quarter.
    # The futility rule is non-binding: with it (the default) and without it, at most alpha.
    runs, alpha = 400, 0.05
    rng = np.random.default_rng(20_251_130)
    false_better = former_better = naive_better = 0
    for _ in range(runs):
        stream = decisions(rng, 20_000, rate=0.015, recall=(0.5, 0.5), false_alarm=(0.01, 0.01))
        false_better += run(ShadowComparison(alpha=alpha, **SMALL), stream) == "better"
        former = ShadowComparison(alpha=alpha, min_improvement=None, **SMALL)
        former_better += run(former, stream) == "better"
        naive_better += _naively_better(stream)
    # Binomial(400, 0.05) exceeds 30 with probability 0.7 %.
    assert false_better <= former_better <= 30, (false_better, former_better)
    assert naive_better > 2 * 30, naive_better


def _naively_better(stream: tuple[np.ndarray, ...]) -> bool:
    for n in look_schedule(2_000, 20_000, 500):
        estimate = paired_f1_difference(paired_counts(*(a[:n] for a in stream)))
        if estimate.standard_error and estimate.difference / estimate.standard_error > 1.645:
            return True
    return False


def test_a_truly_better_challenger_is_promoted() -> None:
    rng = np.random.default_rng(1)
    verdicts = []
    for _ in range(20):
        stream = decisions(rng, 20_000, rate=0.02, recall=(0.45, 0.7), false_alarm=(0.01, 0.006))
        verdicts.append(run(ShadowComparison(**SMALL), stream))
    assert verdicts.count("better") >= 18, verdicts


def test_a_worse_challenger_is_retired_before_the_horizon() -> None:
    rng = np.random.default_rng(2)
    stream = decisions(rng, 20_000, rate=0.02, recall=(0.7, 0.4), false_alarm=(0.005, 0.01))
    test = ShadowComparison(**SMALL)
    assert run(test, stream) == "not_better"
    assert test.n_outcomes < 20_000
    assert _number(test.evidence(), "futility_upper_bound") < 0.03  # the min improvement
    former = ShadowComparison(min_improvement=None, **SMALL)  # futility below the margin
    assert run(former, stream) == "not_better"
    assert test.n_outcomes <= former.n_outcomes < 20_000
    assert _number(former.evidence(), "upper_bound") < 0.0


def test_without_futility_an_equal_challenger_is_not_better_at_the_horizon() -> None:
    rng = np.random.default_rng(3)
    stream = decisions(rng, 30_000, rate=0.02, recall=(0.5, 0.5), false_alarm=(0.01, 0.01))
    test = ShadowComparison(min_improvement=None, **SMALL)
    assert run(test, stream) == "not_better"
    assert test.n_outcomes == 20_000  # the horizon, then nothing more is counted
    assert test.update(*(a[:10] for a in stream)) == "not_better"
    assert test.n_outcomes == 20_000


def test_futility_retires_an_equal_challenger_well_before_the_horizon() -> None:
    # Default design (horizon 50,000): on the same stream the former rule runs to the end.
    rng = np.random.default_rng(11)
    stream = decisions(rng, 50_000, rate=0.02, recall=(0.5, 0.5), false_alarm=(0.01, 0.01))
    test = ShadowComparison()
    assert run(test, stream) == "not_better"
    assert test.n_outcomes <= 20_000, test.n_outcomes  # 15,500 on this seed
    evidence = test.evidence()
    assert evidence["futility"] == "beta_spending_pocock" and evidence["stopped_by"] == "futility"
    assert _number(evidence, "futility_upper_bound") < 0.03 <= _number(evidence, "upper_bound")
    assert _number(evidence, "z_improvement") <= -_number(evidence, "futility_boundary")
    assert 0.0 < _number(evidence, "beta_spent") < 0.2
    former = ShadowComparison(min_improvement=None)
    assert run(former, stream) == "not_better" and former.n_outcomes == 50_000
    assert former.evidence()["stopped_by"] == "horizon"


def test_a_challenger_making_the_champions_decisions_is_retired_at_the_first_look() -> None:
    # No discordant outcome, no standard error: its F1 is the champion's, so an improvement
    # of min_improvement is ruled out; the former rule (futility below the margin) waits.
    rng = np.random.default_rng(5)
    labels, incumbent, _ = decisions(
        rng, 50_000, rate=0.02, recall=(0.5, 0.5), false_alarm=(0.01, 0.01)
    )
    test = ShadowComparison()
    assert test.update(labels, incumbent, incumbent) == "not_better"
    assert test.n_outcomes == int(test.looks[0])
    assert test.evidence()["stopped_by"] == "futility"
    former = ShadowComparison(min_improvement=None)
    assert former.update(labels, incumbent, incumbent) == "not_better"
    assert former.n_outcomes == 50_000


def test_a_look_crossing_both_boundaries_says_better() -> None:
    # Far better (F1 ~0.4 -> ~0.9) but surely not by 0.9: both boundaries are crossed at
    # the first look; futility is non-binding, so the efficacy verdict stands.
    rng = np.random.default_rng(14)
    stream = decisions(rng, 20_000, rate=0.05, recall=(0.3, 0.95), false_alarm=(0.01, 0.002))
    test = ShadowComparison(min_improvement=0.9, **SMALL)
    assert run(test, stream) == "better"
    assert test.n_outcomes == int(test.looks[0])
    evidence = test.evidence()
    assert _number(evidence, "z") >= _number(evidence, "boundary")
    assert _number(evidence, "z_improvement") <= -_number(evidence, "futility_boundary")


def test_futility_never_retires_a_much_better_challenger() -> None:
    # Better by ~0.2 F1 (0.32 -> 0.52), against min_improvement 0.03: always promoted.
    rng = np.random.default_rng(11)
    verdicts = []
    for _ in range(30):
        stream = decisions(rng, 50_000, rate=0.01, recall=(0.4, 0.6), false_alarm=(0.01, 0.007))
        verdicts.append(run(ShadowComparison(), stream))
    assert verdicts == ["better"] * 30, verdicts


def test_futility_boundaries_bound_the_wrong_stop_of_a_challenger_better_by_delta() -> None:
    # Z_delta of a challenger better by exactly delta is a zero-drift Brownian motion in
    # information time: it crosses the futility boundaries at some look with probability
    # beta. Five equal looks at 2.5 % reproduce gsDesign's sfLDPocock table.
    table = [2.4380, 2.4268, 2.4101, 2.3966, 2.3859]
    assert futility_boundaries(np.linspace(0.2, 1.0, 5), 0.025) == pytest.approx(table, abs=5e-4)
    design = ShadowComparison()
    fractions = design.looks / design.max_outcomes
    rng = np.random.default_rng(12)
    steps = rng.normal(size=(100_000, len(fractions))) * np.sqrt(np.diff(fractions, prepend=0))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    crossed = float((z <= -design.futility_boundaries).any(axis=1).mean())
    assert crossed == pytest.approx(design.futility_beta, abs=0.005)


def test_margin_is_required_on_top_of_the_difference() -> None:
    # Truly better by about 0.08 F1: promoted at margin 0, not at margin 0.2.
    rng = np.random.default_rng(4)
    stream = decisions(rng, 20_000, rate=0.02, recall=(0.45, 0.6), false_alarm=(0.008, 0.008))
    assert run(ShadowComparison(**SMALL), stream) == "better"
    assert run(ShadowComparison(margin=0.2, **SMALL), stream) == "not_better"
    assert run(ShadowComparison(margin=0.2, min_improvement=None, **SMALL), stream) == (
        "not_better"
    )


def test_evidence_is_json_ready_at_every_stage() -> None:
    rng = np.random.default_rng(5)
    stream = decisions(rng, 20_000, rate=0.02, recall=(0.45, 0.7), false_alarm=(0.01, 0.006))
    test = ShadowComparison(**SMALL)
    before = test.evidence()
    assert before["verdict"] == "undecided" and before["n_outcomes"] == 0
    assert before["looks"] == 0 and before["alpha_spent"] == 0.0
    assert before["stopped_by"] == "undecided" and before["beta_spent"] == 0.0
    json.dumps(before, allow_nan=False)
    run(test, stream)
    assert _number(before, "boundary") > 5.0  # the first look's
    after = test.evidence()
    json.dumps(after, allow_nan=False)
    assert after["verdict"] == "better" and after["n_outcomes"] == test.n_outcomes
    assert after["stopped_by"] == "efficacy"
    assert _number(after, "lower_bound") > 0.0
    assert _number(after, "z") >= _number(after, "boundary")
    assert 0.0 < _number(after, "alpha_spent") <= 0.05
    assert _number(after, "challenger_f1") > _number(after, "incumbent_f1")
    assert {type(v) for v in after.values()} <= {str, int, float}


def _number(evidence: dict[str, float | int | str], key: str) -> float:
    value = evidence[key]
    assert isinstance(value, int | float), (key, value)
    return float(value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ((np.zeros(3), np.zeros(3), np.zeros(4)), "same events: lengths labels 3"),
        ((np.zeros(3), np.array([0, 2, 1]), np.zeros(3)), "incumbent must be 0/1 \\(found 2\\)"),
        ((np.array([0.0, np.nan, 1.0]), np.zeros(3), np.zeros(3)), "labels must be 0/1"),
        ((np.zeros(3), np.zeros(3), np.array([0.5, 0, 0])), "challenger must be 0/1"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(
    arrays: tuple[np.ndarray, ...], message: str
) -> None:
    test = ShadowComparison()
    with pytest.raises(ValueError, match=message):
        test.update(*arrays)
    assert test.n_outcomes == 0  # nothing half-counted


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"alpha": 0.0}, "alpha must be in"),
        ({"alpha": 1e-9}, "alpha must be in"),
        ({"alpha": 0.5}, "alpha must be in"),
        ({"margin": 1.0}, "margin must be in"),
        ({"min_outcomes": 0}, "min_outcomes <= max_outcomes"),
        ({"min_outcomes": 60_000}, "min_outcomes <= max_outcomes"),
        ({"look_every": 0}, "look_every must be at least 1"),
        ({"min_improvement": 0.0}, "min_improvement must be in \\(0, 1\\)"),
        ({"min_improvement": 1.0}, "min_improvement must be in"),
        ({"futility_beta": 0.5}, "futility_beta must be in"),
        ({"futility_beta": 0.0}, "futility_beta must be in"),
    ],
)
def test_bad_settings_are_refused(settings_: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShadowComparison(**settings_)  # type: ignore[arg-type]


def test_boundaries_reproduce_the_lan_demets_obrien_fleming_table() -> None:
    # Jennison & Turnbull (2000), table 7.6 / gsDesign sfLDOF: five equal looks, 2.5 %.
    table = [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]
    assert efficacy_boundaries(np.linspace(0.2, 1.0, 5), 0.025) == pytest.approx(table, abs=5e-4)
    assert efficacy_boundaries(np.array([1.0]), 0.05) == pytest.approx([1.6449], abs=1e-4)


def test_boundaries_control_the_crossing_probability_of_a_brownian_motion() -> None:
    # Exact null of the looks: Z_k = S(t_k) / sqrt(t_k), S a Brownian motion.
    fractions = look_schedule(2_000, 50_000, 500) / 50_000
    boundaries = efficacy_boundaries(fractions, 0.05)
    rng = np.random.default_rng(6)
    steps = rng.normal(size=(100_000, len(fractions))) * np.sqrt(np.diff(fractions, prepend=0))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    crossed = float((z >= boundaries).any(axis=1).mean())
    assert crossed == pytest.approx(0.05, abs=0.0025)


def test_standard_error_matches_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(7)
    stream = decisions(rng, 20_000, rate=0.015, recall=(0.5, 0.55), false_alarm=(0.01, 0.01))
    counts = paired_counts(*stream)
    cells = np.repeat(np.arange(8), counts)
    resampled = [
        paired_f1_difference(np.bincount(rng.choice(cells, len(cells)), minlength=8)).difference
        for _ in range(1_000)
    ]
    delta = paired_f1_difference(counts).standard_error
    assert delta == pytest.approx(float(np.std(resampled)), rel=0.1)
    # Pairing matters: the unpaired error (independent models) is larger here.
    unpaired = np.hypot(_single_f1_se(stream[0], stream[1]), _single_f1_se(stream[0], stream[2]))
    assert unpaired > 1.3 * delta


def _single_f1_se(labels: np.ndarray, decided: np.ndarray) -> float:
    counts = paired_counts(labels, decided, np.zeros_like(decided))
    return paired_f1_difference(counts).standard_error


counts_8 = st.lists(st.integers(0, 500), min_size=8, max_size=8).map(np.array)


@given(counts_8)
def test_swapping_the_models_negates_the_difference(counts: np.ndarray) -> None:
    swapped = counts[[0, 2, 1, 3, 4, 6, 5, 7]]  # cell 4 y + 2 b + c with b and c exchanged
    forward, backward = paired_f1_difference(counts), paired_f1_difference(swapped)
    assert backward.difference == pytest.approx(-forward.difference, abs=1e-12)
    assert backward.standard_error == pytest.approx(forward.standard_error, abs=1e-12)
    assert 0.0 <= forward.incumbent_f1 <= 1.0 and 0.0 <= forward.challenger_f1 <= 1.0


@given(counts_8)
def test_identical_decisions_carry_no_evidence(counts: np.ndarray) -> None:
    same = counts * np.array([1, 0, 0, 1, 1, 0, 0, 1])  # incumbent == challenger everywhere
    estimate = paired_f1_difference(same)
    assert estimate.difference == 0.0 and estimate.standard_error == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(1, 20_000), max_size=12),
    better=st.booleans(),
)
def test_the_verdict_does_not_depend_on_how_outcomes_are_batched(
    seed: int, cuts: list[int], better: bool
) -> None:
    rng = np.random.default_rng(seed)
    recall = (0.45, 0.75 if better else 0.45)
    stream = decisions(rng, 20_000, rate=0.02, recall=recall, false_alarm=(0.01, 0.008))
    reference = ShadowComparison(**SMALL)
    run(reference, stream, batch=500)
    batched = ShadowComparison(**SMALL)
    edges = [0, *sorted(set(cuts)), 20_000]
    for start, stop in itertools.pairwise(edges):
        batched.update(*(a[start:stop] for a in stream))
    assert batched.verdict == reference.verdict
    assert batched.n_outcomes == reference.n_outcomes
    assert batched.evidence() == reference.evidence()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_benchmark_reports_every_measurement_on_a_tiny_plan(tmp_path: Path) -> None:
    import bench.shadow as bench

    tiny = replace(
        bench.QUICK, train_events=20_000, pool_events=100_000, null_runs=4, count_runs=50
    )
    section = bench.run_benchmark(replace(tiny, power_runs=4), "python -m bench.shadow --quick")
    for heading in (
        "### False promotions of an equal-quality challenger",
        "### Outcomes to promote a challenger +0.05 F1 better, and to roll back",
        "### Cost",
    ):
        assert heading in section, heading
    assert "| 2% | promotion | 4 |" in section and "| 2% | rollback | 4 |" in section
    assert "nan" not in section
    out = tmp_path / "benchmarks.md"
    write_section(out, "shadow", section)
    assert out.read_text(encoding="utf-8").count("<!-- shadow:begin -->") == 1


def test_a_checkpointed_comparison_resumes_where_it_stopped() -> None:
    rng = np.random.default_rng(8)
    stream = decisions(rng, 20_000, rate=0.02, recall=(0.45, 0.65), false_alarm=(0.01, 0.007))
    uninterrupted = ShadowComparison(**SMALL)
    run(uninterrupted, stream)
    first = ShadowComparison(**SMALL)
    first.update(*(a[:2_250] for a in stream))
    saved = json.loads(json.dumps(first.state()))
    resumed = ShadowComparison.from_state(saved)
    assert resumed.n_outcomes == 2_250 and resumed.verdict is None
    run(resumed, tuple(a[2_250:] for a in stream))
    assert resumed.verdict == uninterrupted.verdict == "better"
    assert resumed.evidence() == uninterrupted.evidence()
    done = ShadowComparison.from_state(resumed.state())
    assert done.verdict == "better" and done.update(*(a[:5] for a in stream)) == "better"
    with pytest.raises(ValueError, match="8 counts"):
        ShadowComparison.from_state({**saved, "counts": [1, 2, 3]})


@pytest.mark.parametrize("min_improvement", [None, 0.05])
def test_the_futility_settings_survive_a_checkpoint(min_improvement: float | None) -> None:
    rng = np.random.default_rng(13)
    stream = decisions(rng, 20_000, rate=0.02, recall=(0.5, 0.5), false_alarm=(0.01, 0.01))
    settings_ = {**SMALL, "min_improvement": min_improvement, "futility_beta": 0.1}
    uninterrupted = ShadowComparison(**settings_)  # type: ignore[arg-type]
    run(uninterrupted, stream)
    first = ShadowComparison(**settings_)  # type: ignore[arg-type]
    first.update(*(a[:2_250] for a in stream))
    saved = json.loads(json.dumps(first.state()))
    assert saved["min_improvement"] == min_improvement and saved["futility_beta"] == 0.1
    resumed = ShadowComparison.from_state(saved)
    assert resumed.min_improvement == min_improvement and resumed.futility_beta == 0.1
    run(resumed, tuple(a[2_250:] for a in stream))
    assert resumed.evidence() == uninterrupted.evidence()
    assert resumed.n_outcomes == uninterrupted.n_outcomes


def test_a_state_saved_before_futility_existed_loads_with_the_defaults() -> None:
    old = {
        "alpha": 0.05,
        "margin": 0.0,
        "min_outcomes": 2_000,
        "max_outcomes": 50_000,
        "look_every": 500,
        "counts": [4_800, 30, 30, 40, 40, 10, 10, 40],
        "verdict": "undecided",
    }
    test = ShadowComparison.from_state(old)
    assert test.min_improvement == 0.03 and test.futility_beta == 0.2
    assert test.n_outcomes == 5_000 and test.verdict is None
    assert test.evidence()["futility"] == "beta_spending_pocock"
    assert test.state() == {**old, "min_improvement": 0.03, "futility_beta": 0.2}


def test_the_benchmarks_count_level_runs_are_the_real_test() -> None:
    import bench.shadow as bench

    rng = np.random.default_rng(9)
    table = np.array([0.975, 0.002, 0.002, 0.002, 0.006, 0.003, 0.002, 0.006])
    batches = rng.multinomial(bench.BATCH, table / table.sum(), size=(30, 100))
    for name in bench.DESIGNS:
        better_at, retired_at = bench.verdicts_at(batches, bench.design_of(name))
        for run_batches, better, retired in zip(batches, better_at, retired_at, strict=True):
            test = bench.design_of(name)
            for counts in run_batches:
                cells = np.repeat(np.arange(8), counts)
                rng.shuffle(cells)
                if test.update(cells >> 2 & 1, cells >> 1 & 1, cells & 1) is not None:
                    break
            assert np.isfinite(better) != np.isfinite(retired)
            assert (test.verdict == "better") == np.isfinite(better)
            assert test.n_outcomes == min(better, retired)
        assert 0 < np.isfinite(better_at).sum() < 30  # both kinds of run are compared
        if name == "futility":  # and futility stops before the horizon
            assert (retired_at < 50_000).any()
