"""Checkpointing: marking a batch consumed, for both delivery guarantees.

A :class:`Checkpoint` ties one producer to the consumer whose records it answers
and owns the three moves of every batch:

* ``begin`` — exactly-once opens a Kafka transaction (at-least-once: nothing);
* ``commit`` — at-least-once waits until every send is acknowledged, then
  commits the consumer's offsets (a crash in between replays the batch: an
  output may repeat, none is lost); exactly-once commits the sends and the
  offsets in one transaction (a crash aborts it, so ``read_committed`` readers
  see each output once);
* ``rollback`` — aborts the transaction (exactly-once) and rewinds the consumer
  to the batch's first offsets, so the batch is processed again, never skipped.

A producer the client has put in a fatal state fails every batch after; rather
than spin while looking alive, ``rollback`` gives up after ``max_failures``
failures in a row (raising :class:`TransportError`) so the process exits and a
restart recovers from the committed offsets.

The scorer (votes -> signals) and the trainer (control requests -> models) both
checkpoint through this class.

Examples
--------
>>> from metasignal.stream.transport.base import Record
>>> records = [Record("votes", 0, 7, None, b"", 0), Record("votes", 0, 8, None, b"", 0)]
>>> next_offsets(records), first_offsets(records)
({TopicPartition(topic='votes', partition=0): 9}, {TopicPartition(topic='votes', partition=0): 7})
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from metasignal.stream.transport.base import (
    Consumer,
    Producer,
    Record,
    TopicPartition,
    TransportError,
)

log = logging.getLogger("metasignal.checkpoint")


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Kafka commits name the next offset to read, per partition."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= last.get(key, -1):
            last[key] = r.offset
    return {TopicPartition(topic, partition): o + 1 for (topic, partition), o in last.items()}


def first_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Where to rewind to so that every record of the batch is read again."""
    first: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset < first.get(key, r.offset + 1):
            first[key] = r.offset
    return {TopicPartition(topic, partition): o for (topic, partition), o in first.items()}


class Checkpoint:
    """Begin, commit or roll back one batch of ``consumer``'s records (module docstring).

    Parameters
    ----------
    producer
        Sends the batch's outputs; transactional when ``exactly_once``.
    consumer
        The source whose offsets are committed (or rewound).
    exactly_once
        Kafka transactions instead of flush-then-commit.
    max_failures
        Failed batches in a row after which ``rollback`` raises; ``None``: never.
    on_abort
        Called each time a transaction is aborted (a metric).
    """

    def __init__(
        self,
        *,
        producer: Producer,
        consumer: Consumer,
        exactly_once: bool,
        max_failures: int | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.exactly_once = exactly_once
        self.max_failures = max_failures
        self.on_abort = on_abort
        self.failures = 0

    def begin(self) -> None:
        if self.exactly_once:
            self.producer.begin_transaction()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Make the batch's outputs durable and mark its records consumed."""
        if self.exactly_once:
            self.producer.commit_transaction(offsets, self.consumer)
        else:
            self.producer.flush()
            self.consumer.commit(offsets)
        self.failures = 0

    def rollback(self, records: Sequence[Record], error: TransportError) -> None:
        """Rewind to the batch start so it is processed again; never skip a record."""
        self.failures += 1
        if self.max_failures is not None and self.failures >= self.max_failures:
            raise TransportError(
                f"{self.failures} batches in a row could not be committed, last: {error}"
            )
        log.warning("batch not committed, will be retried: %s", error)
        if self.exactly_once:
            if self.on_abort is not None:
                self.on_abort()
            try:
                self.producer.abort_transaction()
            except TransportError as abort_error:
                # A fenced or broken producer cannot continue; a restart recovers cleanly.
                raise TransportError(f"cannot abort transaction: {abort_error}") from abort_error
        for tp, offset in first_offsets(records).items():
            self.consumer.seek(tp, offset)
