from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.demo import DemoOptions, run_demo


def check_summary(summary: dict, live_events: int) -> None:
    assert summary["signals"] == live_events
    assert summary["votes"] == live_events + 3
    assert summary["dlq"] == 3
    assert summary["model_versions"] == [1]
    assert 0 < summary["trades"] < live_events * 0.1
    assert summary["latency_p99_ms"] is not None and summary["latency_p99_ms"] >= 0
    assert set(summary["live"]) == {"f1", "precision", "recall"}
    assert summary["live"]["f1"] > 0.25


def test_demo_on_the_memory_bus_writes_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    code = main(["demo", "--events", "16000", "--out", str(tmp_path / "out"),
                 "--summary-json", str(path), "--rate", "0"])  # fmt: skip
    assert code == 0
    summary = json.loads(path.read_text())
    assert summary["transport"] == "memory"
    check_summary(summary, live_events=8000)
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.kafka
def test_demo_on_the_real_broker(tmp_path: Path, kafka_bootstrap: str) -> None:
    summary = run_demo(
        DemoOptions(
            events=12_000, out=tmp_path, bootstrap=kafka_bootstrap, rate=0.0, exactly_once=True
        )
    )
    assert summary["transport"] == "kafka"
    check_summary(summary, live_events=6000)
