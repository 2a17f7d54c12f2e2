"""Apache Kafka through kafka-python: the production transport.

Delivery is acknowledged by every in-sync replica (``acks='all'``) with an
idempotent producer; consumers never auto-commit, so the service decides when
an offset is done. Security settings (SASL/SSL) pass through unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    KafkaConnectionError,
    KafkaError,
    ProducerFencedError,
    RetriableError,
)
from kafka.structs import OffsetAndMetadata

from metasignal.stream.transport.base import (
    FENCED,
    OTHER,
    UNREACHABLE,
    Consumer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    TransportError,
)
from metasignal.stream.transport.close_race import install as quiet_close_race
from metasignal.stream.transport.rebalance_fix import finish_interrupted_rebalances

log = logging.getLogger("metasignal.transport")
quiet_close_race()  # kafka-python 3.0.12 logs a traceback for its own close race

TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3

CLIENT_DEFAULTS: dict[str, Any] = {
    # kafka-python backs off reconnecting up to 30 s: after an outage the service would sit
    # idle that long with the broker back. Retrying each second at most costs one refused
    # connection per second and resumes work within about a second of the broker's return.
    "reconnect_backoff_max_ms": 1_000,
    # The product creates its topics itself, each with its own settings (models compacted);
    # a client must never create one as a side effect. Left on (kafka-python's default), a
    # client still running when a run deletes its topics (a demo on a shared broker)
    # re-creates them with the broker's defaults.
    "allow_auto_create_topics": False,
}
# kafka-python defaults changed for the scorer; a user's client settings override these.
CONSUMER_DEFAULTS: dict[str, Any] = {
    **CLIENT_DEFAULTS,
    # A crashed replica's partitions move to a live one after this long.
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    # The broker holds a fetch for an empty partition (outcomes, often) this long while votes
    # wait behind it: 500 ms by default halved the scorer's throughput.
    "fetch_max_wait_ms": 20,
}
# A reader of a whole topic (models: idle for hours) keeps kafka-python's long poll, which the
# broker answers the moment a record lands; short, it would fetch 50 times a second.
TOPIC_READER_DEFAULTS: dict[str, Any] = {**CONSUMER_DEFAULTS, "fetch_max_wait_ms": 500}
PRODUCER_DEFAULTS: dict[str, Any] = {**CLIENT_DEFAULTS, "linger_ms": 5}
TRANSACTIONAL_DEFAULTS: dict[str, Any] = {
    # A crashed scorer's open transaction blocks read_committed readers until it times out;
    # keep that window short.
    "transaction_timeout_ms": 15_000,
    # Back-to-back transactions often meet CONCURRENT_TRANSACTIONS while the last one's
    # markers are written; the 100 ms default backoff put p99 latency at ~300 ms
    # (docs/benchmarks.md).
    "retry_backoff_ms": 10,
    # A transactional producer is re-created after an outage (stream/checkpoint.py); each
    # attempt made while the broker is still away gives up after these instead of 30-60 s,
    # so the loop keeps beating and retries within seconds of the broker's return.
    "bootstrap_timeout_ms": 5_000,
    "max_block_ms": 10_000,
}
# What no client setting overrides: every signal acknowledged by all in-sync replicas, once.
PRODUCER_GUARANTEES: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "retries": 2_147_483_647,
}


# kafka-python waits for the broker without limit in a consumer commit and in every
# transaction step; during an outage that froze the loop (and its liveness). These bound each
# wait: a timeout is a TransportError the service recovers from once the broker is back.
COMMIT_TIMEOUT_MS = 10_000
TRANSACTION_TIMEOUT_MS = 10_000
OFFSETS_TIMEOUT_MS = 5_000
CLOSE_TIMEOUT_S = 10.0
BROKEN_CLOSE_TIMEOUT_S = 1.0


def _kind(exc: BaseException) -> str:
    """The contract's kind of a kafka-python error (base.UNREACHABLE, FENCED or OTHER)."""
    if isinstance(exc, ProducerFencedError | InvalidProducerEpochError | InvalidTxnStateError):
        return FENCED
    if isinstance(exc, RetriableError | KafkaConnectionError):
        return UNREACHABLE
    return OTHER


def _error(message: str, exc: BaseException) -> TransportError:
    return TransportError(f"{message}: {exc}", kind=_kind(exc))


def _ours(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


def _theirs(tp: TopicPartition) -> KafkaTopicPartition:
    return KafkaTopicPartition(tp.topic, tp.partition)


class _ListenerAdapter(ConsumerRebalanceListener):
    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._listener.on_revoked({_ours(tp) for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._listener.on_assigned({_ours(tp) for tp in assigned})

    def on_partitions_lost(self, lost: Any) -> None:
        callback = self._listener.on_lost or self._listener.on_revoked
        callback({_ours(tp) for tp in lost})


_CLIENTS = (KafkaAdminClient, KafkaConsumer, KafkaProducer)
_KNOWN_SETTINGS = frozenset(key for client in _CLIENTS for key in client.DEFAULT_CONFIG)


def _settings_for(client: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that ``client`` accepts (kafka-python refuses unknown keys, and
    a consumer tunable such as ``fetch_max_wait_ms`` is unknown to the producer)."""
    return {key: value for key, value in config.items() if key in client.DEFAULT_CONFIG}


def _done(topics: Sequence[Mapping[str, Any]], verb: str, *, already: int) -> list[str]:
    """The names an admin request acted on. Error code ``already`` means the topic already
    is as asked (created, or gone): skipped; any other error raises."""
    done = []
    for topic in topics:
        code = topic.get("error_code", 0)
        if code == 0:
            done.append(topic["name"])
        elif code != already:
            raise TransportError(
                f"cannot {verb} topic {topic['name']}: {topic.get('error_message') or code}"
            )
    return done


class KafkaTransport:
    """Factory for Kafka consumers and producers sharing one connection config.

    Parameters
    ----------
    bootstrap
        ``host:port[,host:port]``.
    client_config
        Extra kafka-python settings, e.g. ``security_protocol``,
        ``sasl_mechanism``, ``sasl_plain_username``, ``ssl_cafile``.
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
        self._config = {
            "bootstrap_servers": bootstrap.split(","),
            "client_id": client_id,
            **(client_config or {}),
        }
        unknown = set(self._config) - set(_KNOWN_SETTINGS)
        if unknown:
            raise TransportError(f"unknown Kafka client setting(s): {', '.join(sorted(unknown))}")
        self.replication_factor = replication_factor
        self._admin: KafkaAdminClient | None = None

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            try:
                self._admin = KafkaAdminClient(**_settings_for(KafkaAdminClient, self._config))
            except KafkaError as exc:
                raise TransportError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None
        return self._admin

    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        admin = self._admin_client()
        request = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": self.replication_factor,
                "configs": dict(spec.config),
            }
            for spec in specs
        }
        result = admin.create_topics(request, raise_errors=False)
        created = _done(result["topics"], "create", already=TOPIC_ALREADY_EXISTS)
        if created:
            admin.wait_for_topics(created, timeout_ms=30_000)
        return created

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        admin = self._admin_client()
        try:
            result = admin.delete_topics(list(names), timeout_ms=30_000, raise_errors=False)
        except KafkaError as exc:
            raise TransportError(f"cannot delete topics: {exc}") from None
        return _done(result["topics"], "delete", already=UNKNOWN_TOPIC_OR_PARTITION)

    def partition_count(self, topic: str) -> int | None:
        described = self._admin_client().describe_topics([topic])
        for entry in described:
            if entry.get("name") == topic and entry.get("error_code", 0) == 0:
                return len(entry["partitions"])
        return None

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> KafkaTransportConsumer:
        return KafkaTransportConsumer(
            _settings_for(KafkaConsumer, self._config),
            topics=topics,
            group_id=group_id,
            listener=listener,
            read_committed=read_committed,
            assign_all=assign_all,
            from_beginning=from_beginning,
        )

    def producer(self, *, transactional_id: str | None = None) -> KafkaTransportProducer:
        return KafkaTransportProducer(
            _settings_for(KafkaProducer, self._config), transactional_id=transactional_id
        )

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class KafkaTransportConsumer:
    """See :class:`metasignal.stream.transport.base.Consumer`."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        topics: Sequence[str],
        group_id: str | None,
        listener: RebalanceListener | None,
        read_committed: bool,
        assign_all: Sequence[str],
        from_beginning: bool,
    ) -> None:
        self.group_id = group_id
        tunables = TOPIC_READER_DEFAULTS if assign_all else CONSUMER_DEFAULTS
        try:
            self._consumer = KafkaConsumer(
                **{**tunables, **config},  # the user's client settings win over these defaults
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                isolation_level="read_committed" if read_committed else "read_uncommitted",
                # Range keeps partition p of co-partitioned topics (votes, outcomes) together.
                partition_assignment_strategy=(RangePartitionAssignor,),
            )
        except KafkaError as exc:
            raise _error("cannot create Kafka consumer", exc) from None
        if assign_all:
            partitions: list[KafkaTopicPartition] = []
            for topic in assign_all:
                ids = self._consumer.partitions_for_topic(topic) or {0}
                partitions.extend(KafkaTopicPartition(topic, p) for p in sorted(ids))
            self._consumer.assign(partitions)
            if from_beginning:
                self._consumer.seek_to_beginning(*partitions)
            else:
                self._consumer.seek_to_end(*partitions)
        elif topics:
            try:
                finish_interrupted_rebalances(self._consumer)
            except TransportError:
                self._consumer.close(autocommit=False)
                raise
            self._consumer.subscribe(
                list(topics), listener=_ListenerAdapter(listener) if listener else None
            )

    @property
    def group_metadata(self) -> Any:
        return self._consumer.group_metadata()

    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise _error("poll failed", exc) from exc
        # Positional: this runs once per message.
        return [
            Record(
                r.topic,
                r.partition,
                r.offset,
                r.key,
                r.value,
                r.timestamp,
                tuple(r.headers) if r.headers else (),
            )
            for records in batches.values()
            for r in records
        ]

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            self._consumer.commit(
                {_theirs(tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
                timeout_ms=COMMIT_TIMEOUT_MS,
            )
        except KafkaError as exc:
            raise _error("offset commit failed", exc) from exc

    def assignment(self) -> set[TopicPartition]:
        return {_ours(tp) for tp in self._consumer.assignment()}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        theirs = _theirs(partition)
        # A partition taken away meanwhile (a rebalance after an outage) restarts from its
        # committed offset wherever it is assigned next; kafka-python refuses to seek it.
        if theirs in self._consumer.assignment():
            self._consumer.seek(theirs, offset)

    def reachable(self) -> bool:
        """Whether any broker connection is up (a dict lookup per broker, no request)."""
        client = self._consumer._client  # kafka-python keeps no public connection state
        try:
            brokers = client.cluster.brokers()
            # No metadata yet (a client just started): nothing says the broker is away.
            return not brokers or any(client.connected(broker.node_id) for broker in brokers)
        except Exception as exc:  # a probe must never stop the loop: assume reachable
            log.debug("connection probe failed: %r", exc)
            return True

    # These ask the broker and time out while it is unreachable: a TransportError, which the
    # callers handle (the lag check skips a round), never a KafkaTimeoutError traceback.
    def position(self, partition: TopicPartition) -> int:
        try:
            return int(self._consumer.position(_theirs(partition), timeout_ms=OFFSETS_TIMEOUT_MS))
        except KafkaError as exc:
            raise _error(f"position of {partition} unavailable", exc) from exc

    def committed(self, partition: TopicPartition) -> int | None:
        try:
            value = self._consumer.committed(_theirs(partition), timeout_ms=OFFSETS_TIMEOUT_MS)
        except KafkaError as exc:
            raise _error(f"committed offset of {partition} unavailable", exc) from exc
        return None if value is None else int(value)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            # timeout_ms positionally: tests stand in a plain function for end_offsets.
            theirs = [_theirs(tp) for tp in partitions]
            ends = self._consumer.end_offsets(theirs, OFFSETS_TIMEOUT_MS)
        except KafkaError as exc:
            raise _error("end offsets unavailable", exc) from exc
        return {_ours(tp): int(offset) for tp, offset in ends.items()}

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaTransportProducer:
    """See :class:`metasignal.stream.transport.base.Producer`."""

    def __init__(self, config: Mapping[str, Any], *, transactional_id: str | None) -> None:
        settings = dict(PRODUCER_DEFAULTS)
        if transactional_id is not None:
            settings.update(TRANSACTIONAL_DEFAULTS)
        # The user's client settings win over these defaults, never over the guarantees.
        settings.update(config)
        settings.update(PRODUCER_GUARANTEES)
        if transactional_id is not None:
            settings["transactional_id"] = transactional_id
        try:
            self._producer = KafkaProducer(**settings)
        except KafkaError as exc:
            raise _error("cannot create Kafka producer", exc) from None
        # Futures sent since the last flush or commit, checked once they are all done (cheaper
        # than an errback per message).
        self._in_flight: list[Any] = []
        self._broken = False
        if transactional_id is not None:
            # Fences any zombie with the same id and aborts its open transaction (or completes
            # the commit an earlier producer of this id had started).
            try:
                self._producer.init_transactions()
            except KafkaError as exc:
                self._producer.close(timeout=BROKEN_CLOSE_TIMEOUT_S)
                raise _error("cannot initialise transactions", exc) from None

    def _raise_failures(self, what: str) -> None:
        futures, self._in_flight = self._in_flight, []
        errors = [f.exception for f in futures if f.failed()]
        if errors:
            raise TransportError(
                f"{len(errors)} {what} failed, first: {errors[0]}", kind=_kind(errors[0])
            )

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        try:
            future = self._producer.send(
                topic, key=key, value=value, headers=list(headers) if headers else None
            )
        except KafkaError as exc:
            raise _error(f"send to {topic} failed", exc) from exc
        self._in_flight.append(future)

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            self._in_flight = []  # the batch is replayed; these no longer matter
            raise _error("flush failed", exc) from exc
        self._raise_failures("send(s)")

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaError as exc:
            # The transaction manager is in an error state: only a new producer goes on.
            self._broken = True
            raise TransportError(f"cannot begin a transaction: {exc}", kind=FENCED) from exc

    def _finish(self, what: str, result: Any) -> None:
        """Wait, bounded, for one transaction step kafka-python would wait on forever."""
        self._producer._sender.wakeup()
        try:
            done = result.wait(timeout_ms=TRANSACTION_TIMEOUT_MS)
        except KafkaError as exc:
            if _kind(exc) != UNREACHABLE:
                self._broken = True
            raise TransportError(f"{what} failed: {exc}", kind=FENCED) from exc
        if not done:
            # The step is still pending inside the client: this producer cannot start another
            # one. A new producer with the same id completes or aborts it on the broker.
            self._broken = True
            raise TransportError(
                f"{what} timed out after {TRANSACTION_TIMEOUT_MS / 1000:g} s (broker unreachable?)",
                kind=FENCED,
            )

    def commit_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        # kafka-python's send_offsets_to_transaction/commit_transaction wait without limit;
        # the same steps through its transaction manager, each wait bounded.
        manager = self._producer._transaction_manager
        metadata = getattr(consumer, "group_metadata", None)
        try:
            sent = manager.send_offsets_to_transaction(
                {_theirs(tp): OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()},
                metadata,
            )
            self._finish("sending offsets to the transaction", sent)
            self._finish("transaction commit", manager.begin_commit())
        except KafkaError as exc:
            self._broken = True
            raise TransportError(f"transaction commit failed: {exc}", kind=FENCED) from exc
        self._raise_failures("transactional send(s)")

    def abort_transaction(self) -> None:
        self._in_flight = []  # aborted: their outcome no longer matters
        try:
            self._finish("transaction abort", self._producer._transaction_manager.begin_abort())
        except KafkaError as exc:
            self._broken = True
            raise TransportError(f"transaction abort failed: {exc}", kind=FENCED) from exc

    def close(self) -> None:
        # A broken producer's pending requests are moot: do not wait for them.
        try:
            self._producer.close(
                timeout=BROKEN_CLOSE_TIMEOUT_S if self._broken else CLOSE_TIMEOUT_S
            )
        except KafkaError as exc:  # unsent records are replayed from the committed offsets
            log.warning("producer closed with records unsent: %s", exc)
