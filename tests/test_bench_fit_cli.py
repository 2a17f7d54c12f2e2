from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fit_cli_benchmark_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept\n")
    subprocess.run(
        [sys.executable, "-m", "bench.fit_cli", "--baseline", "HEAD", "--events", "4000",
         "--rounds", "1", "--out", str(out)],
        cwd=REPO, check=True, capture_output=True, timeout=280,
    )  # fmt: skip
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n")
    section = text.split("<!-- fit-cli:begin -->", 1)[1].split("<!-- fit-cli:end -->", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| baseline HEAD", "| this tree"]
    assert "Ratios this tree / baseline" in section
