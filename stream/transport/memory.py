"""The embedded in-process bus: Kafka's semantics without a broker.

For the demo and fast unit tests. Topics have partitions chosen by the same
murmur2 key hash as Kafka's default partitioner; consumer groups share
partitions (eager rebalancing on join/leave, listener called inside
``poll``); commits store the next offset to read; a transaction's records and
offsets become visible together at commit, or never.

Examples
--------
>>> bus = MemoryBus()
>>> bus.create_topics([TopicSpec("votes", partitions=2)])
['votes']
>>> producer = bus.producer()
>>> producer.send("votes", key=b"evt-1", value=b"{}")
>>> consumer = bus.consumer(topics=["votes"], group_id="scorer")
>>> [(r.key, r.offset) for r in consumer.poll(timeout_ms=0, max_records=10)]
[(b'evt-1', 0)]
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from metasignal.stream.transport.base import (
    Consumer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
    TransportError,
)


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    """Kafka's default: murmur2 of the key; keyless records spread round-robin."""
    if key is None:
        return counter % partitions
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass
class _Group:
    members: list[str] = field(default_factory=list)
    topics: dict[str, set[str]] = field(default_factory=dict)
    generation: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryBus:
    """Shared state for every producer and consumer made from it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._logs: dict[str, list[list[Record]]] = {}
        self._configs: dict[str, Mapping[str, str]] = {}
        self._groups: dict[str, _Group] = {}
        self._ids = itertools.count()
        self._round_robin = itertools.count()

    # -- admin ---------------------------------------------------------------
    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        created = []
        with self._cond:
            for spec in specs:
                if spec.name not in self._logs:
                    self._logs[spec.name] = [[] for _ in range(spec.partitions)]
                    self._configs[spec.name] = dict(spec.config)
                    created.append(spec.name)
        return created

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        with self._cond:
            deleted = [name for name in names if self._logs.pop(name, None) is not None]
            for name in deleted:
                self._configs.pop(name, None)
        return deleted

    def partition_count(self, topic: str) -> int | None:
        with self._cond:
            log = self._logs.get(topic)
            return None if log is None else len(log)

    def topic_config(self, topic: str) -> Mapping[str, str]:
        return self._configs[topic]

    def _partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._logs:
            # Auto-create like a development broker, so tests need not pre-create.
            self._logs[topic] = [[]]
            self._configs[topic] = {}
        return [TopicPartition(topic, p) for p in range(len(self._logs[topic]))]

    # -- data path -------------------------------------------------------------
    def _append(self, topic: str, key: bytes | None, value: bytes | None, headers: tuple) -> None:
        self._partitions(topic)
        log = self._logs[topic]
        partition = partition_for(key, len(log), next(self._round_robin))
        records = log[partition]
        records.append(
            Record(
                topic=topic,
                partition=partition,
                offset=len(records),
                key=key,
                value=value,
                timestamp_ms=int(time.time() * 1000),
                headers=headers,
            )
        )

    def _publish(self, batch: list[tuple[str, bytes | None, bytes | None, tuple]]) -> None:
        with self._cond:
            for topic, key, value, headers in batch:
                self._append(topic, key, value, headers)
            self._cond.notify_all()

    def _commit_transaction(
        self,
        batch: list[tuple[str, bytes | None, bytes | None, tuple]],
        group_id: str | None,
        offsets: Mapping[TopicPartition, int],
    ) -> None:
        with self._cond:
            for topic, key, value, headers in batch:
                self._append(topic, key, value, headers)
            if group_id is not None:
                self._groups.setdefault(group_id, _Group()).committed.update(offsets)
            self._cond.notify_all()

    def end_offset(self, tp: TopicPartition) -> int:
        with self._cond:
            return len(self._logs[tp.topic][tp.partition])

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic`` in partition order (for tests and the demo)."""
        with self._cond:
            return [r for log in self._logs.get(topic, []) for r in log]

    # -- factories ---------------------------------------------------------------
    def producer(self, *, transactional_id: str | None = None) -> MemoryProducer:
        return MemoryProducer(self, transactional_id)

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> MemoryConsumer:
        return MemoryConsumer(
            self,
            topics=topics,
            group_id=group_id,
            listener=listener,
            assign_all=assign_all,
            from_beginning=from_beginning,
        )

    def close(self) -> None:
        """Nothing to release; present for the Transport contract."""

    # -- groups ------------------------------------------------------------------
    def _join(self, group_id: str, member: str, topics: Sequence[str]) -> None:
        with self._cond:
            group = self._groups.setdefault(group_id, _Group())
            group.members.append(member)
            group.topics[member] = set(topics)
            group.generation += 1
            self._cond.notify_all()

    def _leave(self, group_id: str, member: str) -> None:
        with self._cond:
            group = self._groups[group_id]
            if member in group.members:
                group.members.remove(member)
                group.topics.pop(member, None)
                group.generation += 1
                self._cond.notify_all()

    def _assignment(self, group_id: str, member: str) -> tuple[int, set[TopicPartition]]:
        """Partition ``p`` of every topic goes to the same member, like Kafka's range
        assignor with equal partition counts: co-partitioned topics stay together."""
        group = self._groups[group_id]
        members = sorted(group.members)
        topics = sorted(set().union(*group.topics.values())) if group.topics else []
        mine = {
            tp
            for topic in topics
            for tp in self._partitions(topic)
            if members[tp.partition % len(members)] == member
        }
        return group.generation, mine


class MemoryConsumer:
    """A consumer of the memory bus (see :class:`metasignal.stream.transport.base.Consumer`)."""

    def __init__(
        self,
        bus: MemoryBus,
        *,
        topics: Sequence[str],
        group_id: str | None,
        listener: RebalanceListener | None,
        assign_all: Sequence[str],
        from_beginning: bool,
    ) -> None:
        self._bus = bus
        self.group_id = group_id
        self._listener = listener
        self._member = f"member-{next(bus._ids)}"
        self._positions: dict[TopicPartition, int] = {}
        self._generation = -1
        self._turn = 0
        self._from_beginning = from_beginning
        self._closed = False
        if assign_all:
            with bus._cond:
                for topic in assign_all:
                    for tp in bus._partitions(topic):
                        self._positions[tp] = 0 if from_beginning else bus.end_offset(tp)
        elif group_id is not None:
            bus._join(group_id, self._member, topics)

    def _rebalance_if_needed(self) -> None:
        if self.group_id is None:
            return
        with self._bus._cond:
            generation, assigned = self._bus._assignment(self.group_id, self._member)
            if generation == self._generation:
                return
            committed = self._bus._groups[self.group_id].committed
            revoked = set(self._positions)
        if self._listener and revoked:
            self._listener.on_revoked(revoked)
        with self._bus._cond:
            self._positions = {
                tp: committed.get(tp, 0 if self._from_beginning else self._bus.end_offset(tp))
                for tp in assigned
            }
            self._generation = generation
        if self._listener:
            self._listener.on_assigned(set(assigned))

    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        if self._closed:
            raise TransportError("consumer is closed")
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self._rebalance_if_needed()
            with self._bus._cond:
                out: list[Record] = []
                # Rotate the starting partition so a busy partition cannot starve the others.
                order = sorted(self._positions)
                self._turn = (self._turn + 1) % max(len(order), 1)
                for tp in order[self._turn :] + order[: self._turn]:
                    log = self._bus._logs[tp.topic][tp.partition]
                    position = self._positions[tp]
                    take = log[position : position + max_records - len(out)]
                    out.extend(take)
                    self._positions[tp] = position + len(take)
                    if len(out) >= max_records:
                        break
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._bus._cond.wait(min(remaining, 0.05))

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.group_id is None:
            raise TransportError("a consumer without a group cannot commit")
        with self._bus._cond:
            self._bus._groups[self.group_id].committed.update(offsets)

    def assignment(self) -> set[TopicPartition]:
        self._rebalance_if_needed()
        return set(self._positions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[partition] = offset

    def position(self, partition: TopicPartition) -> int:
        return self._positions[partition]

    def committed(self, partition: TopicPartition) -> int | None:
        if self.group_id is None:
            return None
        with self._bus._cond:
            return self._bus._groups[self.group_id].committed.get(partition)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._bus.end_offset(tp) for tp in partitions}

    def close(self) -> None:
        if not self._closed and self.group_id is not None:
            self._bus._leave(self.group_id, self._member)
        self._closed = True


class MemoryProducer:
    """A producer of the memory bus; sends are acknowledged immediately."""

    def __init__(self, bus: MemoryBus, transactional_id: str | None) -> None:
        self._bus = bus
        self._transactional_id = transactional_id
        self._pending: list[tuple[str, bytes | None, bytes | None, tuple]] | None = None

    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        item = (topic, key, value, tuple(headers))
        if self._pending is not None:
            self._pending.append(item)
        else:
            self._bus._publish([item])

    def flush(self, timeout_s: float = 30.0) -> None:
        """Sends are synchronous here; nothing is ever outstanding."""

    def begin_transaction(self) -> None:
        if self._transactional_id is None:
            raise TransportError("producer is not transactional")
        if self._pending is not None:
            raise TransportError("a transaction is already open")
        self._pending = []

    def commit_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        if self._pending is None:
            raise TransportError("no transaction is open")
        batch, self._pending = self._pending, None
        group_id = getattr(consumer, "group_id", None)
        self._bus._commit_transaction(batch, group_id, offsets)

    def abort_transaction(self) -> None:
        self._pending = None

    def close(self) -> None:
        self._pending = None
