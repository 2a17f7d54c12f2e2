"""Smoke test of the streaming benchmark: the in-process part of ``--quick``, no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

bench = pytest.importorskip("bench.stream")
pytest.importorskip("psutil")  # the benchmark's machine notes and workers use it


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_inproc_writes_its_table_and_keeps_other_sections(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    other = "<!-- trainer:begin -->\n## Trainer\n\nkept\n<!-- trainer:end -->\n"
    out.write_text(f"# Benchmarks\n\n{other}", encoding="utf-8")
    argv = ["--out", str(out), "--quick", "--parts", "inproc"]
    assert bench.main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert other in text
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    section = text[text.index(bench.BEGIN) : text.index(bench.END)]
    assert "Command: `python -m bench.stream --out" in section
    assert "### 1. In-process hot path" in section
    rows = [line for line in section.splitlines() if line.startswith("| stdlib json |")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    shares = [float(cell.split("(")[1].split("%")[0]) for cell in cells[1:4]]
    assert abs(sum(shares) - 100) <= 2  # decode + score + encode make up the pipeline
    assert float(cells[4].replace(",", "")) > 0  # pipeline votes/s
    assert float(cells[5]) == pytest.approx(1.0)  # the baseline against itself
    assert float(cells[6].replace(",", "")) > 0  # Scorer.step votes/s
    assert "Not run this time: throughput, latency, memory." in section
    # Writing again replaces the section instead of appending another one.
    bench.write_section(out, f"{bench.BEGIN}\nnew\n{bench.END}\n")
    again = out.read_text(encoding="utf-8")
    assert again.count(bench.BEGIN) == 1 and "\nnew\n" in again and other in again
