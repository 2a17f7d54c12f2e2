"""Apache Kafka through confluent-kafka (librdkafka): the fast transport.

Same contract and guarantees as :mod:`metasignal.stream.transport.kafka`: every
signal acknowledged by all in-sync replicas by an idempotent producer, no
auto-commit, range assignment (partition p of votes and outcomes stay
together), and keys hashed with murmur2 like the Java and kafka-python clients,
so records keep their partition whichever client wrote them (librdkafka's
default CRC32 partitioner would split a key between producers).

What librdkafka does in C stays there: consumers take whatever is queued in one
``consume`` call, and producers report only failed deliveries to Python
(``delivery.report.only.error``), so a successful send costs no callback.

Settings: librdkafka's own dotted names pass through (``fetch.wait.max.ms``);
the kafka-python names that :func:`metasignal.stream.config.kafka_client_config`
produces (``security_protocol``, ``sasl_plain_username``, ``ssl_cafile``, ...)
and a few common tunables are translated, so one configuration drives either
client.

Requires the ``confluent`` extra: ``pip install 'metasignal[confluent]'``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from metasignal.stream.transport.base import (
    FENCED,
    OTHER,
    UNREACHABLE,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    TransportError,
)
from metasignal.stream.transport.base import (
    Consumer as ConsumerProtocol,
)

log = logging.getLogger("metasignal.transport")

# kafka-python names (as kafka_client_config and users of KafkaTransport spell them) and their
# librdkafka equivalents.
KAFKA_PYTHON_NAMES: dict[str, str] = {
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    # kafka-python refreshes metadata (new partitions, brokers) this often; librdkafka names it so.
    "metadata_max_age_ms": "topic.metadata.refresh.interval.ms",
    "request_timeout_ms": "request.timeout.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "linger_ms": "linger.ms",
    "compression_type": "compression.type",
    "transaction_timeout_ms": "transaction.timeout.ms",
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
}

# confluent-kafka's Python-level settings (every librdkafka property is dotted or one word).
_LIBRDKAFKA_CALLBACKS = frozenset({"error_cb", "stats_cb", "throttle_cb", "oauth_cb"})

# librdkafka warns when a client gets a property of the other role; send each where it belongs.
_CONSUMER_ONLY = (
    "fetch.", "session.timeout.ms", "heartbeat.interval.ms", "group.", "max.poll.interval.ms",
    "partition.assignment.strategy", "enable.auto.", "auto.", "isolation.level", "queued.",
    "enable.partition.eof", "check.crcs", "allow.auto.create.topics", "coordinator.query.",
    "consume.callback.max.messages",
)  # fmt: skip
_PRODUCER_ONLY = (
    "linger.ms", "queue.buffering.", "batch.", "acks", "request.required.acks",
    "enable.idempotence", "transactional.id", "transaction.timeout.ms", "compression.",
    "message.timeout.ms", "delivery.timeout.ms", "retries", "message.send.max.retries",
    "partitioner", "sticky.partitioning.", "enable.gapless.guarantee", "max.in.flight",
    "delivery.report.only.error",
)  # fmt: skip

# Defaults changed for the scorer (same reasons as the kafka-python transport's); a user's
# client settings override these.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 3_000,
    # An empty partition's fetch (outcomes, often) must not hold votes back.
    "fetch.wait.max.ms": 20,
}
TOPIC_READER_DEFAULTS: dict[str, Any] = {**CONSUMER_DEFAULTS, "fetch.wait.max.ms": 500}
# librdkafka's producer creates a missing topic by default (its consumer does not): the
# product creates its topics itself, with their own settings (kafka-python transport).
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 5, "allow.auto.create.topics": False}
TRANSACTIONAL_DEFAULTS: dict[str, Any] = {
    # A crashed scorer's open transaction blocks read_committed readers until it times out.
    "transaction.timeout.ms": 15_000,
    # Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the last one's markers are
    # written; retry soon.
    "retry.backoff.ms": 10,
}
# What no client setting overrides: every signal acknowledged by all in-sync replicas, once,
# and a key's partition the same as with the Java and kafka-python clients.
PRODUCER_GUARANTEES: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    # Successful deliveries never reach Python; failures do (see ConfluentProducer).
    "delivery.report.only.error": True,
}
CONSUMER_GUARANTEES: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    # Range keeps partition p of co-partitioned topics (votes, outcomes) together.
    "partition.assignment.strategy": "range",
}
TIMEOUT_S = 30.0

_new_record = tuple.__new__


def translate(config: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka properties for ``config`` (kafka-python names translated).

    >>> translate({"security_protocol": "SASL_SSL", "sasl_plain_username": "u", "linger.ms": 2})
    {'security.protocol': 'SASL_SSL', 'sasl.username': 'u', 'linger.ms': 2}
    """
    out: dict[str, Any] = {}
    unknown = []
    for key, value in config.items():
        if key in KAFKA_PYTHON_NAMES:
            out[KAFKA_PYTHON_NAMES[key]] = value
        elif "_" not in key or key in _LIBRDKAFKA_CALLBACKS:
            out[key] = value  # librdkafka's own name: librdkafka validates it
        else:
            unknown.append(key)  # a kafka-python name with no translation here
    if unknown:
        raise TransportError(f"unknown Kafka client setting(s): {', '.join(sorted(unknown))}")
    return out


def _for_role(config: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The part of ``config`` that a ``role`` ('consumer', 'producer', 'admin') client takes."""
    drop: tuple[str, ...] = ()
    if role != "consumer":
        drop += _CONSUMER_ONLY
    if role != "producer":
        drop += _PRODUCER_ONLY
    return {key: value for key, value in config.items() if not key.startswith(drop)}


def _ours(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _theirs(tp: TopicPartition, offset: int | None = None) -> KafkaTopicPartition:
    if offset is None:
        return KafkaTopicPartition(tp.topic, tp.partition)
    return KafkaTopicPartition(tp.topic, tp.partition, offset)


# librdkafka's codes for a broker that did not answer (base.UNREACHABLE: wait, then retry) and
# for a producer that cannot go on (base.FENCED: re-create it).
UNREACHABLE_CODES = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)
FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_TXN_STATE,
    }
)


def error_kind(error: KafkaError | None, *, producer: bool = False) -> str:
    """The contract's kind of a librdkafka error (base.UNREACHABLE, FENCED or OTHER).

    A fatal error ends a producer (FENCED: a new one goes on); a fatal consumer error is
    OTHER (nothing to wait for).

    >>> error_kind(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    'unreachable'
    >>> error_kind(KafkaError(KafkaError._FENCED, fatal=True), producer=True)
    'fenced'
    >>> error_kind(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    'other'
    """
    if error is None:
        return OTHER
    code = error.code()
    if producer and (code in FENCED_CODES or error.fatal()):
        return FENCED
    if code in UNREACHABLE_CODES or (error.retriable() and not error.fatal()):
        return UNREACHABLE
    return OTHER


def _error(what: str, exc: KafkaException, *, producer: bool = False) -> TransportError:
    error = exc.args[0] if exc.args else None
    kind = error_kind(error, producer=producer) if isinstance(error, KafkaError) else OTHER
    return TransportError(f"{what}: {error if error is not None else exc}", kind=kind)


# How often librdkafka reports each broker connection's state (the reachability probe).
STATS_INTERVAL_MS = 1_000


class Connectivity:
    """Whether any broker connection is up, from librdkafka's statistics (``stats_cb``).

    librdkafka keeps its connection state in C; its statistics, served inside ``poll`` every
    :data:`STATS_INTERVAL_MS`, carry each broker's state. Until the first report nothing says
    the broker is away (a client just started), as with kafka-python's probe.

    >>> probe = Connectivity()
    >>> probe.up
    True
    >>> probe.on_stats('{"brokers": {"b:9092/1": {"state": "DOWN"}}}'); probe.up
    False
    >>> probe.on_stats('{"brokers": {"b:9092/1": {"state": "UP"}}}'); probe.up
    True
    """

    def __init__(self, chained: Any = None) -> None:
        self.up = True
        self.reports = 0
        self._chained = chained  # the user's own stats_cb, called too

    def on_stats(self, report: str) -> None:
        self.reports += 1
        try:
            brokers = json.loads(report).get("brokers") or {}
            self.up = not brokers or any(b.get("state") == "UP" for b in brokers.values())
        except (ValueError, AttributeError) as exc:  # a probe must never stop the loop
            log.debug("unreadable librdkafka statistics: %r", exc)
        if self._chained is not None:
            self._chained(report)


def _check_config(make: Any, config: Mapping[str, Any], what: str) -> Any:
    try:
        return make(dict(config))
    except KafkaException as exc:
        # An unknown or invalid property: librdkafka names it.
        raise _error(f"cannot create Kafka {what}", exc) from None
    except (TypeError, ValueError) as exc:
        raise TransportError(f"cannot create Kafka {what}: {exc}") from None


def _wait_for_leaders(admin: AdminClient, topics: Sequence[str]) -> None:
    """Block until each topic's partitions have a leader (the controller answers the create
    before every broker knows)."""
    deadline = time.monotonic() + TIMEOUT_S
    for topic in topics:
        while time.monotonic() < deadline:
            entry = admin.list_topics(topic=topic, timeout=TIMEOUT_S).topics.get(topic)
            if (
                entry is not None
                and entry.error is None
                and entry.partitions
                and all(p.leader >= 0 for p in entry.partitions.values())
            ):
                break
            time.sleep(0.05)


def _done(futures: Mapping[str, Future[None]], verb: str, *, already: int) -> list[str]:
    """The topics an admin request acted on. Error code ``already`` means the topic already
    is as asked (created, or gone): skipped; any other error raises."""
    done = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != already:
                raise _error(f"cannot {verb} topic {name}", exc) from None
        else:
            done.append(name)
    return done


class ConfluentTransport:
    """Factory for librdkafka consumers and producers sharing one connection config.

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port]``.
    client_config
        Extra settings: librdkafka properties (``ssl.ca.location``) or their
        kafka-python names (``ssl_cafile``), see :data:`KAFKA_PYTHON_NAMES`.
    replication_factor
        For topics this transport creates.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        client_config: Mapping[str, Any] | None = None,
        replication_factor: int = 1,
        client_id: str = "metasignal",
    ) -> None:
        self.bootstrap = bootstrap
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            # librdkafka's own log lines go through logging, like kafka-python's.
            "logger": logging.getLogger("metasignal.transport.librdkafka"),
            **translate(client_config or {}),
        }
        self.replication_factor = replication_factor
        # Refuse a misspelt or invalid property now, not at the first consumer.
        with self._admin():
            pass

    @contextlib.contextmanager
    def _admin(self) -> Iterator[AdminClient]:
        """A short-lived admin client (admin requests are rare): one kept for the process's
        life would queue log lines that nobody polls."""
        admin = _check_config(AdminClient, _for_role(self._config, "admin"), "admin")
        try:
            yield admin
        except KafkaException as exc:
            raise _error(f"Kafka admin request to {self.bootstrap} failed", exc) from None
        finally:
            admin.poll(0)  # hand its log lines to logging

    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        requests = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=self.replication_factor,
                config=dict(spec.config),
            )
            for spec in specs
        ]
        if not requests:
            return []
        with self._admin() as admin:
            futures = admin.create_topics(requests, operation_timeout=TIMEOUT_S, request_timeout=60)
            created = _done(futures, "create", already=KafkaError.TOPIC_ALREADY_EXISTS)
            _wait_for_leaders(admin, created)
        return created

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        if not names:
            return []
        with self._admin() as admin:
            futures = admin.delete_topics(list(names), operation_timeout=TIMEOUT_S)
            return _done(futures, "delete", already=KafkaError.UNKNOWN_TOPIC_OR_PART)

    def partition_count(self, topic: str) -> int | None:
        # A listing of every topic: a metadata request naming one may create it on a broker
        # with auto.create.topics.enable.
        with self._admin() as admin:
            metadata = admin.list_topics(timeout=TIMEOUT_S)
        entry = metadata.topics.get(topic)
        if entry is None or entry.error is not None:
            return None
        return len(entry.partitions)

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> ConfluentConsumer:
        settings = dict(TOPIC_READER_DEFAULTS if assign_all else CONSUMER_DEFAULTS)
        settings.update(_for_role(self._config, "consumer"))
        settings.update(CONSUMER_GUARANTEES)
        settings.update(
            {
                # librdkafka insists on a group id even for a reader that never joins one; this
                # one is never used for a commit (assign, not subscribe).
                "group.id": group_id or f"metasignal-reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
        return ConfluentConsumer(
            settings,
            topics=topics,
            grouped=group_id is not None and not assign_all,
            listener=listener,
            assign_all=assign_all,
            from_beginning=from_beginning,
        )

    def producer(self, *, transactional_id: str | None = None) -> ConfluentProducer:
        settings = dict(PRODUCER_DEFAULTS)
        if transactional_id is not None:
            settings.update(TRANSACTIONAL_DEFAULTS)
        # The user's client settings win over these defaults, never over the guarantees.
        settings.update(_for_role(self._config, "producer"))
        settings.update(PRODUCER_GUARANTEES)
        if transactional_id is not None:
            settings["transactional.id"] = transactional_id
        return ConfluentProducer(settings, transactional=transactional_id is not None)

    def close(self) -> None:
        """Nothing to release: each admin request has its own short-lived client."""


class ConfluentConsumer:
    """See :class:`metasignal.stream.transport.base.Consumer`."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        *,
        topics: Sequence[str],
        grouped: bool,
        listener: RebalanceListener | None,
        assign_all: Sequence[str],
        from_beginning: bool,
    ) -> None:
        self._connectivity = Connectivity(settings.get("stats_cb"))
        settings = {
            "statistics.interval.ms": STATS_INTERVAL_MS,
            **settings,
            "stats_cb": self._connectivity.on_stats,
        }
        self.config = dict(settings)
        self._grouped = grouped
        self._from_beginning = from_beginning
        self._consumer: Consumer = _check_config(Consumer, settings, "consumer")
        if assign_all:
            start = OFFSET_BEGINNING if from_beginning else OFFSET_END
            partitions: list[KafkaTopicPartition] = []
            for topic in assign_all:
                partitions.extend(
                    KafkaTopicPartition(topic, p, start) for p in self._partitions_of(topic)
                )
            self._consumer.assign(partitions)
        elif topics:
            callbacks: dict[str, Any] = {}
            if listener is not None:
                on_lost = listener.on_lost or listener.on_revoked
                # confluent-kafka applies the (un)assignment itself after each callback.
                callbacks = {
                    "on_assign": lambda _, tps: listener.on_assigned({_ours(t) for t in tps}),
                    "on_revoke": lambda _, tps: listener.on_revoked({_ours(t) for t in tps}),
                    "on_lost": lambda _, tps: on_lost({_ours(t) for t in tps}),
                }
            self._consumer.subscribe(list(topics), **callbacks)

    def _partitions_of(self, topic: str) -> list[int]:
        try:
            entry = self._consumer.list_topics(topic=topic, timeout=TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise _error(f"cannot read the partitions of {topic}", exc) from None
        if entry is None or entry.error is not None or not entry.partitions:
            return [0]  # as kafka-python: the topic's first partition, read once it exists
        return sorted(entry.partitions)

    def reachable(self) -> bool:
        """Whether any broker connection was up at librdkafka's last report (no request)."""
        return self._connectivity.up

    @property
    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        """Whatever is queued, up to ``max_records``; wait up to ``timeout_ms`` only if nothing
        is (``consume`` alone would wait for a full batch)."""
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=0)
            if not messages and timeout_ms > 0:
                first = self._consumer.poll(timeout=timeout_ms / 1000)
                if first is not None:
                    messages = [first]
                    if max_records > 1:
                        messages += self._consumer.consume(num_messages=max_records - 1, timeout=0)
        except KafkaException as exc:
            raise _error("poll failed", exc) from exc
        # Any: librdkafka's types admit None where a message without an error never has one.
        batch: list[Any] = messages
        # Positional, and tuple.__new__ (what Record._make calls) skips the named tuple's
        # Python-level __new__: this runs once per message (0.44 -> 0.31 µs a message).
        records = [
            _new_record(
                Record,
                (
                    m.topic(),
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.value(),
                    m.timestamp()[1],
                    tuple(m.headers() or ()),
                ),
            )
            for m in batch
            if m.error() is None
        ]
        if len(records) != len(batch):
            self._raise_fatal([m for m in batch if m.error() is not None])
        return records

    @staticmethod
    def _raise_fatal(failed: Sequence[Any]) -> None:
        """Per-partition events (a topic not created yet, a broker away) are librdkafka's to
        retry, as kafka-python does; a fatal error stops the consumer."""
        for message in failed:
            error = message.error()
            if error.fatal():
                raise TransportError(f"consumer failed: {error}")
            log.debug("consumer event: %s", error)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            result = self._consumer.commit(
                offsets=[_theirs(tp, off) for tp, off in offsets.items()], asynchronous=False
            )
        except KafkaException as exc:
            raise _error("offset commit failed", exc) from exc
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            raise TransportError(
                f"offset commit failed: {failed[0].error}", kind=error_kind(failed[0].error)
            )

    def assignment(self) -> set[TopicPartition]:
        return {_ours(tp) for tp in self._consumer.assignment()}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(_theirs(partition, offset))
        except KafkaException as exc:
            raise _error(f"seek {partition.topic}[{partition.partition}] failed", exc) from exc

    def position(self, partition: TopicPartition) -> int:
        """The next offset to read. Before the first record, librdkafka knows none: it is the
        committed offset, else where the reset policy starts (as kafka-python answers)."""
        [tp] = self._consumer.position([_theirs(partition)])
        if tp.offset >= 0:
            return int(tp.offset)
        committed = self.committed(partition) if self._grouped else None
        if committed is not None:
            return committed
        low, high = self._watermarks(partition)
        return low if self._from_beginning else high

    def committed(self, partition: TopicPartition) -> int | None:
        try:
            [tp] = self._consumer.committed([_theirs(partition)], timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise _error("cannot read the committed offset", exc) from exc
        return int(tp.offset) if tp.offset >= 0 else None

    def _watermarks(self, partition: TopicPartition) -> tuple[int, int]:
        try:
            low, high = self._consumer.get_watermark_offsets(
                _theirs(partition), timeout=TIMEOUT_S, cached=False
            )
        except KafkaException as exc:
            raise _error("cannot read the end offsets", exc) from exc
        return int(low), int(high)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[1] for tp in partitions}

    def close(self) -> None:
        self._consumer.close()  # leaves the group; auto-commit is off, so commits nothing


class ConfluentProducer:
    """See :class:`metasignal.stream.transport.base.Producer`."""

    def __init__(self, settings: Mapping[str, Any], *, transactional: bool) -> None:
        self.config = dict(settings)
        # librdkafka calls back only for failed deliveries (delivery.report.only.error).
        self._failures: list[KafkaError] = []
        self._producer: Producer = _check_config(
            Producer, {**settings, "on_delivery": self._on_failure}, "producer"
        )
        if transactional:
            try:
                # Fences any zombie with the same id and aborts its open transaction.
                self._producer.init_transactions(TIMEOUT_S)
            except KafkaException as exc:
                raise _error("cannot initialise transactions", exc, producer=True) from None

    def _on_failure(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def _raise_failures(self, what: str) -> None:
        failures, self._failures = self._failures, []
        if failures:
            raise TransportError(
                f"{len(failures)} {what} failed, first: {failures[0]}",
                kind=error_kind(failures[0], producer=True),
            )

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        while True:
            try:
                if headers:
                    self._producer.produce(topic, value, key, headers=list(headers))
                else:
                    self._producer.produce(topic, value, key)
                return
            except BufferError:
                # The local queue is full (queue.buffering.max.*): let deliveries drain.
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise _error(f"send to {topic} failed", exc, producer=True) from exc

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            remaining = self._producer.flush(timeout_s)
        except KafkaException as exc:
            self._failures = []  # the batch is replayed; these no longer matter
            raise _error("flush failed", exc, producer=True) from exc
        if remaining:
            self._failures = []
            raise TransportError(
                f"flush timed out: {remaining} send(s) not acknowledged", kind=UNREACHABLE
            )
        self._raise_failures("send(s)")

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            # Not in a state to begin one (as with kafka-python): only a new producer goes on.
            raise TransportError(f"cannot begin a transaction: {exc}", kind=FENCED) from exc

    def commit_transaction(
        self, offsets: Mapping[TopicPartition, int], consumer: ConsumerProtocol
    ) -> None:
        metadata = getattr(consumer, "group_metadata", None)
        try:
            if offsets:
                self._producer.send_offsets_to_transaction(
                    [_theirs(tp, off) for tp, off in offsets.items()], metadata, TIMEOUT_S
                )
            self._producer.commit_transaction(TIMEOUT_S)
        except KafkaException as exc:
            raise _error("transaction commit failed", exc, producer=True) from exc
        self._producer.poll(0)  # serve any failure report left in the queue
        self._raise_failures("transactional send(s)")

    def abort_transaction(self) -> None:
        try:
            self._producer.abort_transaction(TIMEOUT_S)
        except KafkaException as exc:
            raise _error("transaction abort failed", exc, producer=True) from exc
        finally:
            self._producer.poll(0)
            self._failures = []  # aborted: their outcome no longer matters

    def close(self) -> None:
        self._producer.flush(10)
        self._producer.close()
