"""Shared fixtures: small synthetic committees and one real Kafka broker per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from metasignal.stream.artifact import Artifact
from metasignal.trainer.synthetic import Committee, generate_committee

if TYPE_CHECKING:
    from metasignal.trainer.data import VoteTable

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def committee() -> Committee:
    """20k events, 8 members, 3 % trades: big enough for 5 walk-forward folds."""
    return generate_committee(n_events=20_000, positive_rate=0.03, seed=11)


@pytest.fixture(scope="session")
def committee_csv(tmp_path_factory: pytest.TempPathFactory, committee: Committee) -> Path:
    path = tmp_path_factory.mktemp("data") / "votes.csv"
    committee.to_csv(path)
    return path


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> bytes:
    key = b"test-signing-key-0123456789abcdef"
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", key.decode())
    return key


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker (KRaft) for the whole session; fails, never skips."""
    from tests.kafka_broker import LocalKafka

    broker = LocalKafka(
        data_dir=tmp_path_factory.mktemp("kafka"),
        script=REPO / "deploy" / "kafka" / "local-kafka.sh",
    )
    bootstrap = broker.start(timeout=float(os.environ.get("METASIGNAL_KAFKA_START_TIMEOUT", 180)))
    try:
        yield bootstrap
    finally:
        broker.stop()


TEST_KEY = b"test-signing-key-0123456789abcdef"


def vote_table(committee: Committee, rows: slice = slice(None)) -> VoteTable:
    """The trainer's table of ``committee`` (its ``rows``)."""
    from metasignal.trainer.data import VoteTable

    return VoteTable(
        time_ms=committee.time_ms[rows],
        members=committee.members,
        votes=committee.votes[rows],
        labels=committee.labels[rows],
    )


@pytest.fixture(scope="session")
def artifact_body(committee: Committee) -> Artifact:
    """An unsigned artifact body fitted on the session committee (sign per test)."""
    from metasignal.trainer.fit import FitConfig, fit_meta_model

    table = vote_table(committee)
    config = FitConfig(estimator={"strategy": "optimal_threshold"})
    return fit_meta_model(table, config).artifact


@pytest.fixture(params=[False, True], ids=["at-least-once", "exactly-once"])
def exactly_once(request: pytest.FixtureRequest) -> bool:
    """Each delivery mode in turn: at-least-once, then exactly-once (transactions)."""
    return bool(request.param)


@pytest.fixture(params=["kafka-python", "confluent"])
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each Kafka client in turn; the services a test starts as processes inherit it through
    METASIGNAL_KAFKA_CLIENT."""
    client = str(request.param)
    monkeypatch.setenv("METASIGNAL_KAFKA_CLIENT", client)
    return client


def _transport_with_topics(bootstrap: str, client: str) -> Iterator[tuple[Any, Any]]:
    from metasignal.stream.topics import Topics, topic_specs
    from metasignal.stream.transport import kafka_transport

    transport = kafka_transport(bootstrap, client=client)
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:8]}.")
    transport.create_topics(topic_specs(topics, partitions=4))
    yield transport, topics
    transport.close()


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_client: str) -> Iterator[tuple[Any, Any]]:
    """A Kafka transport on each client plus a fresh set of topics (unique prefix) for one test."""
    yield from _transport_with_topics(kafka_bootstrap, kafka_client)


@pytest.fixture
def kafka_python(kafka_bootstrap: str) -> Iterator[tuple[Any, Any]]:
    """kafka-python's transport and fresh topics, for faults of that client's own making
    (its request-size estimate, its timeout errors)."""
    yield from _transport_with_topics(kafka_bootstrap, "kafka-python")
