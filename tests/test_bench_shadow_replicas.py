"""Smoke test of the two-replica shadow benchmark: both designs and both rules reported."""

from __future__ import annotations

from pathlib import Path

import bench.shadow_replicas as bench


def test_quick_plan_reports_both_designs_under_both_rules(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("<!-- shadow-replicas:begin -->\n<!-- shadow-replicas:end -->\n")
    assert bench.main(["--quick", "--runs", "5", "--out", str(out)]) == 0
    # The quick plan measures 2 % positives.
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 2% |")]
    assert [row.split(" | ")[1] for row in rows] == list(bench.RULES)
    for row in rows:
        # Two false-promotion and two promotion rates, 5 runs each.
        assert row.count("/5, 95 % upper") == 4
