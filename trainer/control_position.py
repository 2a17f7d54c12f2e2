"""The trainer's place on ``control``, moved only together with what it publishes.

The trainer reads the one-partition ``control`` topic in a consumer group, so exactly
one replica is active and a standby takes over when it dies. Each answer (a model, a
signed decision, or nothing) and the control offset it moves to commit in one Kafka
transaction (:class:`metasignal.stream.checkpoint.Checkpoint`): a trainer killed
mid-request leaves nothing behind, and whoever takes over serves the request once.
The transactional id is shared by active and standby, so a takeover fences the old one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metasignal.stream.checkpoint import Checkpoint, next_offsets
from metasignal.stream.transport.base import (
    Consumer,
    Producer,
    Record,
    Transport,
    TransportError,
    broker_reachable,
)

__all__ = ["ControlPosition", "Message"]

Message = tuple[bytes, bytes]
"""One ``models`` record to publish: ``(key, value)``."""


class ControlPosition:
    """Polls ``control`` one request at a time; publishes to ``models`` with the offset."""

    def __init__(
        self,
        *,
        transport: Transport,
        control_topic: str,
        models_topic: str,
        group_id: str,
        transactional_id: str,
        on_recreate: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.control_topic = control_topic
        self.models_topic = models_topic
        self.group_id = group_id
        self.transactional_id = transactional_id
        self.on_recreate = on_recreate
        self.consumer: Consumer | None = None
        self.checkpoint: Checkpoint | None = None
        self._producer = self._new_producer()

    def _new_producer(self) -> Producer:
        return self.transport.producer(transactional_id=self.transactional_id)

    def _joined(self) -> Checkpoint:
        """The group joined (on first use) and a producer ready (re-created if it was lost)."""
        if self.checkpoint is None:
            self.consumer = self.transport.consumer(
                topics=[self.control_topic], group_id=self.group_id, read_committed=True
            )
            self.checkpoint = Checkpoint(
                producer=self._producer,
                consumer=self.consumer,
                exactly_once=True,
                producer_factory=self._new_producer,
                on_recreate=self.on_recreate,
            )
        self.checkpoint.ensure_producer()
        return self.checkpoint

    def poll(self, *, timeout_ms: int) -> list[Record]:
        """The next request, if any (joins the group on first use)."""
        return self._joined().consumer.poll(timeout_ms=timeout_ms, max_records=1)

    @property
    def active(self) -> bool:
        """This replica owns ``control`` (a standby waits, owning nothing)."""
        return self.consumer is not None and bool(self.consumer.assignment())

    @property
    def producer_lost(self) -> bool:
        """The producer was discarded (fenced, timed out) and is not re-created yet."""
        return self.checkpoint is not None and self.checkpoint.producer_lost

    def reachable(self) -> bool:
        """A broker connection is up (asked live), or the group is not joined yet."""
        return self.consumer is None or broker_reachable(self.consumer)

    def read_again(self, record: Record) -> None:
        """Rewind to ``record``: it is answered later (the broker is away)."""
        assert self.consumer is not None
        self.consumer.seek(record.topic_partition, record.offset)

    def publish(
        self,
        messages: Sequence[Message],
        *,
        answered: Record | None,
        tombstones: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """One transaction: ``messages`` on ``models``, ``tombstones`` (topic, key) and the
        control offset, past the ``answered`` request or (``None``: a judgement of the
        evidence) where it stands.

        Raises :class:`TransportError` after rolling back (the request is read again).
        """
        checkpoint, consumer = self.checkpoint, self.consumer
        assert checkpoint is not None and consumer is not None
        read = [] if answered is None else [answered]
        try:
            checkpoint.begin()
            for key, value in messages:
                checkpoint.producer.send(self.models_topic, key=key, value=value)
            for topic, key in tombstones:
                checkpoint.producer.send(topic, key=key, value=None)
            if answered is None:
                checkpoint.commit({tp: consumer.position(tp) for tp in consumer.assignment()})
            else:
                checkpoint.commit(next_offsets(read))
        except TransportError as exc:
            checkpoint.rollback(read, exc)
            raise

    def close(self) -> None:
        """Close the producer (unless it was discarded) and the control consumer."""
        if self.checkpoint is None:
            self._producer.close()
        elif not self.checkpoint.producer_lost:
            self.checkpoint.producer.close()
        if self.consumer is not None:
            self.consumer.close()
