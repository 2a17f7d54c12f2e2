"""The fit report and the demo timeline open in a real browser and every image renders.

Headless Chromium (Debian's ``chromium``; ``make chromium-tools`` installs it) loads each page
from disk. A probe copy of the page gets a script that, once the page has loaded, writes
every image's ``naturalWidth`` into the DOM, which ``--dump-dom`` prints; the page itself
stays script-free. A screenshot of each page is saved too (to ``$METASIGNAL_SCREENSHOTS``
when set, for attaching to a review).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.report import render_html
from metasignal.trainer.synthetic import Committee
from metasignal.trainer.timeline import MARK_KINDS, Mark, timeline_html
from tests.conftest import vote_table

pytestmark = pytest.mark.slow

PROBE = """<script>
window.addEventListener("load", () => {
  const seen = [...document.images].map((img) => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
  }));
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(seen);
  document.body.append(out);
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("METASIGNAL_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail(
            "headless Chromium is missing: `make chromium-tools` (Debian: apt-get install chromium)"
        )
    return path


def run_chromium(chromium: str, profile: Path, *args: str) -> str:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def check_page(chromium: str, page: Path, tmp_path: Path, height: int) -> Path:
    """Every image of ``page`` decodes in Chromium; returns a screenshot of the page."""
    document = page.read_text(encoding="utf-8")
    expected = document.count("<img ")
    assert expected > 0
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(document.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = run_chromium(
        chromium,
        tmp_path / f"profile-{page.stem}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        probe.as_uri(),
    )
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    assert found is not None, "the probe did not run: the page did not finish loading"
    images = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(images) == expected
    for image in images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    shot = tmp_path / f"{page.stem}.png"
    run_chromium(
        chromium,
        tmp_path / f"profile-shot-{page.stem}",
        f"--window-size=1100,{height}",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    pixels = imread(shot)
    assert pixels.shape[:2] == (height, 1100)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1])[::7], axis=0)) > 50  # not blank
    target = os.environ.get("METASIGNAL_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)
    return shot


def test_the_fit_report_renders_every_image_in_chromium(
    chromium: str, committee: Committee, tmp_path: Path
) -> None:
    table = vote_table(committee)
    # A payoff column adds the PnL table and its cumulative-PnL figure.
    noise = np.random.default_rng(0).standard_normal(len(committee.labels))
    payoff = np.where(committee.labels == 1, 2.0, -1.0) + 0.2 * noise
    report = fit_meta_model(table, FitConfig(), payoff=payoff).report
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    # threshold, PR, reliability, cumulative PnL, sizing, weights
    assert page.read_text().count("<img ") == 6
    assert 'data-plot="pnl"' in page.read_text()
    check_page(chromium, page, tmp_path, height=4200)


def test_the_demo_timeline_renders_every_image_in_chromium(chromium: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 30_000
    labels = (rng.random(n) < np.where(np.arange(n) < 12_000, 0.01, 0.04)).astype(np.int64)
    decisions = np.where(rng.random(n) < 0.6, labels, (rng.random(n) < 0.01).astype(np.int64))
    baseline = np.where(np.arange(n) < 12_000, decisions, 0)
    versions = np.where(np.arange(n) < 15_000, 1, 2)
    marks = [Mark(12_000 + 500 * i, kind, f"{kind} mark") for i, kind in enumerate(MARK_KINDS)]
    summary = {"transport": "memory", "loop": True, "f1_after_drift": 0.45, "refused": 1}
    page = tmp_path / "timeline.html"
    page.write_text(
        timeline_html(labels, decisions, baseline, versions, marks, summary), encoding="utf-8"
    )
    document = page.read_text()
    assert "<pre" not in document  # the figures are a table, not a JSON dump
    assert 'data-kind="refused"' in document
    check_page(chromium, page, tmp_path, height=1900)
