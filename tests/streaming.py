"""Helpers for stream tests: artifacts, votes in, signals out, on any transport."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from metasignal.stream.artifact import dumps_artifact, sign_artifact
from metasignal.stream.messages import encode_vote
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport.base import Transport
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.synthetic import Committee
from tests.conftest import REPO, TEST_KEY


def versioned(body: Mapping[str, Any], version: int, key: bytes | None) -> bytes:
    doc = copy.deepcopy(dict(body))
    doc["model"]["version"] = version
    return dumps_artifact(sign_artifact(doc, key)).encode()


def publish_model(
    transport: Transport, topics: Topics, artifact: bytes, name: str = "meta"
) -> None:
    producer = transport.producer()
    producer.send(topics.models, key=name.encode(), value=artifact)
    producer.flush()
    producer.close()


def send_votes(
    transport: Transport, topics: Topics, committee: Committee, start: int, stop: int
) -> list[str]:
    producer = transport.producer()
    ids = []
    for i in range(start, stop):
        event_id = str(committee.ids[i])
        votes = dict(zip(committee.members, committee.votes[i].tolist(), strict=True))
        producer.send(
            topics.votes,
            key=event_id.encode(),
            value=encode_vote(event_id, int(committee.time_ms[i]), votes),
        )
        ids.append(event_id)
    producer.flush()
    producer.close()
    return ids


def outcome_records(
    committee: Committee, start: int, stop: int, label: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Outcomes of events ``start..stop`` as (key, value): their true labels, or ``label``."""
    return [
        (
            str(committee.ids[i]).encode(),
            json.dumps(
                {
                    "id": str(committee.ids[i]),
                    "ts": int(committee.time_ms[i]),
                    "label": int(committee.labels[i]) if label is None else label,
                }
            ).encode(),
        )
        for i in range(start, stop)
    ]


def send_raw(transport: Transport, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
    producer = transport.producer()
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def decode_all(values: Iterable[bytes | None]) -> list[dict[str, Any]]:
    return [json.loads(v) for v in values if v is not None]


def decoded(bus: MemoryBus, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` on the memory bus, JSON-decoded (tombstones skipped)."""
    return decode_all(r.value for r in bus.records(topic))


def memory_bus(topics: Topics, *, partitions: int = 2) -> MemoryBus:
    """A memory bus with every topic of ``topics``."""
    bus = MemoryBus()
    bus.create_topics(topic_specs(topics, partitions=partitions))
    return bus


def memory_scorer(bus: MemoryBus, *, topics: Topics, **options: Any) -> Scorer:
    """A scorer on the memory bus, which runs in compressed time: it checks for models every
    batch and polls 5 ms unless a test says otherwise."""
    options = {"model_check_interval_s": 0.0, "poll_timeout_ms": 5, **options}
    return Scorer(transport=bus, options=ScorerOptions(topics=topics, **options), keys=[TEST_KEY])


def drain(*services: Any, rounds: int = 400) -> None:
    """Step ``services`` (anything with ``step() -> records handled``) until three rounds in a
    row handle nothing, or ``rounds`` have passed."""
    idle = 0
    while idle < 3 and rounds:
        idle = idle + 1 if sum(service.step() for service in services) == 0 else 0
        rounds -= 1


def send_training_rows(
    transport: Transport, topics: Topics, committee: Committee, labels: Iterable[int]
) -> None:
    """Joined rows as a scorer would write them (all scored by model v1)."""
    producer = transport.producer()
    for i, label in enumerate(labels):
        event_id = str(committee.ids[i])
        row = {
            "id": event_id,
            "ts": int(committee.time_ms[i]),
            "votes": dict(zip(committee.members, committee.votes[i].tolist(), strict=True)),
            "label": int(label),
            "score": 0.0,
            "decision": 0,
            "model_version": 1,
        }
        producer.send(topics.training, key=event_id.encode(), value=json.dumps(row).encode())
    producer.flush()
    producer.close()


def send_requests(transport: Transport, topics: Topics, *requests: dict[str, Any]) -> None:
    producer = transport.producer()
    for request in requests:
        producer.send(topics.control, key=b"meta", value=json.dumps(request).encode())
    producer.flush()
    producer.close()


class Runnable(Protocol):
    def run(self, stop: threading.Event) -> Any: ...


ServiceT = TypeVar("ServiceT", bound=Runnable)


class ServiceThread(Generic[ServiceT]):
    """``service.run(stop)`` in a daemon thread for the length of a ``with`` block, which
    yields the service; leaving the block stops it and checks it ended within
    ``join_timeout_s``."""

    def __init__(self, service: ServiceT, *, join_timeout_s: float = 30.0) -> None:
        self.service = service
        self.join_timeout_s = join_timeout_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=service.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> ServiceT:
        self.thread.start()
        return self.service

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=self.join_timeout_s)
        assert not self.thread.is_alive()


class ServiceProcess:
    """``metasignal <args>`` in a child process, its output in a file.

    A file, not a pipe: nobody reads a pipe while the test waits, and a full pipe
    would stall the service at its next log line.
    """

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "METASIGNAL_SIGNING_KEY": TEST_KEY.decode()}
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="metasignal-", suffix=".log", delete=False
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "metasignal.trainer.cli", *args],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        with open(self._log.name, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def wait_for_output(self, text: str, timeout: float = 60.0) -> bool:
        return wait_for(lambda: text in self.output(), timeout=timeout, interval=0.02)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure nothing outlives the test, whatever happened."""
        if self.process.poll() is None:
            self.kill()
        self._log.close()
