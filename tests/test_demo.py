from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from metasignal.stream.errors import MetasignalError
from metasignal.stream.scorer import Scorer
from metasignal.trainer import demo
from metasignal.trainer.cli import main
from metasignal.trainer.demo import DemoOptions, run_demo


def check_summary(summary: dict, live_events: int) -> None:
    assert summary["signals"] == live_events
    assert summary["votes"] == live_events + 3
    assert summary["dlq"] == 3
    assert summary["model_versions"][0] == 1
    assert 0 < summary["trades"] < live_events * 0.2
    assert summary["latency_p99_ms"] is not None and summary["latency_p99_ms"] >= 0
    assert set(summary["live"]) == {"f1", "precision", "recall"}
    assert summary["live"]["f1"] > 0.2


def test_demo_closes_the_loop_on_the_memory_bus(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    # At the demo's own pace (4,000 votes/s): unpaced, the memory bus could finish the stream
    # before the trainer's re-tune landed on a loaded machine (a race, seen twice in CI runs).
    code = main(["demo", "--events", "60000", "--out", str(tmp_path / "out"),
                 "--summary-json", str(path)])  # fmt: skip
    assert code == 0
    summary = json.loads(path.read_text())
    assert summary["transport"] == "memory"
    check_summary(summary, live_events=48_000)
    kinds = {event["kind"] for event in summary["drift_events"]}
    assert {event["source"] for event in summary["drift_events"]} <= {"label_free", "outcomes"}
    # The rate step asks for a re-tune, the decaying member for a retrain; the gate may still
    # refuse a retrain candidate fitted on a half-decayed window, so only the re-tune must land.
    assert "retune" in kinds and "retrain" in kinds
    assert summary["retunes"] >= 1
    assert len(summary["model_versions"]) >= 2
    # The rate step is at live event 12000: detection must come after it, not before.
    assert min(event["at"] for event in summary["drift_events"]) > 12_000
    assert summary["f1_after_drift"] > summary["f1_after_drift_without_loop"]
    assert (tmp_path / "out" / "timeline.html").read_text().count("<svg") == 3


def test_no_loop_baseline_keeps_the_first_model(tmp_path: Path) -> None:
    summary = run_demo(DemoOptions(events=40_000, out=tmp_path, rate=0.0, loop=False))
    assert summary["model_versions"] == [1]
    assert summary["retrains"] == summary["retunes"] == 0
    assert summary["f1_after_drift"] == pytest.approx(summary["f1_after_drift_without_loop"])


@pytest.mark.kafka
def test_demo_closes_the_loop_on_the_real_broker(tmp_path: Path, kafka_bootstrap: str) -> None:
    summary = run_demo(
        DemoOptions(
            events=60_000, out=tmp_path, bootstrap=kafka_bootstrap, rate=0.0, exactly_once=True
        )
    )
    assert summary["transport"] == "kafka"
    check_summary(summary, live_events=48_000)
    # Drift injected -> control request -> new model on `models` -> swapped in and used.
    assert summary["drift_events"]
    assert summary["retunes"] + summary["retrains"] >= 1
    assert len(summary["model_versions"]) >= 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_scorer_ends_the_demo_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(self: Scorer, records: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Scorer, "process", crash)
    code = main(["demo", "--events", "20000", "--no-loop", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("metasignal: error: demo aborted, scorer stopped")


def test_a_stalled_scorer_ends_the_demo_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a scorer left without partitions looks like: alive, polling, consuming nothing.
    monkeypatch.setattr(Scorer, "process", lambda self, records: time.sleep(0.01))
    monkeypatch.setattr(demo, "STALL_SECONDS", 2)
    started = time.monotonic()
    with pytest.raises(MetasignalError, match="no progress for 2 s"):
        run_demo(DemoOptions(events=20_000, out=tmp_path, loop=False))
    assert time.monotonic() - started < 60
