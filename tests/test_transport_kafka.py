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
