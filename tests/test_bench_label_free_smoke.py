"""Smoke test of the label-free benchmark on a tiny plan: every part runs and is reported."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import bench.label_free as bench
from bench.markdown import write_section

TINY = replace(
    bench.QUICK,
    train_events=30_000,
    pool_events=200_000,
    shift_runs=2,
    f1_runs=1,
    stationary_length=50_000,
    error_windows=3,
    drift_events=30_000,
)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_plan_reports_every_measurement(tmp_path: Path) -> None:
    section = bench.run_benchmark(TINY, "python -m bench.label_free --quick")
    for heading in (
        "### Events from the 1 % → 2 % step to the first re-tune request",
        "### False label-free re-tunes on stationary streams",
        "### Estimate error under pure label shift, windows of 5,000 events",
        "### Concept drift: which requests the policy makes",
        "### Hot-path cost",
        "### Goals",
    ):
        assert heading in section, heading
    rows = [line for line in section.splitlines() if line.startswith("| 1 |")]
    assert len(rows) >= 6  # delay, false alarms, two error rates, cost, ...
    assert "| 1 | decay | [" in section and "| 1 | rate_step | [" in section
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n", encoding="utf-8")
    write_section(out, "label_free", section)
    write_section(out, "label_free", section)
    text = out.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text and text.count(bench.BEGIN) == 1
