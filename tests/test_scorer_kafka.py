"""The scorer's promises on a real Apache Kafka broker (KRaft, started by conftest)."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    ServiceProcess,
    ServiceThread,
    publish_model,
    send_raw,
    send_votes,
    versioned,
    wait_for,
)

pytestmark = pytest.mark.kafka


def committed_signals(
    transport: KafkaTransport,
    topics: Topics,
    expect: int,
    timeout: float = 90,
    extra_polls: int = 5,
) -> list[dict[str, Any]]:
    """Every committed signal, waiting until ``expect`` distinct events have one.

    Distinct, not records: after a crash at-least-once re-delivers up to a commit span, and
    counting those duplicates would stop the wait before the last votes were scored.
    """
    consumer = transport.consumer(assign_all=[topics.signals], read_committed=True)
    out: list[dict[str, Any]] = []
    ids: set[str] = set()

    def more() -> bool:
        signals = [
            json.loads(r.value) for r in consumer.poll(timeout_ms=200, max_records=5000) if r.value
        ]
        out.extend(signals)
        ids.update(signal["id"] for signal in signals)
        return len(ids) >= expect

    wait_for(more, timeout=timeout, interval=0)
    # Anything beyond ``expect`` (a duplicate) must also be seen: drain a little longer.
    for _ in range(extra_polls):
        more()
    consumer.close()
    return out


def dead_letters(transport: KafkaTransport, topics: Topics, expect: int) -> list[Any]:
    consumer = transport.consumer(assign_all=[topics.dlq], read_committed=True)
    out: list[Any] = []

    def enough() -> bool:
        out.extend(consumer.poll(timeout_ms=200, max_records=500))
        return len(out) >= expect

    wait_for(enough, timeout=60, interval=0)
    consumer.close()
    return out


class ScorerThread(ServiceThread[Scorer]):
    """A scorer on ``topics`` running in a thread for the length of a ``with`` block."""

    def __init__(self, transport: KafkaTransport, topics: Topics, **options: Any) -> None:
        options = {"poll_timeout_ms": 100, **options}
        scorer = Scorer(
            transport=transport,
            options=ScorerOptions(topics=topics, **options),
            keys=[TEST_KEY],
        )
        super().__init__(scorer, join_timeout_s=30)


def test_votes_to_signals_end_to_end(
    kafka: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: dict,
    exactly_once: bool,
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(transport, topics, committee, 0, 3000)
    with ScorerThread(
        transport,
        topics,
        exactly_once=exactly_once,
        transactional_id=f"{topics.prefix}s",
        group_id=f"{topics.prefix}g",
    ):
        out = committed_signals(transport, topics, expect=3000)
    counts = Counter(s["id"] for s in out)
    assert set(counts) == set(ids)
    if exactly_once:
        assert max(counts.values()) == 1
    assert all(s["decision"] == int(s["score"] >= s["threshold"]) for s in out)


def test_hot_swap_mid_stream(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    first = send_votes(transport, topics, committee, 0, 1000)
    with ScorerThread(transport, topics, group_id=f"{topics.prefix}g") as scorer:
        assert wait_for(lambda: scorer.stats.signals >= 1000)
        publish_model(transport, topics, versioned(artifact_body, 2, TEST_KEY))
        assert wait_for(lambda: scorer.stats.model_versions == [1, 2])
        second = send_votes(transport, topics, committee, 1000, 2000)
        out = committed_signals(transport, topics, expect=2000)
    version = {s["id"]: s["model_version"] for s in out}
    assert set(version) == set(first) | set(second)
    assert {version[i] for i in second} == {2}
    assert {version[i] for i in first} == {1}


def test_tampered_and_unsigned_artifacts_refused_while_scoring_continues(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    with ScorerThread(transport, topics, group_id=f"{topics.prefix}g") as scorer:
        send_votes(transport, topics, committee, 0, 500)
        assert wait_for(lambda: scorer.stats.signals >= 500)
        tampered = json.loads(versioned(artifact_body, 3, TEST_KEY))
        tampered["linear"]["intercept"] += 5.0
        publish_model(transport, topics, json.dumps(tampered).encode())
        publish_model(transport, topics, versioned(artifact_body, 4, None))

        def refused() -> float:
            return sum(
                s.value
                for m in scorer.metrics.refused.collect()
                for s in m.samples
                if s.name.endswith("_total")
            )

        # The models topic is read twice a second, so the two may be refused in separate checks.
        assert wait_for(lambda: refused() >= 2)
        send_votes(transport, topics, committee, 500, 1000)
        assert wait_for(lambda: scorer.stats.signals >= 1000)
    assert refused() == 2
    assert scorer.stats.model_versions == [1]
    out = committed_signals(transport, topics, expect=1000)
    assert {s["model_version"] for s in out} == {1}


def test_poison_messages_to_dlq_while_good_ones_are_scored(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    good = send_votes(transport, topics, committee, 0, 200)
    full = {m: 0.5 for m in committee.members}
    poison = [
        (b"bad-json", b"{oops"),
        (b"no-id", json.dumps({"ts": 1, "votes": full}).encode()),
        (b"range", json.dumps({"id": "range", "ts": 1, "votes": {**full, "m1": -0.1}}).encode()),
        (b"big", json.dumps({"id": "big", "ts": 1, "votes": full, "x": "y" * 100_000}).encode()),
    ]
    send_raw(transport, topics.votes, poison)
    with ScorerThread(transport, topics, group_id=f"{topics.prefix}g"):
        out = committed_signals(transport, topics, expect=200)
        dead = dead_letters(transport, topics, expect=4)
    assert {s["id"] for s in out} == set(good)
    reasons = {r.key: dict(r.headers)["reason"] for r in dead}
    assert reasons == {
        b"bad-json": b"invalid_json",
        b"no-id": b"missing_id",
        b"range": b"out_of_range",
        b"big": b"oversize",
    }
    assert {r.key: r.value for r in dead} == dict(poison)


def test_a_vote_near_the_request_limit_is_dead_lettered_not_a_crash_loop(
    kafka_python: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    """Issue 11: a vote just under the producer's 1 MiB request limit had a DLQ copy (the
    same bytes plus the headers) over it; the DLQ send failed, every retry too, and the
    scorer exited, at each restart again. Now the copy is cut and says so."""
    from metasignal.stream.messages import DLQ_MAX_PAYLOAD_BYTES

    transport, topics = kafka_python
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    head = b'{"id": "huge", "ts": 1, "pad": "'
    # 1,048,470 bytes: kafka-python estimates the record at 1,048,561 of its 1,048,576 limit,
    # and at ~1,048,680 with the five DLQ headers.
    huge = head + b"x" * (1_048_470 - len(head) - 2) + b'"}'
    send_raw(transport, topics.votes, [(b"huge", huge)])
    good = send_votes(transport, topics, committee, 0, 100)
    with ScorerThread(transport, topics, group_id=f"{topics.prefix}g") as scorer:
        out = committed_signals(transport, topics, expect=100)
        (dead,) = dead_letters(transport, topics, expect=1)
        assert wait_for(lambda: scorer.stats.dlq == 1)
    assert {s["id"] for s in out} == set(good)
    headers = dict(dead.headers)
    assert headers["reason"] == b"oversize"
    assert int(headers["truncated_value_bytes"]) == len(huge)
    assert dead.value == huge[:DLQ_MAX_PAYLOAD_BYTES]


def test_a_lag_check_timing_out_does_not_stop_the_scorer(
    kafka_python: tuple[KafkaTransport, Topics],
    committee: Committee,
    artifact_body: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 11 §2: at-least-once, ~30 s into a broker outage the scorer exited with a
    KafkaTimeoutError traceback from the lag check's end_offsets. The transport now raises
    TransportError there, and the lag check skips the round."""
    from kafka.errors import KafkaTimeoutError

    transport, topics = kafka_python
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(topics=topics, group_id=f"{topics.prefix}g", lag_interval_s=0.0),
        keys=[TEST_KEY],
    )
    try:
        scorer.load_models()
        send_votes(transport, topics, committee, 0, 100)
        assert wait_for(lambda: scorer.step() >= 0 and scorer.stats.signals >= 100)
        votes = scorer._votes
        assert votes is not None

        def unreachable(*args: object) -> None:
            raise KafkaTimeoutError("Failed to get offsets by timestamps in 60000.0 ms")

        monkeypatch.setattr(votes._consumer, "end_offsets", unreachable)  # type: ignore[attr-defined]
        scorer.step()  # checks lag (interval 0): skipped, not raised
        monkeypatch.undo()
        send_votes(transport, topics, committee, 100, 200)
        assert wait_for(lambda: scorer.step() >= 0 and scorer.stats.signals >= 200)
    finally:
        scorer.close()


def test_two_scorers_in_one_group_split_four_partitions(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    group = f"{topics.prefix}g"
    with (
        ScorerThread(transport, topics, group_id=group) as a,
        ScorerThread(transport, topics, group_id=group) as b,
    ):
        assert wait_for(lambda: len(a.assignment()) == 4 and len(b.assignment()) == 4, timeout=60)
        assert not a.assignment() & b.assignment()
        ids = send_votes(transport, topics, committee, 0, 4000)
        out = committed_signals(transport, topics, expect=4000)
        assert wait_for(lambda: a.stats.signals + b.stats.signals >= 4000)
    assert {s["id"] for s in out} == set(ids)
    assert a.stats.signals > 0 and b.stats.signals > 0


def scorer_process(bootstrap: str, topics: Topics, *extra: str) -> ServiceProcess:
    return ServiceProcess(
        "scorer", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
        "--group-id", f"{topics.prefix}g", "--metrics-port", "-1", "--batch-size", "200", *extra,
    )  # fmt: skip


def kill_9_mid_stream(
    process: ServiceProcess, transport: KafkaTransport, topics: Topics, *, after: int, of: int
) -> None:
    """SIGKILL ``process`` once ``after`` of its ``of`` signals are out, and check that it
    was mid-stream. The probe reads uncommitted: at-least-once signals are out before their
    commit."""
    probe = transport.consumer(assign_all=[topics.signals])
    seen = 0

    def some_progress() -> bool:
        nonlocal seen
        seen += len(probe.poll(timeout_ms=100, max_records=5000))
        return seen >= after

    try:
        progressed = wait_for(some_progress, timeout=90, interval=0)
    finally:
        process.stop()  # SIGKILL
        probe.close()
    assert progressed, f"no signal in 90 s; scorer said:\n{process.output()[-2000:]}"
    assert seen < of, "the scorer finished before it could be killed mid-stream"


def signals_then_sigterm(
    process: ServiceProcess,
    transport: KafkaTransport,
    topics: Topics,
    *,
    expect: int,
    timeout: float = 90,
) -> list[dict[str, Any]]:
    """The committed signals of ``expect`` events, then SIGTERM ``process``: it exits 0."""
    try:
        out = committed_signals(transport, topics, expect=expect, timeout=timeout)
        assert process.terminate() == 0
    finally:
        process.stop()
    return out


def test_kill_9_mid_stream_and_restart_loses_nothing(
    kafka: tuple[KafkaTransport, Topics],
    kafka_bootstrap: str,
    committee: Committee,
    artifact_body: dict,
    exactly_once: bool,
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(transport, topics, committee, 0, 20_000)
    extra = ("--exactly-once", "--transactional-id", f"{topics.prefix}tx") if exactly_once else ()
    kill_9_mid_stream(
        scorer_process(kafka_bootstrap, topics, *extra), transport, topics, after=2000, of=20_000
    )
    second = scorer_process(kafka_bootstrap, topics, *extra)
    out = signals_then_sigterm(second, transport, topics, expect=20_000, timeout=150)
    counts = Counter(s["id"] for s in out)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} votes without a signal"
    if exactly_once:
        assert max(counts.values()) == 1, "duplicate signals in exactly-once mode"


def test_sigterm_finishes_the_batch_commits_and_exits_0(
    kafka: tuple[KafkaTransport, Topics],
    kafka_bootstrap: str,
    committee: Committee,
    artifact_body: dict,
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    ids = send_votes(transport, topics, committee, 0, 3000)
    process = scorer_process(kafka_bootstrap, topics)
    out = signals_then_sigterm(process, transport, topics, expect=3000)
    assert "scorer stopped: 3000 votes, 3000 signals" in process.output()
    assert {s["id"] for s in out} == set(ids)
    # Offsets were committed: a new scorer in the same group has nothing left to redo.
    again = scorer_process(kafka_bootstrap, topics)
    try:
        assert again.wait_for_output("partitions assigned", timeout=60)
        time.sleep(2)
        assert again.terminate() == 0
    finally:
        again.stop()
    assert "scorer stopped: 0 votes, 0 signals" in again.output()
    assert len(committed_signals(transport, topics, expect=3001, timeout=3)) == 3000


@pytest.mark.kafka
def test_a_send_the_broker_rejects_fails_the_flush_and_the_transaction(
    kafka: tuple[KafkaTransport, Topics],
) -> None:
    """A record the broker refuses (too large for its topic) surfaces as a TransportError."""
    from metasignal.stream.transport.base import TopicPartition, TopicSpec, TransportError

    transport, topics = kafka
    small = f"{topics.prefix}small"
    transport.create_topics([TopicSpec(small, 1, {"max.message.bytes": "1024"})])
    producer = transport.producer()
    producer.send(small, key=b"ok", value=b"x" * 10)
    producer.flush()  # nothing failed: no error
    producer.send(small, key=b"big", value=b"x" * 5000)
    with pytest.raises(TransportError, match="1 send"):
        producer.flush()
    producer.close()

    consumer = transport.consumer(topics=[small], group_id=f"{topics.prefix}g")
    txn = transport.producer(transactional_id=f"{topics.prefix}txn")
    txn.begin_transaction()
    txn.send(small, key=b"big", value=b"x" * 5000)
    with pytest.raises(TransportError):
        txn.commit_transaction({TopicPartition(small, 0): 0}, consumer)
    txn.abort_transaction()
    txn.close()
    consumer.close()


@pytest.mark.kafka
def test_client_settings_override_tunables_but_not_guarantees(
    kafka_bootstrap: str, kafka: tuple[KafkaTransport, Topics]
) -> None:
    _, topics = kafka
    transport = KafkaTransport(
        bootstrap=kafka_bootstrap,
        client_config={"fetch_max_wait_ms": 7, "retry_backoff_ms": 33, "acks": 0},
    )
    consumer = transport.consumer(topics=[topics.votes], group_id=f"{topics.prefix}g")
    producer = transport.producer(transactional_id=f"{topics.prefix}tx")
    try:
        consumer_config = consumer._consumer.config
        producer_config = producer._producer.config
        assert consumer_config["fetch_max_wait_ms"] == 7
        assert consumer_config["enable_auto_commit"] is False
        assert producer_config["retry_backoff_ms"] == 33
        assert producer_config["acks"] in ("all", -1)
        assert producer_config["enable_idempotence"] is True
    finally:
        consumer.close()
        producer.close()
        transport.close()


def test_an_unknown_client_setting_is_a_clear_error() -> None:
    from metasignal.stream.transport.base import TransportError

    with pytest.raises(TransportError, match=r"unknown Kafka client setting.*fetch_max_wiat_ms"):
        KafkaTransport(bootstrap="127.0.0.1:1", client_config={"fetch_max_wiat_ms": 7})
