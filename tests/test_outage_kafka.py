"""Broker outages on a real Apache Kafka broker (issue 11 §2).

These tests stop and restart a broker, so they run their own (own data dir, own ports):
the session broker other tests use is never touched. Each outage lasts about 25 s, longer
than the exactly-once producer's 15 s transaction timeout, which is what fenced the scorer
before.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metasignal.stream.artifact import Artifact
from metasignal.stream.metrics import MetricsServer
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import REPO, TEST_KEY
from tests.kafka_broker import LocalKafka
from tests.streaming import (
    ServiceProcess,
    ServiceThread,
    publish_model,
    send_requests,
    send_training_rows,
    send_votes,
    versioned,
    wait_for,
)
from tests.test_scorer_kafka import committed_signals

pytestmark = pytest.mark.kafka

OUTAGE_S = 25.0
RESUME_LIMIT_S = 10.0  # the goal: work resumes within 10 s of the broker's return


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalKafka(
        data_dir=Path(tmp_path_factory.mktemp("outage-kafka")),
        script=REPO / "deploy" / "kafka" / "local-kafka.sh",
    )
    broker.start(timeout=180)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def outage_kafka(own_broker: LocalKafka) -> Iterator[tuple[KafkaTransport, Topics]]:
    if not own_broker.is_running():
        own_broker.start(timeout=180)
    transport = KafkaTransport(bootstrap=own_broker.bootstrap)
    topics = Topics(prefix=f"o{uuid.uuid4().hex[:8]}.")
    transport.create_topics(topic_specs(topics, partitions=2))
    yield transport, topics
    transport.close()


def probe(port: int, path: str = "/readyz") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def signal_ids(transport: KafkaTransport, topics: Topics, expect: int) -> Counter[str]:
    """How many committed signals each event has, waiting until ``expect`` events have one."""
    signals = committed_signals(transport, topics, expect, timeout=120, extra_polls=10)
    return Counter(signal["id"] for signal in signals)


def outage(broker: LocalKafka, is_ready: Any, gauge: Any) -> tuple[list[float], float]:
    """Stop the broker for OUTAGE_S; return the gauge values seen and when it was back."""
    broker.stop()
    stopped = time.monotonic()
    seen: list[float] = []
    assert wait_for(lambda: not is_ready(), timeout=OUTAGE_S), "still ready with no broker"
    while time.monotonic() - stopped < OUTAGE_S:
        seen.append(gauge())
        time.sleep(0.5)
    broker.start(timeout=180)  # same ports and data dir: the same broker comes back
    return seen, time.monotonic()


def test_scorer_rides_out_a_broker_outage(
    own_broker: LocalKafka,
    outage_kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: Artifact,
    exactly_once: bool,
) -> None:
    transport, topics = outage_kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(
            topics=topics,
            group_id=f"{topics.prefix}scorers",
            exactly_once=exactly_once,
            transactional_id=f"{topics.prefix}scorer-0",
            batch_size=100,
            poll_timeout_ms=100,
        ),
        keys=[TEST_KEY],
    )
    server = MetricsServer(
        registry=scorer.metrics.registry,
        port=0,
        host="127.0.0.1",
        is_alive=scorer.heartbeat.alive,
        is_ready=lambda: scorer.ready,
    ).start()
    running = ServiceThread(scorer, join_timeout_s=60)
    try:
        with running:
            send_votes(transport, topics, committee, 0, 300)
            assert wait_for(lambda: scorer.stats.signals >= 300, timeout=90)
            assert probe(server.port) == 200
            # Votes in flight when the broker goes: a batch (a transaction) is cut in the middle.
            send_votes(transport, topics, committee, 300, 3000)

            def reachable() -> float:
                value = scorer.metrics.registry.get_sample_value("metasignal_broker_reachable")
                return -1.0 if value is None else value

            def alive_and_reachable() -> float:
                # Liveness must hold through the outage (or an orchestrator would restart the
                # scorer for nothing): -2 marks a failed /healthz.
                return reachable() if probe(server.port, "/healthz") == 200 else -2.0

            during, back = outage(
                own_broker, lambda: probe(server.port) == 200, alive_and_reachable
            )
            assert running.thread.is_alive(), "the scorer exited during the outage"
            assert 0.0 in during, "metasignal_broker_reachable never went to 0"
            assert -2.0 not in during, "/healthz failed during the outage"
            assert wait_for(lambda: probe(server.port) == 200, timeout=60)
            resumed_s = time.monotonic() - back
            assert reachable() == 1.0
            send_votes(transport, topics, committee, 3000, 3300)
            ids = signal_ids(transport, topics, expect=3300)
            first_new = time.monotonic() - back
    finally:
        server.stop()
    expected = {str(committee.ids[i]) for i in range(3300)}
    missing = expected - set(ids)
    duplicated = {i: n for i, n in ids.items() if n > 1}
    print(
        f"\n{'exactly' if exactly_once else 'at-least'}-once: ready {resumed_s:.1f} s after "
        f"the broker returned, all signals by {first_new:.1f} s; missing {len(missing)}, "
        f"duplicated {len(duplicated)}, producers re-created "
        f"{scorer.metrics.outage.recreations._value.get():g}"
    )
    assert not missing, f"{len(missing)} votes without a signal"
    assert resumed_s <= RESUME_LIMIT_S, f"ready only {resumed_s:.1f} s after the broker returned"
    if exactly_once:
        assert not duplicated, f"{len(duplicated)} signals written twice"


def test_trainer_rides_out_a_broker_outage(
    own_broker: LocalKafka,
    outage_kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: Artifact,
) -> None:
    transport, topics = outage_kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(transport, topics, committee, committee.labels)
    trainer = TrainerService(
        transport=transport,
        options=TrainerOptions(
            topics=topics,
            group_id=f"{topics.prefix}trainer",
            transactional_id=f"{topics.prefix}trainer",
            force=True,
            window_rows=20_000,
        ),
        keys=[TEST_KEY],
    )
    running = ServiceThread(trainer, join_timeout_s=60)
    with running:
        request = {"id": "before", "kind": "retune", "reason": "t", "model_version": 1}
        send_requests(transport, topics, request)
        assert wait_for(lambda: len(trainer.verdicts) == 1, timeout=120)

        def reachable() -> float:
            value = trainer.metrics.registry.get_sample_value("metasignal_trainer_broker_reachable")
            return -1.0 if value is None else value

        during, _ = outage(own_broker, lambda: trainer.ready, reachable)
        assert running.thread.is_alive(), "the trainer exited during the outage"
        assert 0.0 in during
        assert wait_for(lambda: trainer.ready, timeout=RESUME_LIMIT_S)
        request = {"id": "after", "kind": "retune", "reason": "t", "model_version": 2}
        send_requests(transport, topics, request)
        assert wait_for(lambda: len(trainer.verdicts) == 2, timeout=120)
    assert [(v.request_id, v.outcome) for v in trainer.verdicts] == [
        ("before", "published"),
        ("after", "published"),
    ]


def test_max_outage_ends_the_scorer_with_one_line(
    own_broker: LocalKafka,
    outage_kafka: tuple[KafkaTransport, Topics],
    artifact_body: Artifact,
) -> None:
    transport, topics = outage_kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    scorer = ServiceProcess(
        "scorer", "--bootstrap", own_broker.bootstrap, "--topic-prefix", topics.prefix,
        "--group-id", f"{topics.prefix}scorers", "--metrics-port", "-1", "--max-outage-s", "5",
    )  # fmt: skip
    try:
        assert scorer.wait_for_output("serving model meta v1", timeout=90), scorer.output()
        own_broker.stop()
        code = scorer.process.wait(timeout=120)
        output = scorer.output()
    finally:
        scorer.stop()
        own_broker.start(timeout=180)
    assert code == 2, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("metasignal: error: broker unreachable for "), output
    assert "longer than --max-outage-s 5" in last
    # No stack frame of ours (kafka-python logs its own socket errors with one, at times).
    assert str(REPO / "stream") not in output and "metasignal/stream" not in output, output
