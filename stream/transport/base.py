"""The transport contract the service is written against.

Two implementations keep the same meaning for topics, keys, key-hash
partitions, offsets, consumer groups, commits and transactions:
:mod:`metasignal.stream.transport.kafka` (Apache Kafka via kafka-python) and
:mod:`metasignal.stream.transport.memory` (the embedded in-process bus).

Offsets follow Kafka: a committed offset is the *next* offset to read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from metasignal.stream.errors import MetasignalError


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed message (a named tuple: the consumer builds one per message, and a
    frozen dataclass cost four times as much to create)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: name, partitions and topic-level configs."""

    name: str
    partitions: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


RebalanceCallback = Callable[[set[TopicPartition]], None]


@dataclass(frozen=True)
class RebalanceListener:
    """Called inside ``poll`` when partitions are taken away or handed over."""

    on_revoked: RebalanceCallback
    on_assigned: RebalanceCallback
    on_lost: RebalanceCallback | None = None


# What kind of failure a TransportError is, so that callers recover without knowing the client:
UNREACHABLE = "unreachable"  # the broker did not answer in time: wait for it, then retry
FENCED = "fenced"  # the producer cannot go on (fenced, timed-out transaction): re-create it
OTHER = "other"  # anything else (a refused setting, an unknown topic, a failed send)


class TransportError(MetasignalError):
    """A broker-side failure the service cannot paper over (send, commit, transaction).

    A :class:`MetasignalError`: when it ends a command, the user reads one line, not a
    traceback. ``kind`` says how to recover: :data:`UNREACHABLE`, :data:`FENCED` or
    :data:`OTHER`.

    Examples
    --------
    >>> TransportError("commit timed out", kind=UNREACHABLE).kind
    'unreachable'
    """

    def __init__(self, message: str, *, kind: str = OTHER) -> None:
        super().__init__(message)
        self.kind = kind


def broker_reachable(client: object) -> bool:
    """Whether ``client`` (a consumer or producer) has a live broker connection.

    A transport may offer ``reachable() -> bool``; one that does not (the in-process bus)
    is always reachable.
    """
    probe = getattr(client, "reachable", None)
    return True if probe is None else bool(probe())


class Consumer(Protocol):
    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def position(self, partition: TopicPartition) -> int: ...

    def committed(self, partition: TopicPartition) -> int | None: ...

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...


class Producer(Protocol):
    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None: ...

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every send is acknowledged; raise TransportError if one failed."""
        ...

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        """Commit the produced records and ``consumer``'s offsets atomically."""
        ...

    def abort_transaction(self) -> None: ...

    def close(self) -> None: ...


class Transport(Protocol):
    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create missing topics; return the names created (idempotent)."""
        ...

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        """Delete these topics and their records; return the names deleted (absent: skipped)."""
        ...

    def partition_count(self, topic: str) -> int | None: ...

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> Consumer:
        """A group member subscribed to ``topics``, or (``assign_all``) a group-less reader
        of every partition of those topics."""
        ...

    def producer(self, *, transactional_id: str | None = None) -> Producer: ...

    def close(self) -> None: ...
