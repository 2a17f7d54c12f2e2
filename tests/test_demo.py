from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from metasignal.stream.errors import MetasignalError
from metasignal.stream.scorer import Scorer
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer import demo
from metasignal.trainer.cli import main
from metasignal.trainer.demo import DemoOptions, run_demo
from tests.streaming import wait_for


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
    # Unpaced: on the memory bus the demo runs by the event clock, so the trainer's answers
    # land at the same events however fast or loaded the machine is.
    code = main(["demo", "--events", "60000", "--rate", "0", "--out", str(tmp_path / "out"),
                 "--summary-json", str(path)])  # fmt: skip
    assert code == 0
    summary = json.loads(path.read_text())
    assert summary["transport"] == "memory"
    check_summary(summary, live_events=48_000)
    events = summary["drift_events"]
    assert {event["source"] for event in events} <= {"label_free", "outcomes"}
    # The rate step is a label shift: the scores show it, and a label-free re-tune is asked
    # for (and published) before any outcome-based request; the decaying member then asks
    # for a retrain from the outcomes (the gate may still refuse a candidate fitted on a
    # half-decayed window, so only the request must come).
    assert (events[0]["kind"], events[0]["source"]) == ("label_shift", "label_free")
    assert any(e["kind"] == "retrain" and e["source"] == "outcomes" for e in events[1:])
    assert summary["label_shift_retunes"] == 1 and len(summary["model_versions"]) >= 2
    # Judged on what it changes (not significantly worse, better calibrated): published.
    assert not any(r["kind"] == "label_shift" for r in summary["refused_candidates"])
    # The rate step is at live event 12000: detection after it, within 2,000 events (a 4x
    # step is plain in the scores), thousands of events before the outcomes could tell.
    assert 12_000 < events[0]["at"] < 14_000
    first_outcome = min(e["at"] for e in events if e["source"] == "outcomes")
    assert first_outcome > events[0]["at"] + 5_000
    # Under a label shift the ranking holds and F1 rises with the rate; the re-tuned and
    # retrained models must keep that (a wrongly shifted calibration would trade too much).
    assert summary["f1_after_drift"] > summary["f1_before_drift"] + 0.1
    timeline = (tmp_path / "out" / "timeline.html").read_text()
    assert timeline.count('<img src="data:image/png;base64,') == 1  # the three panels
    for kind in ("label_shift", "retrain"):
        assert timeline.count(f'data-kind="{kind}"') == sum(
            1 for event in events if event["kind"] == kind
        )
    assert timeline.count('data-kind="refused"') == summary["refused"]
    assert "<pre" not in timeline


def test_no_loop_baseline_keeps_the_first_model(tmp_path: Path) -> None:
    summary = run_demo(DemoOptions(events=40_000, out=tmp_path, rate=0.0, loop=False))
    assert summary["model_versions"] == [1]
    assert summary["retrains"] == summary["retunes"] == 0
    assert summary["f1_after_drift"] == pytest.approx(summary["f1_after_drift_without_loop"])


def demo_topics(printed: str, bootstrap: str, *, deleted: bool = True) -> dict[str, bool]:
    """The demo's topics (from the prefix it prints) and whether each still exists.

    A deletion the broker acknowledged reaches its metadata a moment later, so with
    ``deleted`` the check gives it up to 30 s to show.
    """
    (prefix,) = re.findall(r"^topics (demo-[0-9a-f]{8}\.)\* on ", printed, flags=re.MULTILINE)
    names = [spec.name for spec in topic_specs(Topics(prefix=prefix))]
    transport = KafkaTransport(bootstrap=bootstrap)
    try:

        def exists() -> dict[str, bool]:
            return {name: transport.partition_count(name) is not None for name in names}

        if deleted:
            wait_for(lambda: not any(exists().values()), timeout=30.0, interval=0.5)
        return exists()
    finally:
        transport.close()


@pytest.mark.kafka
def test_demo_closes_the_loop_on_the_real_broker(
    tmp_path: Path, kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_demo(
        DemoOptions(
            events=60_000, out=tmp_path, bootstrap=kafka_bootstrap, rate=0.0, exactly_once=True
        )
    )
    printed = capsys.readouterr().out
    assert "deleted the demo's topics demo-" in printed
    assert not any(demo_topics(printed, kafka_bootstrap).values())
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


@pytest.mark.kafka
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("keep", [False, True])
def test_an_aborted_demo_on_a_broker_deletes_its_topics_unless_kept(
    tmp_path: Path,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keep: bool,
) -> None:
    def crash(self: Scorer, records: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Scorer, "process", crash)
    argv = ["demo", "--events", "20000", "--no-loop", "--out", str(tmp_path)]
    argv += ["--bootstrap", kafka_bootstrap, *(["--keep-topics"] if keep else [])]
    assert main(argv) == 2
    exists = demo_topics(capsys.readouterr().out, kafka_bootstrap, deleted=not keep)
    assert len(exists) == 8
    assert all(exists.values()) if keep else not any(exists.values())


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
