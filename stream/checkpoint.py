"""Checkpointing: marking records consumed, for both delivery guarantees.

A :class:`Checkpoint` ties one producer to the consumer whose records it answers.
Records are checkpointed in *spans*: the batches read since the last commit. The
moves are

* ``begin`` — exactly-once opens a Kafka transaction unless the span has one open
  (at-least-once: nothing);
* ``settle`` — a batch's outputs are sent: its records join the span, which is
  committed when it is due (:class:`CommitPolicy`: an interval or a record count,
  whichever comes first);
* ``commit`` — at-least-once waits until every send is acknowledged, then commits
  the consumer's offsets; exactly-once commits the span's sends and offsets in one
  transaction;
* ``rollback`` — aborts the transaction (exactly-once) and rewinds the consumer to
  the span's first offsets, so every record since the last commit is processed
  again, never skipped.

Bounds. At-least-once, a crash re-delivers the records of the open span: at most
``max_records - 1`` plus one batch, and at most the records of one commit
interval plus one batch; none is lost. Exactly-once, a crash aborts the span's
transaction and nothing of it is visible to ``read_committed`` readers; they see
an output when its span commits, at most one commit interval plus one batch (and
the commit itself) after its record was read. ``CommitPolicy(interval_s=0)``
commits every batch.

Broker outages are ridden out, however long. A failure of kind ``unreachable``
is retried without limit (the caller backs off). An exactly-once producer whose
transaction was fenced, timed out or could not be aborted is of no further use:
with a ``producer_factory`` the checkpoint discards it, and ``ensure_producer``
(called before each batch) re-creates it once the broker answers — the new
producer's ``init_transactions`` completes or aborts the old transaction on the
broker — and rewinds the consumer to its *committed* offsets, so a span whose
commit did reach the broker is not written twice. Other failures (``other``)
give up after ``max_failures`` in a row (raising :class:`TransportError`).

The scorer (votes -> signals) and the trainer (control requests -> models, one
record per span) both checkpoint through this class.

Examples
--------
>>> from metasignal.stream.transport.base import Record
>>> records = [Record("votes", 0, 7, None, b"", 0), Record("votes", 0, 8, None, b"", 0)]
>>> next_offsets(records), first_offsets(records)
({TopicPartition(topic='votes', partition=0): 9}, {TopicPartition(topic='votes', partition=0): 7})
>>> policy = CommitPolicy(interval_s=0.25, max_records=2000)
>>> policy.due(records=10, age_s=0.1), policy.due(records=10, age_s=0.3)
(False, True)
>>> policy.due(records=2000, age_s=0.0), CommitPolicy(interval_s=0).due(records=1, age_s=0)
(True, True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, kw_only=True)
class CommitPolicy:
    """When a span of records read since the last commit is committed.

    Parameters
    ----------
    interval_s
        Commit once the span's first batch is this old; 0 commits every batch.
    max_records
        Commit once the span holds this many records; 0: no count limit.
    """

    interval_s: float = 0.0
    max_records: int = 0

    def __post_init__(self) -> None:
        if self.interval_s < 0 or self.max_records < 0:
            raise ValueError(f"commit interval and count must be >= 0, got {self}")

    def due(self, *, records: int, age_s: float) -> bool:
        """Whether a span of ``records`` whose first batch settled ``age_s`` ago is due."""
        if records <= 0:
            return False
        return age_s >= self.interval_s or 0 < self.max_records <= records

    def wait_s(self, *, records: int, age_s: float) -> float | None:
        """Seconds until the span is due by age (0: now); ``None`` for an empty span."""
        if records <= 0:
            return None
        return 0.0 if self.due(records=records, age_s=age_s) else self.interval_s - age_s


EVERY_BATCH = CommitPolicy()


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


def _merge_first(into: dict[TopicPartition, int], offsets: Mapping[TopicPartition, int]) -> None:
    for tp, offset in offsets.items():
        if offset < into.get(tp, offset + 1):
            into[tp] = offset


class Checkpoint:
    """Begin, settle, commit or roll back spans of ``consumer``'s records (module docstring).

    Parameters
    ----------
    producer
        Sends the outputs; transactional when ``exactly_once``.
    consumer
        The source whose offsets are committed (or rewound).
    exactly_once
        Kafka transactions instead of flush-then-commit.
    max_failures
        Failed commits in a row (other than outages) after which ``rollback`` raises;
        ``None``: never.
    on_abort
        Called each time a transaction is aborted (a metric).
    producer_factory
        Makes a new producer like ``producer`` (exactly-once recovery); without it, a producer
        that cannot abort ends the process as before.
    on_recreate
        Called each time the producer is re-created (a metric).
    policy
        When ``settle`` commits the span; the default commits every batch.
    clock
        Monotonic seconds (tests pass a fake one).
    before_commit
        Called with the producer just before a span commits (exactly-once: inside its
        transaction): the last outputs of the span, e.g. state that must agree with the
        offsets committed.
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
        policy: CommitPolicy = EVERY_BATCH,
        clock: Callable[[], float] = time.monotonic,
        before_commit: Callable[[Producer], None] | None = None,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.exactly_once = exactly_once
        self.max_failures = max_failures
        self.on_abort = on_abort
        self.producer_factory = producer_factory
        self.on_recreate = on_recreate
        self.policy = policy
        self.clock = clock
        self.before_commit = before_commit
        self.failures = 0
        # The open span: where it starts and ends per partition, its size, when it began.
        self._first: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}
        self._records = 0
        self._since = 0.0
        self._in_transaction = False
        # Set while the producer is discarded: where to rewind if no offset was committed.
        self._rewind_to: dict[TopicPartition, int] | None = None

    @property
    def producer_lost(self) -> bool:
        """The producer was discarded and ``ensure_producer`` has not re-created it yet."""
        return self._rewind_to is not None

    @property
    def pending(self) -> int:
        """Records settled since the last commit (re-delivered if the process dies now)."""
        return self._records

    def ensure_producer(self) -> None:
        """Re-create a discarded producer and rewind to the committed offsets (see module).

        Raises :class:`TransportError` while the broker cannot be reached; call again later.
        """
        if self._rewind_to is None:
            return
        assert self.producer_factory is not None
        producer = self.producer_factory()
        for tp, first in self._rewind_to.items():
            # The committed offset, not the span start: the failed commit may have landed.
            committed = self.consumer.committed(tp)
            self.consumer.seek(tp, first if committed is None else committed)
        self.producer = producer
        self._rewind_to = None
        if self.on_recreate is not None:
            self.on_recreate()
        log.warning("producer re-created; resuming from the committed offsets")

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (exactly-once): some batch's outputs are in it."""
        return self._in_transaction

    def begin(self) -> None:
        """Open the span's transaction (exactly-once) unless it is open already."""
        if self.exactly_once and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def settle(self, records: Sequence[Record]) -> bool:
        """``records``' outputs are sent: add them to the span; commit it if due.

        Returns whether the span was committed. Raises :class:`TransportError` when the
        commit fails (then call ``rollback``).
        """
        if not records:
            return False
        if not self._records:
            self._since = self.clock()
        _merge_first(self._first, first_offsets(records))
        self._next.update(
            (tp, offset)
            for tp, offset in next_offsets(records).items()
            if offset > self._next.get(tp, -1)
        )
        self._records += len(records)
        if not self.policy.due(records=self._records, age_s=self.clock() - self._since):
            return False
        self.commit()
        return True

    def wait_s(self) -> float | None:
        """Seconds until the open span is due (0: now); ``None`` when nothing is pending."""
        return self.policy.wait_s(records=self._records, age_s=self.clock() - self._since)

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Make the span's outputs durable and mark its records (and ``offsets``) consumed."""
        if offsets:
            self._next.update(offsets)
        if self.exactly_once:
            # An open transaction with nothing settled (a batch of nothing) commits as well.
            if self._in_transaction:
                if self.before_commit is not None:
                    self.before_commit(self.producer)
                self.producer.commit_transaction(dict(self._next), self.consumer)
                self._in_transaction = False
        elif self._next:
            if self.before_commit is not None:
                self.before_commit(self.producer)
            self.producer.flush(FLUSH_TIMEOUT_S)
            self.consumer.commit(dict(self._next))
        self._clear()
        self.failures = 0

    def _clear(self) -> None:
        self._first.clear()
        self._next.clear()
        self._records = 0

    def rollback(self, records: Sequence[Record], error: TransportError) -> None:
        """Rewind to the span start so it is processed again; never skip a record."""
        if error.kind == OTHER:
            self.failures += 1
            if self.max_failures is not None and self.failures >= self.max_failures:
                raise TransportError(
                    f"{self.failures} batches in a row could not be committed, last: {error}"
                )
        log.warning("batch not committed, will be retried: %s", error)
        rewind = dict(self._first)
        _merge_first(rewind, first_offsets(records))
        self._clear()
        if self.exactly_once and not self._drop_transaction(error, rewind):
            return
        for tp, offset in rewind.items():
            self.consumer.seek(tp, offset)

    def abandon(self, reason: str) -> None:
        """Drop the open span without rewinding: its partitions were taken away (a
        rebalance), and whoever reads them next starts from the committed offsets."""
        if not self._records and not self._in_transaction:
            return
        log.warning("%d record(s) not committed (%s): read again from the committed offsets",
                    self._records, reason)  # fmt: skip
        self._clear()
        if self.exactly_once and self._in_transaction:
            self._drop_transaction(TransportError(reason), {})

    def _drop_transaction(self, error: TransportError, rewind: dict[TopicPartition, int]) -> bool:
        """Abort the span's transaction; False when the producer had to be discarded."""
        self._in_transaction = False
        if self.on_abort is not None:
            self.on_abort()
        if error.kind == FENCED or not self._abort():
            self._discard_producer(rewind)
            return False
        return True

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
