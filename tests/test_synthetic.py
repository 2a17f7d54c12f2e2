from __future__ import annotations

import csv
import doctest
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metasignal.trainer import synthetic
from metasignal.trainer.synthetic import Committee, RateStep, generate_committee


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC AUC; the votes are continuous so ties are negligible."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _logits(votes: np.ndarray) -> np.ndarray:
    return np.log(votes) - np.log1p(-votes)


def _assert_rate_close(labels: np.ndarray, target: float, sigmas: float = 4.0) -> None:
    n = len(labels)
    tolerance = sigmas * math.sqrt(target * (1 - target) / n)
    assert abs(labels.mean() - target) < tolerance, (labels.mean(), target, tolerance)


def _arrays(c: Committee) -> list[np.ndarray]:
    return [c.ids, c.time_ms, c.votes, c.labels]


def test_module_doctests() -> None:
    result = doctest.testmod(synthetic)
    assert result.attempted > 0
    assert result.failed == 0


def test_shapes_and_dtypes() -> None:
    c = generate_committee(n_events=500, n_members=5, seed=1)
    assert len(c) == 500
    assert c.members == ("m1", "m2", "m3", "m4", "m5")
    assert c.votes.shape == (500, 5)
    assert c.votes.dtype == np.float64
    assert c.labels.dtype == np.int8
    assert set(np.unique(c.labels).tolist()) <= {0, 1}
    assert c.time_ms.dtype == np.int64
    assert c.ids.dtype.kind == "U"


def test_same_seed_is_identical_and_other_seed_differs() -> None:
    kwargs: dict[str, Any] = {
        "n_events": 5_000,
        "rate_steps": [RateStep(at=0.5, positive_rate=0.1)],
        "decaying_member": 2,
    }
    a = generate_committee(**kwargs, seed=42)
    b = generate_committee(**kwargs, seed=42)
    c = generate_committee(**kwargs, seed=43)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.members == b.members
    assert not np.array_equal(a.votes, c.votes)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(a.time_ms, c.time_ms)


@pytest.mark.parametrize("rate", [0.005, 0.02, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_realised_positive_rate_tracks_target(rate: float, seed: int) -> None:
    c = generate_committee(n_events=200_000, positive_rate=rate, seed=seed)
    _assert_rate_close(c.labels, rate)
    assert c.positive_rate == pytest.approx(c.labels.mean())


def test_rate_steps_each_segment_matches_its_target() -> None:
    n = 300_000
    steps = [RateStep(at=0.4, positive_rate=0.08), RateStep(at=0.7, positive_rate=0.005)]
    c = generate_committee(n_events=n, positive_rate=0.02, rate_steps=steps, seed=5)
    _assert_rate_close(c.labels[:120_000], 0.02)
    _assert_rate_close(c.labels[120_000:210_000], 0.08)
    _assert_rate_close(c.labels[210_000:], 0.005)


@pytest.mark.parametrize(("at", "first_new"), [(0.25, 250), (0.3337, 334), (0.0, 0)])
def test_rate_step_boundary_is_first_event_at_or_after_fraction(at: float, first_new: int) -> None:
    # Near-0 and near-1 rates make the labels themselves reveal the boundary exactly.
    c = generate_committee(
        n_events=1_000,
        positive_rate=1e-9,
        rate_steps=[RateStep(at=at, positive_rate=1 - 1e-9)],
        seed=0,
    )
    np.testing.assert_array_equal(c.labels, np.r_[np.zeros(first_new), np.ones(1_000 - first_new)])


def test_rate_step_at_zero_replaces_initial_rate() -> None:
    c = generate_committee(
        n_events=100_000, positive_rate=0.3, rate_steps=[RateStep(0.0, 0.01)], seed=2
    )
    _assert_rate_close(c.labels, 0.01)


def test_decaying_member_loses_signal_but_keeps_spread() -> None:
    n = 200_000
    c = generate_committee(n_events=n, decaying_member=2, decay_start=0.5, seed=3)
    logits = _logits(c.votes)
    early, late = slice(0, int(0.45 * n)), slice(int(0.95 * n), n)
    corr_early = np.corrcoef(logits[early, 2], c.labels[early])[0, 1]
    corr_late = np.corrcoef(logits[late, 2], c.labels[late])[0, 1]
    assert corr_early > 0.15
    assert abs(corr_late) < 0.05
    # A healthy member stays informative at the end.
    assert np.corrcoef(logits[late, 3], c.labels[late])[0, 1] > 0.15
    # Same marginal spread: it degrades into noise, not into a constant.
    assert logits[late, 2].std() == pytest.approx(logits[early, 2].std(), rel=0.05)


def test_decay_only_affects_the_decaying_member() -> None:
    plain = generate_committee(n_events=2_000, seed=9)
    decayed = generate_committee(n_events=2_000, decaying_member=0, decay_start=0.2, seed=9)
    np.testing.assert_array_equal(plain.votes[:, 1:], decayed.votes[:, 1:])
    np.testing.assert_array_equal(plain.labels, decayed.labels)
    # Before decay_start the decaying member is untouched too.
    np.testing.assert_array_equal(plain.votes[:400, 0], decayed.votes[:400, 0])
    assert not np.array_equal(plain.votes[400:, 0], decayed.votes[400:, 0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"skill": 10.0},
        {"skill": 0.0},
        {"bias": 60.0},
        {"bias": -60.0},
        {"noise_correlation": 1.0},
        {"noise_correlation": 0.0},
        {"positive_rate": 1e-6},
        {"positive_rate": 0.999},
    ],
)
def test_votes_strictly_inside_unit_interval(kwargs: dict[str, Any]) -> None:
    c = generate_committee(n_events=20_000, **kwargs, seed=4)
    assert np.all(c.votes > 0.0)
    assert np.all(c.votes < 1.0)
    assert np.all(np.isfinite(_logits(c.votes)))


def test_time_strictly_increasing_and_irregular() -> None:
    c = generate_committee(n_events=10_000, start_ms=1_000, step_ms=250, seed=6)
    gaps = np.diff(c.time_ms)
    assert np.all(gaps > 0)
    assert c.time_ms[0] >= 1_000
    assert len(np.unique(gaps)) > 1
    assert gaps.mean() == pytest.approx(250, rel=0.05)


def test_time_with_one_ms_step_is_a_plain_grid() -> None:
    c = generate_committee(n_events=100, start_ms=5, step_ms=1)
    np.testing.assert_array_equal(c.time_ms, np.arange(5, 105))


def test_ids_unique_and_formatted() -> None:
    c = generate_committee(n_events=12_345, seed=0)
    assert len(np.unique(c.ids)) == len(c)
    assert str(c.ids[0]) == "evt-0000001"
    assert str(c.ids[-1]) == "evt-0012345"
    assert c.ids.dtype == np.dtype("<U11")


def test_more_skilled_members_have_higher_auc() -> None:
    skills = [0.0, 0.3, 0.7, 1.2, 2.0]
    c = generate_committee(n_events=100_000, n_members=5, skill=skills, seed=8)
    aucs = [_auc(c.labels, c.votes[:, j]) for j in range(5)]
    assert aucs == sorted(aucs), aucs
    assert aucs[0] == pytest.approx(0.5, abs=0.03)
    assert aucs[-1] > 0.9
    # A zero-skill member is noise, not a constant.
    assert _logits(c.votes[:, 0]).std() > 0.2


def test_default_skill_spread_orders_members() -> None:
    c = generate_committee(n_events=200_000, seed=10)
    aucs = np.array([_auc(c.labels, c.votes[:, j]) for j in range(8)])
    assert aucs[-1] - aucs[0] > 0.05
    assert np.corrcoef(aucs, np.arange(8))[0, 1] > 0.95


def test_bias_shifts_member_logits() -> None:
    base = generate_committee(n_events=1_000, n_members=3, seed=11)
    shifted = generate_committee(n_events=1_000, n_members=3, bias=[0.0, 1.0, -2.0], seed=11)
    diff = _logits(shifted.votes) - _logits(base.votes)
    np.testing.assert_allclose(diff, np.broadcast_to([0.0, 1.0, -2.0], diff.shape), atol=1e-6)


def test_noise_correlation_raises_member_agreement_among_negatives() -> None:
    def mean_off_diagonal(rho: float) -> float:
        c = generate_committee(n_events=50_000, noise_correlation=rho, seed=12)
        corr = np.corrcoef(_logits(c.votes[c.labels == 0]).T)
        return float(corr[~np.eye(len(corr), dtype=bool)].mean())

    assert mean_off_diagonal(0.0) < mean_off_diagonal(0.3) < mean_off_diagonal(0.8)


def test_meta_problem_is_neither_trivial_nor_hopeless() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve

    def best_f1(y: np.ndarray, score: np.ndarray) -> float:
        precision, recall, _ = precision_recall_curve(y, score)
        return float((2 * precision * recall / np.maximum(precision + recall, 1e-12)).max())

    c = generate_committee(n_events=300_000, positive_rate=0.02, seed=13)
    x, y = _logits(c.votes), c.labels
    cut = int(0.7 * len(c))
    model = LogisticRegression(class_weight="balanced", max_iter=1_000).fit(x[:cut], y[:cut])
    meta = best_f1(y[cut:], model.decision_function(x[cut:]))
    single = max(best_f1(y[cut:], x[cut:, j]) for j in range(x.shape[1]))
    assert 0.3 < meta < 0.7
    assert meta > single + 0.04, (meta, single)


def test_slice_returns_views_and_keeps_members() -> None:
    c = generate_committee(n_events=100, n_members=3, member_names=["a", "b", "c"], seed=0)
    s = c.slice(10, 20)
    assert len(s) == 10
    assert s.members == ("a", "b", "c")
    np.testing.assert_array_equal(s.votes, c.votes[10:20])
    np.testing.assert_array_equal(s.ids, c.ids[10:20])
    assert np.shares_memory(s.votes, c.votes)
    assert len(c.slice(-5, 100)) == 5
    empty = c.slice(50, 50)
    assert len(empty) == 0
    assert math.isnan(empty.positive_rate)


def test_committee_rejects_inconsistent_arrays() -> None:
    c = generate_committee(n_events=10, n_members=2)
    with pytest.raises(ValueError, match="inconsistent lengths"):
        Committee(c.ids, c.time_ms[:5], c.members, c.votes, c.labels)
    with pytest.raises(ValueError, match="votes must have shape"):
        Committee(c.ids, c.time_ms, ("only",), c.votes, c.labels)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_to_csv_ms_round_trip_is_exact(tmp_path: Path) -> None:
    c = generate_committee(
        n_events=30_000, n_members=4, member_names=["alpha", "beta", "gamma", "delta"], seed=14
    )
    path = tmp_path / "committee.csv"
    c.to_csv(path)
    header, rows = _read_csv(path)
    assert header == ["id", "ts", "alpha", "beta", "gamma", "delta", "label"]
    assert len(rows) == len(c)
    np.testing.assert_array_equal(np.array([r[0] for r in rows]), c.ids)
    np.testing.assert_array_equal(np.array([int(r[1]) for r in rows], dtype=np.int64), c.time_ms)
    votes = np.array([[float(v) for v in r[2:6]] for r in rows])
    assert np.array_equal(votes, c.votes)  # bit-exact, not approximately equal
    np.testing.assert_array_equal(np.array([int(r[6]) for r in rows]), c.labels)


def test_to_csv_iso_parses_back_to_same_ms(tmp_path: Path) -> None:
    c = generate_committee(n_events=2_000, n_members=2, step_ms=1_234, seed=15)
    path = tmp_path / "committee_iso.csv"
    c.to_csv(str(path), time_format="iso")
    _, rows = _read_csv(path)
    assert rows[0][1].endswith("Z")
    parsed = [datetime.fromisoformat(r[1]) for r in rows]
    assert all(d.utcoffset() == timedelta(0) for d in parsed)
    ms = np.array([round(d.timestamp() * 1000) for d in parsed], dtype=np.int64)
    np.testing.assert_array_equal(ms, c.time_ms)
    votes = np.array([[float(v) for v in r[2:4]] for r in rows])
    assert np.array_equal(votes, c.votes)


def test_to_csv_empty_and_bad_format(tmp_path: Path) -> None:
    c = generate_committee(n_events=3, n_members=1)
    path = tmp_path / "empty.csv"
    c.slice(0, 0).to_csv(path)
    assert path.read_text() == "id,ts,m1,label\n"
    with pytest.raises(ValueError, match="time_format"):
        c.to_csv(path, time_format="seconds")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_events": 0}, "n_events"),
        ({"n_members": 0}, "n_members"),
        ({"positive_rate": 0.0}, "positive_rate"),
        ({"positive_rate": 1.0}, "positive_rate"),
        ({"positive_rate": -0.1}, "positive_rate"),
        ({"rate_steps": [RateStep(at=1.0, positive_rate=0.1)]}, r"rate_steps\[0\]\.at"),
        ({"rate_steps": [RateStep(at=-0.1, positive_rate=0.1)]}, r"rate_steps\[0\]\.at"),
        ({"rate_steps": [RateStep(0.5, 0.1), RateStep(0.5, 0.2)]}, "strictly increasing"),
        ({"rate_steps": [RateStep(0.6, 0.1), RateStep(0.3, 0.2)]}, "strictly increasing"),
        ({"rate_steps": [RateStep(0.5, 1.5)]}, r"rate_steps\[0\]\.positive_rate"),
        ({"rate_steps": [RateStep(0.5, 0.0)]}, r"rate_steps\[0\]\.positive_rate"),
        ({"decaying_member": 8}, "decaying_member"),
        ({"decaying_member": -1}, "decaying_member"),
        ({"decay_start": 1.0}, "decay_start"),
        ({"skill": [1.0, 2.0]}, "skill"),
        ({"skill": -1.0}, "skill"),
        ({"skill": float("nan")}, "skill"),
        ({"bias": [0.0] * 9}, "bias"),
        ({"noise_correlation": 1.5}, "noise_correlation"),
        ({"step_ms": 0}, "step_ms"),
        ({"member_names": ["a", "b"]}, "member_names"),
        ({"member_names": ["a", "b", "c", "d", "e", "f", "g", "a"]}, "duplicate"),
        ({"member_names": ["a", "b", "c", "d", "e", "f", "g", "label"]}, "reserved"),
        ({"member_names": ["a", "b", "c", "d", "e", "f", "g", "h,i"]}, "CSV-safe"),
    ],
)
def test_validation_errors(kwargs: dict[str, Any], match: str) -> None:
    params: dict[str, Any] = {"n_events": 100, "n_members": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_committee(**params)


@settings(max_examples=40, deadline=None)
@given(
    n_events=st.integers(1, 300),
    n_members=st.integers(1, 6),
    rate=st.floats(1e-4, 0.9999),
    rho=st.floats(0.0, 1.0),
    skill=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_invariants_hold_for_any_valid_parameters(
    n_events: int, n_members: int, rate: float, rho: float, skill: float, seed: int
) -> None:
    c = generate_committee(
        n_events=n_events,
        n_members=n_members,
        positive_rate=rate,
        noise_correlation=rho,
        skill=skill,
        decaying_member=n_members - 1,
        seed=seed,
    )
    assert c.votes.shape == (n_events, n_members)
    assert np.all((c.votes > 0) & (c.votes < 1))
    assert np.all(np.diff(c.time_ms) > 0)
    assert len(np.unique(c.ids)) == n_events
    assert set(np.unique(c.labels).tolist()) <= {0, 1}


def test_id_prefix_names_the_events_and_must_be_csv_safe_ascii() -> None:
    c = generate_committee(n_events=12_345_678 // 1000, n_members=2, id_prefix="x-s7-", seed=0)
    assert str(c.ids[0]) == "x-s7-0000001" and str(c.ids[-1]) == "x-s7-0012345"
    for bad in ("a,b", "é-"):
        with pytest.raises(ValueError, match="CSV-safe ASCII"):
            generate_committee(n_events=3, id_prefix=bad)


def test_label_shift_moves_the_class_mix_and_keeps_each_class_alike() -> None:
    from sklearn.metrics import roc_auc_score

    step = [RateStep(0.5, 0.04)]
    shifted = generate_committee(
        n_events=400_000, positive_rate=0.01, rate_steps=step, label_shift=True, seed=3
    )
    moved = generate_committee(n_events=400_000, positive_rate=0.01, rate_steps=step, seed=3)
    half = 200_000
    for c in (shifted, moved):
        assert c.labels[:half].mean() == pytest.approx(0.01, abs=0.001)
        assert c.labels[half:].mean() == pytest.approx(0.04, abs=0.002)
    # Label shift: p(votes | label) is the same on both sides of the step...
    logits = np.log(shifted.votes / (1 - shifted.votes))
    for cls in (0, 1):
        before = logits[:half][shifted.labels[:half] == cls]
        after = logits[half:][shifted.labels[half:] == cls]
        se = np.sqrt(before.var(axis=0) / len(before) + after.var(axis=0) / len(after))
        assert np.all(np.abs(before.mean(axis=0) - after.mean(axis=0)) < 4 * se)
        assert np.all(np.abs(before.std(axis=0) / after.std(axis=0) - 1) < 0.05)

    # ...so the votes' distribution moves with the class mix (more high votes after it),
    def moved_se(c: Committee) -> np.ndarray:
        lg = np.log(c.votes / (1 - c.votes))
        se = np.sqrt((lg[:half].var(axis=0) + lg[half:].var(axis=0)) / half)
        return (lg[half:].mean(axis=0) - lg[:half].mean(axis=0)) / se

    assert np.all(moved_se(shifted) > 10)
    # while the default step moves the label threshold: the votes stay put.
    assert np.all(np.abs(moved_se(moved)) < 4)
    # Before the step both modes describe the same committee.
    for c in (shifted, moved):
        assert roc_auc_score(c.labels[:half], c.votes[:half, 7]) == pytest.approx(0.957, abs=0.01)
