"""Smoke test of ``python -m bench.stream_inproc --baseline``: both trees run, same signals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_baseline_comparison_writes_its_section_and_checks_the_signals(
    tmp_path: Path,
) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept\n")
    subprocess.run(
        [sys.executable, "-m", "bench.stream_inproc", "--baseline", "HEAD", "--votes", "1000",
         "--rounds", "1", "--passes", "1", "--out", str(out)],
        cwd=REPO, check=True, capture_output=True, timeout=280,
    )  # fmt: skip
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")
    section = text.split("<!-- stream-inproc:begin -->", 1)[1].split("<!-- stream-inproc:end -->")[
        0
    ]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| baseline HEAD", "| this tree"]
    # HEAD is this tree's own commit: the same step, so the same bytes.
    assert "byte-identical" in section
    assert "Goal (issue 12)" in section
