"""The scorer's and the trainer's periodic one-line status."""

from __future__ import annotations

import argparse
import logging
import re
import time

import pytest

from metasignal.stream.config import add_settings
from metasignal.stream.options import SCORER_SETTINGS, ScorerOptions
from metasignal.stream.scorer import Scorer
from metasignal.stream.status import StatusClock, scorer_status, trainer_status
from metasignal.stream.topics import Topics
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.settings import TRAINER_SETTINGS
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import memory_bus, publish_model, send_raw, send_votes, versioned

TOPICS = Topics(prefix="status.")
SCORER_LINE = re.compile(
    r"^status: \d+ votes/s, \d+ signals \(\d+ trades\), \d+ dead letters, lag (\d+|-), "
    r"(model v\d+|no model yet)$"
)
TRAINER_LINE = re.compile(
    r"^status: \d+ requests answered \(\d+ published, \d+ refused by the gate, \d+ skipped, "
    r"\d+ failed\), (last published v\d+|nothing published yet), (champion v\d+|no champion yet)$"
)


def test_the_scorer_line_names_throughput_totals_lag_and_model() -> None:
    line = scorer_status(
        votes_per_s=812.6, signals=10_000, trades=97, dlq=2, lag=40, model_version=3
    )
    assert (
        line == "status: 813 votes/s, 10000 signals (97 trades), 2 dead letters, lag 40, model v3"
    )
    assert SCORER_LINE.match(line)
    assert SCORER_LINE.match(
        scorer_status(votes_per_s=0, signals=0, trades=0, dlq=0, lag=None, model_version=None)
    )


def test_the_trainer_line_counts_answers_by_outcome() -> None:
    line = trainer_status(published=2, refused=1, skipped=3, failed=1, last_published=4, champion=4)
    assert line == (
        "status: 7 requests answered (2 published, 1 refused by the gate, 3 skipped, "
        "1 failed), last published v4, champion v4"
    )
    assert TRAINER_LINE.match(
        trainer_status(
            published=0, refused=0, skipped=0, failed=0, last_published=None, champion=None
        )
    )


def test_the_clock_is_due_once_per_interval_and_never_when_disabled() -> None:
    clock = StatusClock(10.0, now=0.0)
    assert [clock.due(now=t) for t in (5.0, 10.0, 12.0, 21.0)] == [None, 10.0, None, 11.0]
    off = StatusClock(0.0, now=0.0)
    assert off.due(now=1e9) is None


def test_the_interval_is_a_setting_of_both_services() -> None:
    assert ScorerOptions().status_interval_s == TrainerOptions().status_interval_s == 30.0
    for settings in (SCORER_SETTINGS, TRAINER_SETTINGS):
        parser = argparse.ArgumentParser()
        add_settings(parser, settings, environ={"METASIGNAL_STATUS_INTERVAL_S": "5"})
        assert parser.parse_args([]).status_interval_s == 5.0
        assert parser.parse_args(["--status-interval-s", "0"]).status_interval_s == 0.0


def status_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and "status:" in r.message]


def logged_status(service: Scorer | TrainerService, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Step ``service`` until it logs a status line (10 s at most), then close it: the status
    lines it logged (at least one)."""
    logger = "metasignal.scorer" if isinstance(service, Scorer) else "metasignal.trainer"
    caplog.set_level(logging.INFO, logger=logger)
    deadline = time.monotonic() + 10
    while not status_lines(caplog, logger) and time.monotonic() < deadline:
        service.step()
        time.sleep(0.01)
    service.close()
    lines = status_lines(caplog, logger)
    assert lines, "no status line logged"
    return lines


def test_the_scorer_logs_its_status_on_the_memory_bus(
    committee: Committee, artifact_body: dict, caplog: pytest.LogCaptureFixture
) -> None:
    bus = memory_bus(TOPICS)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_votes(bus, TOPICS, committee, 0, 300)
    send_raw(bus, TOPICS.votes, [(b"bad", b"{not json")])
    scorer = Scorer(
        transport=bus,
        options=ScorerOptions(
            topics=TOPICS, poll_timeout_ms=0, status_interval_s=0.05, lag_interval_s=0.0
        ),
        keys=[TEST_KEY],
    )
    lines = logged_status(scorer, caplog)
    assert all(SCORER_LINE.match(line) for line in lines), lines
    assert lines[-1].endswith(
        f", 300 signals ({scorer.stats.trades} trades), 1 dead letters, lag 0, model v1"
    )


def test_the_trainer_logs_its_status_on_the_memory_bus(
    artifact_body: dict, caplog: pytest.LogCaptureFixture
) -> None:
    bus = memory_bus(TOPICS)
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    trainer = TrainerService(
        transport=bus,
        options=TrainerOptions(topics=TOPICS, poll_timeout_ms=0, status_interval_s=0.05),
        keys=[TEST_KEY],
    )
    send_raw(bus, TOPICS.control, [(b"meta", b"{not a request")])
    lines = logged_status(trainer, caplog)
    assert all(TRAINER_LINE.match(line) for line in lines), lines
    assert lines[-1] == (
        "status: 1 requests answered (0 published, 0 refused by the gate, 0 skipped, "
        "1 failed), nothing published yet, champion v1"
    )
