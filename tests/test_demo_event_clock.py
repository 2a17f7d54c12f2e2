"""The demo on the memory bus runs by the event clock (same seed, same numbers), and the first
Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from metasignal.trainer.demo import DemoOptions, run_demo
from tests.conftest import REPO
from tests.streaming import wait_for
from tests.test_demo import demo_topics

# Everything in the summary that the stream decides (not wall time: seconds, latency).
DECIDED = (
    "votes",
    "signals",
    "trades",
    "dlq",
    "model_versions",
    "live",
    "drift_events",
    "retrains",
    "retunes",
    "label_shift_retunes",
    "f1_after_drift",
    "f1_after_drift_without_loop",
    "f1_before_drift",
    "f1_by_segment",
)


def decided(tmp_path: Path, seed: int, run: str) -> dict[str, Any]:
    summary = run_demo(DemoOptions(events=24_000, seed=seed, rate=0.0, out=tmp_path / run))
    return {key: summary[key] for key in DECIDED}


def test_the_same_seed_gives_the_same_numbers_on_every_run(tmp_path: Path) -> None:
    first = decided(tmp_path, seed=7, run="a")
    # The comparison covers the loop: drift was requested and a new model served. The label
    # shift is seen from the scores first (a label-free re-tune), the decay from outcomes.
    events = [(event["kind"], event["source"]) for event in first["drift_events"]]
    assert events[0] == ("label_shift", "label_free")
    assert ("retrain", "outcomes") in events[1:]
    assert len(first["model_versions"]) >= 2
    assert decided(tmp_path, seed=7, run="b") == first
    other = decided(tmp_path, seed=8, run="c")
    assert other["f1_after_drift"] != first["f1_after_drift"]
    assert other["drift_events"] != first["drift_events"]


def interrupt_demo(tmp_path: Path, *extra: str) -> tuple[int, float, list[str], str]:
    """Start a demo, send SIGINT once it streams; its exit code, seconds to exit, stderr
    lines and stdout."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    # Paced slowly enough that the stream is still running when the signal comes.
    argv = ["demo", "--events", "30000", "--rate", "300", "--out", str(tmp_path / "out"), *extra]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "metasignal.trainer.cli", *argv],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=stdout,
            stderr=stderr,
            # A shell that starts a job in the background (as CI may) leaves SIGINT ignored,
            # and a child inherits that; a user's Ctrl-C reaches a foreground process.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # The live line ("  votes  N/M ..."), not the "streaming ... live votes" banner:
            # the signal must come while votes stream.
            assert wait_for(lambda: "\n  votes " in out.read_text(), timeout=120)
            process.send_signal(signal.SIGINT)
            sent = time.monotonic()
            code = process.wait(timeout=60)
            waited = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, waited, err.read_text().strip().splitlines(), out.read_text()


def test_the_first_ctrl_c_stops_the_demo_with_one_line(tmp_path: Path) -> None:
    code, waited, lines, printed = interrupt_demo(tmp_path)
    assert code == 130
    assert waited < 10
    assert len(lines) == 1, lines
    assert lines[0].startswith("metasignal: interrupted (demo stopped at live vote ")
    assert lines[0].endswith(" of 24000)")
    assert "timeline" not in printed  # it stopped, it did not carry on to the end


@pytest.mark.kafka
def test_the_first_ctrl_c_stops_a_demo_on_a_broker_and_deletes_its_topics(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    code, waited, lines, printed = interrupt_demo(tmp_path, "--bootstrap", kafka_bootstrap)
    assert code == 130
    assert waited < 30  # threads told to stop finish their batch, then the topics go
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"metasignal: interrupted \(demo stopped at live vote \d+ of 24000; "
        r"deleted its topics demo-[0-9a-f]{8}\.\*\)",
        lines[0],
    )
    assert not any(demo_topics(printed, kafka_bootstrap).values())
