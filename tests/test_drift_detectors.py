"""Drift detectors of the positive rate: detection, false alarms, restarts, river's API."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from river import base, checks, drift

from metasignal.stream.drift.detectors import DETECTORS, BernoulliCUSUM, bernoulli_kl, make_detector


def bits(seed: int, *segments: tuple[int, float]) -> list[int]:
    """Seeded 0/1 stream made of ``(length, rate)`` segments."""
    rng = np.random.default_rng(seed)
    return [x for n, p in segments for x in (rng.random(n) < p).astype(np.int8).tolist()]


def alarms(detector: base.DriftDetector, xs: list[int]) -> list[int]:
    found = []
    for i, x in enumerate(xs):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


def first_alarm(detector: base.DriftDetector, xs: list[int]) -> int | None:
    """Index of the first alarm; the detector is left right after it (flag still up)."""
    for i, x in enumerate(xs):
        detector.update(x)
        if detector.drift_detected:
            return i
    return None


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_detects_a_step_from_1_to_4_percent_quickly(seed: int) -> None:
    # Expected delay ~ h / E[LLR] = 8.97 / 0.018 ~ 500 samples; 1,500 leaves room for noise.
    detector = BernoulliCUSUM()
    found = alarms(detector, bits(seed, (20_000, 0.01), (3_000, 0.04)))
    assert found, "no drift detected"
    assert found[0] >= 20_000, f"false alarm at {found[0]}"
    assert found[0] - 20_000 + 1 <= 1_500
    assert detector.drift_direction == "up"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detects_downward_steps(seed: int) -> None:
    # 5 % -> 1.5 %: expected delay ~ 9.68 / 0.0152 ~ 640 samples.
    detector = BernoulliCUSUM()
    xs = bits(seed, (20_000, 0.05), (4_000, 0.015))
    found = alarms(detector, xs)
    assert found and found[0] >= 20_000
    assert found[0] - 20_000 + 1 <= 2_500
    assert detector.drift_direction == "down"
    assert detector.rate is not None and detector.rate < 0.03


def test_no_alarm_on_a_stationary_1_percent_stream() -> None:
    assert alarms(BernoulliCUSUM(), bits(2024, (200_000, 0.01))) == []


def test_false_alarm_rate_is_about_one_per_million() -> None:
    # 2 M samples at 1 %: ~1.6 alarms expected at the default arl0 = 1e6 (plus a little for
    # estimating p0); a detector ten times too eager would raise ~16.
    detector = BernoulliCUSUM()
    total = sum(len(alarms(detector, bits(seed, (500_000, 0.01)))) for seed in range(4))
    assert total <= 6


def test_thresholds_follow_the_arl0_formula() -> None:
    detector = BernoulliCUSUM(p0=0.01)
    assert detector.threshold_up == pytest.approx(math.log(2e6 * bernoulli_kl(0.02, 0.01)))
    assert detector.threshold_down == pytest.approx(math.log(2e6 * bernoulli_kl(0.005, 0.01)))
    assert detector.threshold_up == pytest.approx(8.965, abs=1e-3)
    fixed = BernoulliCUSUM(p0=0.01, threshold=5.0)
    assert fixed.threshold_up == fixed.threshold_down == 5.0
    one_sided = BernoulliCUSUM(p0=0.01, ratio_down=None)
    assert one_sided.threshold_down == math.inf
    assert one_sided.threshold_up == pytest.approx(math.log(1e6 * bernoulli_kl(0.02, 0.01)))


def test_run_length_matches_the_markov_chain() -> None:
    """The implementation's in-control ARL agrees with the exact chain used by the bench."""
    from bench.drift import cusum_arl

    p, h = 0.05, 3.0
    detector = BernoulliCUSUM(p0=p, ratio_down=None, threshold=h, reestimate=False)
    xs = bits(99, (1_500_000, p))
    found = alarms(detector, xs)
    measured = len(xs) / len(found)
    predicted = cusum_arl(p, 2 * p, h, p, m=8)
    assert len(found) > 200
    assert measured == pytest.approx(predicted, rel=0.15)


def test_rate_estimate_tracks_the_in_control_rate() -> None:
    detector = BernoulliCUSUM(warmup=2_000)
    assert detector.in_warmup and detector.rate is None and detector.reference_rate is None
    xs = bits(5, (60_000, 0.02))
    assert alarms(detector, xs) == []
    assert not detector.in_warmup
    assert detector.rate == pytest.approx(sum(xs) / len(xs))
    assert detector.reference_rate == pytest.approx(0.02, rel=0.1)
    frozen = BernoulliCUSUM(warmup=2_000, track_rate=False)
    assert alarms(frozen, xs[:2_100]) == []
    assert frozen.rate == frozen.reference_rate == pytest.approx(sum(xs[:2_000]) / 2_000)


# --------------------------------------------------------------------------- restarts


def test_restart_after_a_drift_reestimates_from_the_post_change_seed() -> None:
    detector = BernoulliCUSUM(warmup=3_000)
    xs = bits(11, (20_000, 0.01), (10_000, 0.04))
    first = first_alarm(detector, xs)
    assert first is not None and 20_000 <= first < 21_000
    assert detector.drift_detected and detector.drift_direction == "up"
    post = detector.rate
    assert post is not None and post > 0.02  # the rate since the estimated change point
    assert detector.statistic_up > (detector.threshold_up or math.inf)
    # river's convention: the flag holds until the next update, which restarts the detector.
    detector.update(0)
    assert not detector.drift_detected
    assert detector.in_warmup and detector.statistic_up == detector.statistic_down == 0.0
    assert detector.rate is not None and detector.rate > 0.02  # seeded, not blank
    assert alarms(detector, xs[first + 2 :]) == []  # new regime: no further alarm
    assert not detector.in_warmup
    assert detector.reference_rate == pytest.approx(0.04, rel=0.2)
    assert detector.n_detections == 1


def test_without_reestimate_only_the_statistics_restart() -> None:
    detector = BernoulliCUSUM(p0=0.01, reestimate=False)
    found = alarms(detector, bits(3, (5_000, 0.04)))
    assert len(found) >= 2  # the reference stays at 1 %, so the 4 % regime keeps alarming
    assert detector.reference_rate == 0.01 and not detector.in_warmup


def test_reset_forgets_everything() -> None:
    detector = BernoulliCUSUM(warmup=1_000)
    alarms(detector, bits(8, (3_000, 0.01), (3_000, 0.05)))
    assert detector.n_detections >= 1
    detector._reset()
    assert not detector.drift_detected
    assert detector.n_detections == 0 and detector.drift_direction is None
    assert detector.in_warmup and detector.rate is None
    assert detector.statistic_up == detector.statistic_down == 0.0


def test_explicit_p0_monitors_from_the_first_sample() -> None:
    detector = BernoulliCUSUM(p0=0.01)
    assert not detector.in_warmup and detector.reference_rate == 0.01
    found = alarms(detector, bits(4, (3_000, 0.06)))
    assert found and found[0] < 1_000


# --------------------------------------------------------------------------- API


def test_river_drift_detector_contract() -> None:
    detector = BernoulliCUSUM()
    assert isinstance(detector, base.DriftDetector)
    untyped: Any = detector  # update() is annotated -> None: check it at run time too
    assert untyped.update(1) is None
    assert detector.drift_detected is False
    assert untyped.update(True) is None  # bools are 0/1 outcomes
    with pytest.raises(ValueError, match="0/1"):
        detector.update(0.5)
    clone = detector.clone()
    assert clone._get_params() == detector._get_params()
    assert clone.rate is None  # a clone starts afresh


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_river_estimator_checks(name: str) -> None:
    detector: Any = make_detector(name)  # river types the checks for Estimators
    ran = 0
    for check in checks.yield_checks(detector):
        if check.__name__ == "check_tags":  # for Estimators only; detectors have no tags
            continue
        check(detector.clone())
        ran += 1
    assert ran >= 10


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"warmup": 0}, "warmup"),
        ({"p0": 0.0}, "p0"),
        ({"p0": 1.5}, "p0"),
        ({"ratio_up": 1.0}, "ratio_up"),
        ({"ratio_down": 1.2}, "ratio_down"),
        ({"ratio_up": None, "ratio_down": None}, "both be None"),
        ({"threshold": 0.0}, "threshold"),
        ({"arl0": 1.0}, "arl0"),
    ],
)
def test_invalid_parameters_are_rejected(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BernoulliCUSUM(**params)  # type: ignore[arg-type]


def test_factory_builds_by_name() -> None:
    assert isinstance(make_detector(), BernoulliCUSUM)
    cusum = make_detector("CUSUM", warmup=1_000, arl0=1e7)
    assert isinstance(cusum, BernoulliCUSUM) and cusum.warmup == 1_000 and cusum.arl0 == 1e7
    adwin = make_detector("adwin", delta=0.0002)
    assert isinstance(adwin, drift.ADWIN) and adwin.delta == 0.0002
    assert isinstance(make_detector("page-hinkley"), drift.PageHinkley)


def test_factory_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown drift detector 'kswin'.*adwin, cusum"):
        make_detector("kswin")
    with pytest.raises(ValueError, match="unknown drift detector"):
        make_detector("")


def test_stream_package_does_not_import_trainer() -> None:
    root = Path(__file__).resolve().parent.parent / "stream" / "drift"
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import trainer" not in text and "from trainer" not in text, path


# --------------------------------------------------------------------------- benchmark


@pytest.mark.timeout(60)
def test_quick_benchmark_writes_its_section(tmp_path: Path) -> None:
    import bench.drift as bench

    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n<!-- trainer:begin -->\nkept\n<!-- trainer:end -->\n")
    assert bench.main(["--out", str(out), "--quick"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "<!-- trainer:begin -->\nkept\n<!-- trainer:end -->" in text
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    section = text[text.index(bench.BEGIN) :]
    assert "Command: `python -m bench.drift --out" in section
    delay = section[section.index("### Delay") : section.index("### False alarms")]
    for candidate in bench.QUICK.candidates:
        rows = [line for line in delay.splitlines() if line.startswith(f"| {candidate.label} |")]
        assert len(rows) == 1, candidate.label
    assert "| 1 % → 2 % | 0.00391 | 3,530 |" in section  # Lorden's asymptotic bound
    # A second run replaces the section instead of appending another one.
    assert bench.main(["--out", str(out), "--quick"]) == 0
    assert out.read_text(encoding="utf-8").count(bench.BEGIN) == 1
