"""The Kafka transports' consumer groups on a real broker, under the polls the scorer makes, and
each client's settings."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions, NewTopic

from metasignal.stream.transport import kafka_transport
from metasignal.stream.transport.base import Consumer, TransportError
from metasignal.stream.transport.rebalance_fix import finish_interrupted_rebalances
from tests.streaming import wait_for


def assigned(consumer: Consumer, count: int) -> Callable[[], bool]:
    """Poll without waiting (the shortest poll a caller can make); ``count`` partitions yet?"""

    def check() -> bool:
        consumer.poll(timeout_ms=0, max_records=100)
        return len(consumer.assignment()) == count

    return check


@pytest.mark.kafka
def test_partitions_added_later_are_assigned_under_short_polls(
    kafka_bootstrap: str, kafka_client: str
) -> None:
    # kafka-python 3.0.12 alone: the first assignment often never lands, and partitions added
    # later are never assigned (both 3 of 3 times before stream/transport/rebalance_fix.py).
    # librdkafka needs no fix; the same test holds it to the same promise.
    topic = f"grow-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        transport = kafka_transport(
            kafka_bootstrap, client=kafka_client, client_config={"metadata_max_age_ms": 500}
        )
        consumer = transport.consumer(topics=[topic], group_id=f"{topic}.g")
        try:
            assert wait_for(assigned(consumer, 1), timeout=30, interval=0.002)
            admin.create_partitions({topic: NewPartitions(total_count=3)})
            assert wait_for(assigned(consumer, 3), timeout=30, interval=0.002), (
                f"still assigned {sorted(tp.partition for tp in consumer.assignment())}"
            )
        finally:
            consumer.close()
    finally:
        admin.close()


def test_a_client_without_the_patched_internals_is_refused() -> None:
    coordinator: Any = SimpleNamespace(need_rejoin=lambda: False, rejoining=False)
    with pytest.raises(TransportError, match="_join_task"):
        finish_interrupted_rebalances(SimpleNamespace(_coordinator=coordinator))


@pytest.mark.kafka
def test_confluent_settings_override_tunables_but_not_guarantees(kafka_bootstrap: str) -> None:
    from metasignal.stream.transport.confluent import ConfluentTransport

    topic = f"settings-{uuid.uuid4().hex[:8]}"
    transport = ConfluentTransport(
        bootstrap=kafka_bootstrap,
        # kafka-python names and librdkafka's own, as a user may mix them.
        client_config={
            "fetch_max_wait_ms": 7,
            "retry.backoff.ms": 33,
            "acks": 0,
            "partitioner": "consistent_random",
            "enable.auto.commit": True,
        },
    )
    consumer = transport.consumer(topics=[topic], group_id=f"{topic}.g")
    producer = transport.producer(transactional_id=f"{topic}.tx")
    try:
        assert consumer.config["fetch.wait.max.ms"] == 7
        assert consumer.config["enable.auto.commit"] is False
        assert consumer.config["partition.assignment.strategy"] == "range"
        assert "retry.backoff.ms" in consumer.config and "acks" not in consumer.config
        assert producer.config["retry.backoff.ms"] == 33
        assert producer.config["acks"] == "all"
        assert producer.config["enable.idempotence"] is True
        assert producer.config["partitioner"] == "murmur2_random"
        assert producer.config["transaction.timeout.ms"] == 15_000
        assert "fetch.wait.max.ms" not in producer.config
    finally:
        consumer.close()
        producer.close()
        transport.close()


def test_security_settings_reach_librdkafka_by_its_names() -> None:
    from metasignal.stream.transport.confluent import translate

    assert translate(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "scorer",
            "sasl_plain_password": "secret",
            "ssl_cafile": "/etc/ca.pem",
            "ssl_certfile": "/etc/client.pem",
            "ssl_keyfile": "/etc/client.key",
        }
    ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "scorer",
        "sasl.password": "secret",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem",
        "ssl.key.location": "/etc/client.key",
    }


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"fetch_max_wiat_ms": 7}, r"unknown Kafka client setting.*fetch_max_wiat_ms"),
        ({"fetch.wiat.max.ms": 7}, r"cannot create Kafka consumer.*fetch\.wiat\.max\.ms"),
        ({"security.protocol": "PLAIN"}, r"cannot create Kafka admin.*security\.protocol"),
    ],
    ids=["kafka-python name", "librdkafka name", "bad value"],
)
def test_a_bad_confluent_setting_is_a_clear_error(setting: dict, message: str) -> None:
    with pytest.raises(TransportError, match=message):
        transport = kafka_transport("127.0.0.1:1", client="confluent", client_config=setting)
        transport.consumer(topics=["votes"], group_id="g").close()


@pytest.mark.parametrize(
    "argv",
    [
        ["scorer"],
        ["trainer"],
        ["publish", "model.json"],
        ["replay", "votes.csv"],
        ["tail", "signals"],
        ["topics", "create"],
        ["demo", "--bootstrap", "127.0.0.1:9092"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_kafka_command_takes_the_client_by_flag_or_environment(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from metasignal.trainer.cli import build_parser

    assert build_parser().parse_args(argv).kafka_client == "kafka-python"  # the default
    assert build_parser().parse_args([*argv, "--kafka-client", "confluent"]).kafka_client == (
        "confluent"
    )
    monkeypatch.setenv("METASIGNAL_KAFKA_CLIENT", "confluent")
    assert build_parser().parse_args(argv).kafka_client == "confluent"


def test_the_confluent_client_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails
    monkeypatch.delitem(sys.modules, "metasignal.stream.transport.confluent", raising=False)
    with pytest.raises(TransportError, match=r"pip install 'metasignal\[confluent\]'"):
        kafka_transport("127.0.0.1:1", client="confluent")


# --------------------------------------------------------------------------- confluent outages


@pytest.mark.parametrize(
    ("code", "producer", "kind"),
    [
        ("_ALL_BROKERS_DOWN", False, "unreachable"),
        ("_TRANSPORT", True, "unreachable"),
        ("_MSG_TIMED_OUT", True, "unreachable"),
        ("REQUEST_TIMED_OUT", False, "unreachable"),
        ("NOT_COORDINATOR", False, "unreachable"),
        ("PRODUCER_FENCED", True, "fenced"),
        ("INVALID_PRODUCER_EPOCH", True, "fenced"),
        ("MSG_SIZE_TOO_LARGE", True, "other"),
        ("TOPIC_AUTHORIZATION_FAILED", False, "other"),
    ],
)
def test_librdkafka_errors_map_to_the_transport_kinds(code: str, producer: bool, kind: str) -> None:
    """The scorer waits out UNREACHABLE, re-creates a FENCED producer, counts OTHER: as with
    kafka-python, whichever client is configured."""
    from confluent_kafka import KafkaError, KafkaException

    from metasignal.stream.transport.confluent import _error, error_kind

    error = KafkaError(getattr(KafkaError, code))
    assert error_kind(error, producer=producer) == kind
    assert _error("commit failed", KafkaException(error), producer=producer).kind == kind


def test_a_fatal_librdkafka_error_fences_a_producer_but_not_a_consumer() -> None:
    from confluent_kafka import KafkaError

    from metasignal.stream.transport.confluent import error_kind

    fatal = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    assert error_kind(fatal, producer=True) == "fenced"
    assert error_kind(fatal, producer=False) == "other"


def test_a_confluent_client_without_a_broker_is_unreachable() -> None:
    """Nothing listens on port 1: the consumer's probe turns false at librdkafka's first
    statistics, and a flush fails as UNREACHABLE (the scorer waits it out)."""
    from metasignal.stream.transport.confluent import ConfluentTransport

    transport = ConfluentTransport(
        bootstrap="127.0.0.1:1", client_config={"message.timeout.ms": 1_000}
    )
    consumer = transport.consumer(topics=["votes"], group_id="nobody-home")
    producer = transport.producer()
    try:
        assert consumer.reachable()  # nothing known yet: not an outage

        def reported() -> bool:
            consumer.poll(timeout_ms=100, max_records=10)
            return consumer._connectivity.reports > 0

        assert wait_for(reported, timeout=15)
        assert not consumer.reachable()
        producer.send("votes", key=b"k", value=b"v")
        with pytest.raises(TransportError) as caught:
            producer.flush(timeout_s=5)
        assert caught.value.kind == "unreachable"
    finally:
        consumer.close()
        producer.close()
        transport.close()


@pytest.mark.kafka
def test_a_confluent_consumer_on_a_live_broker_is_reachable(kafka_bootstrap: str) -> None:
    from metasignal.stream.transport.confluent import ConfluentTransport

    transport = ConfluentTransport(bootstrap=kafka_bootstrap)
    consumer = transport.consumer(topics=[f"live-{uuid.uuid4().hex[:8]}"], group_id="live")
    try:

        def reported() -> bool:
            consumer.poll(timeout_ms=100, max_records=10)
            return consumer._connectivity.reports > 0

        assert wait_for(reported, timeout=15)
        assert consumer.reachable()
    finally:
        consumer.close()
        transport.close()
