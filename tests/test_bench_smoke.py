"""Smoke test of the trainer benchmark: ``--quick`` runs end to end and writes every method."""

from __future__ import annotations

from pathlib import Path

import pytest

# `make test` installs the `bench` extra, so a missing data source fails here, never skips.
import bench.trainer as bench


@pytest.mark.slow
# About 30 s of CPU a run; the wall time on the shared 2-core machine is several times that.
@pytest.mark.timeout(400)
def test_quick_benchmark_writes_a_row_per_method(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n", encoding="utf-8")
    assert bench.main(["--out", str(out), "--quick"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "## Other\n\nkept" in text
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    section = text[text.index(bench.BEGIN) :]
    assert "Command: `python -m bench.trainer --out" in section
    summary = section[section.index("### Summary") : section.index("### Per dataset")]
    for method in bench.METHODS:
        rows = [line for line in summary.splitlines() if line.startswith(f"| {method}")]
        assert len(rows) == 1, method
        f1 = rows[0].split("|")[2].strip()
        assert 0.0 <= float(f1) <= 1.0
    gate = section[section.index("### Skill gate") : section.index("### Market panel")]
    assert "| no information | **1/1** |" in gate  # refused
    assert "| default | **0/1** |" in gate  # published
    panel = section[section.index("### Market panel") : section.index("### Timing")]
    assert panel.count("| optimal_threshold | no |") == 3  # F1 row + two PnL rows
    assert panel.count("| optimal_threshold | yes |") == 3
    # A second run replaces the section instead of appending another one.
    assert bench.main(["--out", str(out), "--quick"]) == 0
    assert out.read_text(encoding="utf-8").count(bench.BEGIN) == 1
