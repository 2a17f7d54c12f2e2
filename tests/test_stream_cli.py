"""The stream commands keep the user informed: `tail` says what it waits for, `replay` shows
progress on stderr (stdout keeps its one JSON line), kafka-python's slow-task noise stays out."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from metasignal.stream.cli import KAFKA_NOISE_LOGGER
from metasignal.stream.replay import ReplayProgress
from metasignal.stream.topics import OwnedTopics, Topics, topic_specs
from metasignal.stream.transport.base import TransportError
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.cli import main
from tests.conftest import REPO

NOISE = (
    "Task <Task poll> ran for 0.250s (>0.100s threshold). It is blocking the event loop -- "
    "likely a tight sync loop inside a coroutine. Other pollers will time out."
)


def test_kafka_slow_task_warnings_are_kept_out_of_user_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert main(["topics", "create"]) == 2  # sets up logging like every command, then fails
    selector = logging.getLogger(KAFKA_NOISE_LOGGER)
    with caplog.at_level(logging.WARNING):
        selector.warning(NOISE)
        selector.warning("Node 1 connection failed")
    assert [r.getMessage() for r in caplog.records] == ["Node 1 connection failed"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=KAFKA_NOISE_LOGGER):
        selector.warning(NOISE)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("DEBUG", NOISE)]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_replay_progress_rewrites_one_line_on_a_terminal() -> None:
    clock = iter([0.0, 0.2, 0.6, 1.2, 2.0]).__next__
    out = _Terminal()
    progress = ReplayProgress(1000, stream=out, clock=clock)
    for sent in (100, 300, 600):
        progress.update(sent)
    progress.finish(1000)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "\rreplay: 300/1000 votes (30%), 500/s, about 1 s left" in text
    assert "\rreplay: 1000/1000 votes (100%), 500/s, done in 2 s" in text


def _metasignal(*args: str, bootstrap: str, key: bytes) -> subprocess.CompletedProcess[str]:
    env = {"METASIGNAL_BOOTSTRAP": bootstrap, "METASIGNAL_SIGNING_KEY": key.decode()}
    return subprocess.run(
        [sys.executable, "-m", "metasignal.trainer.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.kafka
def test_tail_and_replay_say_what_they_do(
    kafka_bootstrap: str, signing_key: bytes, tmp_path: Path
) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:8]}."
    flags = ["--topic-prefix", prefix]
    run = lambda *a: _metasignal(*a, *flags, bootstrap=kafka_bootstrap, key=signing_key)  # noqa: E731

    missing = run("tail", "votes", "--max", "1")
    assert missing.returncode == 2
    assert missing.stderr == (
        f"metasignal: error: topic {prefix}votes does not exist at {kafka_bootstrap}: "
        "run `metasignal topics create` (or check --topic-prefix)\n"
    )
    assert run("topics", "create", "--partitions", "2").returncode == 0

    votes = tmp_path / "votes.csv"
    votes.write_text("id,ts,a,b\n" + "".join(f"e{i},{1000 + i},0.2,0.7\n" for i in range(50)))
    replay = run("replay", str(votes))
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["sent"] == 50  # stdout: the result line only
    assert "replay: 50/50 votes (100%)" in replay.stderr

    tail = run("tail", "votes", "--from-beginning", "--max", "50")
    assert tail.returncode == 0, tail.stderr
    banner, *rest = tail.stderr.splitlines()
    assert banner == (
        f"tail: waiting for messages on {prefix}votes (2 partitions) at {kafka_bootstrap}, "
        "from its oldest message; stops after 50 messages or on Ctrl-C"
    )
    assert rest[-1] == "tail: 50 messages"
    ids = {json.loads(line)["key"] for line in tail.stdout.splitlines()}
    assert ids == {f"e{i}" for i in range(50)}

    idle = run("tail", "votes", "--idle-exit", "1")
    assert idle.returncode == 0, idle.stderr
    assert "new messages only (--from-beginning for the whole topic)" in idle.stderr
    assert "stops after 1 s without one or on Ctrl-C" in idle.stderr
    assert idle.stdout == ""


def test_owned_topics_warn_instead_of_raising_when_deletion_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unreachable(MemoryBus):
        def delete_topics(self, names: Sequence[str]) -> list[str]:
            raise TransportError("cannot delete topics: broker gone")

    bus = Unreachable()
    specs = topic_specs(Topics(prefix="gone."))
    owned = OwnedTopics(bus, bus.create_topics(specs), keep=False)
    with caplog.at_level(logging.WARNING):
        assert owned.delete() == []
    names = ", ".join(spec.name for spec in specs)
    assert names.startswith("gone.votes, gone.signals, ")
    assert caplog.messages == [
        f"could not delete topics {names}: cannot delete topics: broker gone"
    ]
    assert owned.delete() == []  # once


def test_kept_topics_are_not_deleted() -> None:
    bus = MemoryBus()
    owned = OwnedTopics(bus, bus.create_topics(topic_specs(Topics(prefix="k."))), keep=True)
    assert owned.delete() == []
    assert bus.partition_count("k.votes") == 4
