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

Broker outages are ridden out, however long. A failure of kind ``unreachable``
is retried without limit (the caller backs off). An exactly-once producer whose
transaction was fenced, timed out or could not be aborted is of no further use:
with a ``producer_factory`` the checkpoint discards it, and ``ensure_producer``
(called before each batch) re-creates it once the broker answers — the new
producer's ``init_transactions`` completes or aborts the old transaction on the
broker — and rewinds the consumer to its *committed* offsets, so a batch whose
commit did reach the broker is not written twice. Other failures (``other``)
give up after ``max_failures`` in a row (raising :class:`TransportError`).

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
    FENCED,
    OTHER,
    Consumer,
    Producer,
    Record,
    TopicPartition,
    TransportError,
)

log = logging.getLogger("metasignal.checkpoint")

# A batch's sends are acknowledged in milliseconds; waiting longer only delays noticing an
# outage (the batch is then rolled back and retried).
FLUSH_TIMEOUT_S = 10.0


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
        Failed batches in a row (other than outages) after which ``rollback`` raises;
        ``None``: never.
    on_abort
        Called each time a transaction is aborted (a metric).
    producer_factory
        Makes a new producer like ``producer`` (exactly-once recovery); without it, a producer
        that cannot abort ends the process as before.
    on_recreate
        Called each time the producer is re-created (a metric).
    """

    def __init__(
        self,
        *,
        producer: Producer,
        consumer: Consumer,
        exactly_once: bool,
        max_failures: int | None = None,
        on_abort: Callable[[], None] | None = None,
        producer_factory: Callable[[], Producer] | None = None,
        on_recreate: Callable[[], None] | None = None,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.exactly_once = exactly_once
        self.max_failures = max_failures
        self.on_abort = on_abort
        self.producer_factory = producer_factory
        self.on_recreate = on_recreate
        self.failures = 0
        # Set while the producer is discarded: where to rewind if no offset was committed.
        self._rewind_to: dict[TopicPartition, int] | None = None

    @property
    def producer_lost(self) -> bool:
        """The producer was discarded and ``ensure_producer`` has not re-created it yet."""
        return self._rewind_to is not None

    def ensure_producer(self) -> None:
        """Re-create a discarded producer and rewind to the committed offsets (see module).

        Raises :class:`TransportError` while the broker cannot be reached; call again later.
        """
        if self._rewind_to is None:
            return
        assert self.producer_factory is not None
        producer = self.producer_factory()
        for tp, first in self._rewind_to.items():
            # The committed offset, not the batch start: the failed commit may have landed.
            committed = self.consumer.committed(tp)
            self.consumer.seek(tp, first if committed is None else committed)
        self.producer = producer
        self._rewind_to = None
        if self.on_recreate is not None:
            self.on_recreate()
        log.warning("producer re-created; resuming from the committed offsets")

    def begin(self) -> None:
        if self.exactly_once:
            self.producer.begin_transaction()

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Make the batch's outputs durable and mark its records consumed."""
        if self.exactly_once:
            self.producer.commit_transaction(offsets, self.consumer)
        else:
            self.producer.flush(FLUSH_TIMEOUT_S)
            self.consumer.commit(offsets)
        self.failures = 0

    def rollback(self, records: Sequence[Record], error: TransportError) -> None:
        """Rewind to the batch start so it is processed again; never skip a record."""
        if error.kind == OTHER:
            self.failures += 1
            if self.max_failures is not None and self.failures >= self.max_failures:
                raise TransportError(
                    f"{self.failures} batches in a row could not be committed, last: {error}"
                )
        log.warning("batch not committed, will be retried: %s", error)
        rewind = first_offsets(records)
        if self.exactly_once:
            if self.on_abort is not None:
                self.on_abort()
            if error.kind == FENCED or not self._abort():
                self._discard_producer(rewind)
                return
        for tp, offset in rewind.items():
            self.consumer.seek(tp, offset)

    def _abort(self) -> bool:
        try:
            self.producer.abort_transaction()
        except TransportError as abort_error:
            if self.producer_factory is None:
                # No way to make a new producer: a restart recovers cleanly.
                raise TransportError(f"cannot abort transaction: {abort_error}") from abort_error
            log.warning("cannot abort the transaction: %s", abort_error)
            return False
        return True

    def _discard_producer(self, rewind: dict[TopicPartition, int]) -> None:
        if self.producer_factory is None:
            raise TransportError("the producer was fenced and cannot be re-created")
        try:
            self.producer.close()
        except Exception as exc:  # a broken client's close may fail too; it is dropped anyway
            log.debug("closing the discarded producer: %r", exc)
        self._rewind_to = rewind
