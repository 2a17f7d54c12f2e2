"""Settling the scorer's batches: counted when their span commits, forgotten when it rolls back.

A batch's signals are sent at once, but its records are only consumed when the
open span commits (:class:`~metasignal.stream.checkpoint.Checkpoint`). A
:class:`Settlement` keeps what each batch of the open span did (:class:`Settled`)
and counts it when the span is durable — the signal and dead-letter counters,
the vote-to-signal latency histogram, the rolling trade rate and the running
:class:`~metasignal.stream.stats.ScorerStats` — so a batch read again after a
rollback is never counted twice. It also says what a failed commit means for the
broker connection (:class:`~metasignal.stream.outage.Outage`): a producer to
re-create, or a broker away.

Examples
--------
>>> import numpy as np
>>> from metasignal.stream.checkpoint import Checkpoint, CommitPolicy
>>> from metasignal.stream.metrics import ScorerMetrics
>>> from metasignal.stream.transport.base import TopicPartition, TopicSpec
>>> from metasignal.stream.transport.memory import MemoryBus
>>> bus = MemoryBus(); _ = bus.create_topics([TopicSpec("votes")])
>>> consumer = bus.consumer(topics=["votes"], group_id="doc")
>>> checkpoint = Checkpoint(producer=bus.producer(), consumer=consumer, exactly_once=False,
...                         policy=CommitPolicy(interval_s=3600, max_records=4))
>>> settlement = Settlement(checkpoint=checkpoint, outage=Outage(), metrics=ScorerMetrics(),
...     stats=ScorerStats(), rate_window=100, on_commit=lambda: None, on_rollback=lambda: None)
>>> def batch(first):  # two votes, one trade, sent 5 ms ago
...     records = [Record("votes", 0, first + i, None, b"", 0) for i in range(2)]
...     now_ms = time.time() * 1000
...     return records, Settled(n_votes=2, decisions=np.array([1, 0]), dead=[],
...                             vote_timestamps_ms=np.array([now_ms - 5] * 2), n_stale=0)
>>> settlement.settle(*batch(0))  # the span is not due: nothing counted yet
>>> settlement.pending, settlement.stats.votes
(2, 0)
>>> settlement.settle(*batch(2))  # four records: committed, both batches counted
>>> settlement.pending, settlement.stats.votes, settlement.stats.trades
(0, 4, 2)
>>> consumer.committed(TopicPartition("votes", 0))
4
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from metasignal.stream.checkpoint import FLUSH_TIMEOUT_S, Checkpoint
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.outage import BROKER_UNREACHABLE, PRODUCER_RECREATING, Outage
from metasignal.stream.stats import RollingRate, ScorerStats
from metasignal.stream.step import Dead
from metasignal.stream.transport.base import OTHER, Producer, Record, TransportError

__all__ = ["Settled", "Settlement"]


@dataclass(frozen=True)
class Settled:
    """A batch whose signals are sent but not yet committed: counted at commit."""

    n_votes: int
    decisions: np.ndarray
    dead: Dead
    vote_timestamps_ms: np.ndarray
    n_stale: int


class Settlement:
    """Commit, roll back or drop the open span, and count it once durable (module docstring).

    Parameters
    ----------
    checkpoint
        The span's offsets and (exactly-once) transaction.
    outage
        Marked down when a commit fails for want of the broker or of the producer,
        up when one succeeds.
    metrics, stats
        Where a committed span is counted.
    rate_window
        Decisions the rolling trade rate (``metasignal_predicted_positive_rate``) spans.
    on_commit, on_rollback
        Called when the span commits, and when it is rolled back or dropped (the shadow's
        counts follow the span).
    evidence_held, send_evidence, final_evidence
        Whether the shadow holds counts back (:mod:`~metasignal.stream.shadow`: they go
        out every so many outcomes or seconds), sending them, and saying that every count
        must go out now (a revoke, a close). Held counts are committed even with no open
        span: alone in a transaction of their own (exactly-once), or flushed (at-least-once).
    """

    def __init__(
        self,
        *,
        checkpoint: Checkpoint,
        outage: Outage,
        metrics: ScorerMetrics,
        stats: ScorerStats,
        rate_window: int,
        on_commit: Callable[[], None],
        on_rollback: Callable[[], None],
        evidence_held: Callable[[], bool] = lambda: False,
        send_evidence: Callable[[Producer], None] = lambda producer: None,
        final_evidence: Callable[[bool], None] = lambda final: None,
    ) -> None:
        self.checkpoint = checkpoint
        self.outage = outage
        self.metrics = metrics
        self.stats = stats
        self.on_commit = on_commit
        self.on_rollback = on_rollback
        self.evidence_held = evidence_held
        self.send_evidence = send_evidence
        self.final_evidence = final_evidence
        self._rate = RollingRate(rate_window)
        self._settled: list[Settled] = []

    @property
    def pending(self) -> int:
        """Records of the open span (re-delivered if the process dies now)."""
        return self.checkpoint.pending

    @property
    def due(self) -> bool:
        """Something to commit: the open span, or counts the shadow holds back."""
        return bool(self.checkpoint.pending) or self.evidence_held()

    @property
    def producer_lost(self) -> bool:
        """The exactly-once producer was discarded; the next batch re-creates it."""
        return self.checkpoint.producer_lost

    def settle(self, records: Sequence[Record], settled: Settled) -> None:
        """``records``' outputs are sent: add the batch to the span, commit it if due.

        Raises :class:`TransportError` when the commit fails (then call :meth:`rolled_back`).
        """
        self._settled.append(settled)
        if self.checkpoint.settle(records):
            self._committed()

    def commit(self) -> None:
        """Commit the open span now (raises :class:`TransportError` if that fails); with
        no open span, the shadow's held-back counts go out alone."""
        checkpoint = self.checkpoint
        if not checkpoint.pending and self.evidence_held():
            if checkpoint.in_transaction:
                # A batch sent outputs and raised before it was settled (the close after a
                # crash): committing would publish them without their offsets.
                self.drop("a batch raised before it was settled")
                return
            if checkpoint.exactly_once:
                checkpoint.begin()  # a transaction of their own (sent before it commits)
            else:
                self.send_evidence(checkpoint.producer)
                checkpoint.producer.flush(FLUSH_TIMEOUT_S)
        checkpoint.commit()
        self._committed()

    def commit_all(self) -> None:
        """Commit the open span and every count held back: the partitions are leaving
        (a revoke) or the scorer is (a close). Raises :class:`TransportError` if it fails."""
        self.final_evidence(True)
        try:
            if self.due:
                self.commit()
        finally:
            self.final_evidence(False)

    def commit_or_rollback(self) -> bool:
        """Commit the open span now; False when it failed and was rolled back."""
        try:
            self.commit()
        except TransportError as exc:
            self.rolled_back((), exc)
            return False
        return True

    def rolled_back(self, records: Sequence[Record], exc: TransportError) -> None:
        """The span (with ``records``, not settled yet) failed: it is read again."""
        self._settled.clear()  # read again, counted when committed
        self.on_rollback()
        self.checkpoint.rollback(records, exc)
        if self.checkpoint.producer_lost:
            self.outage.down(PRODUCER_RECREATING, str(exc))
        elif exc.kind != OTHER:
            self.outage.down(BROKER_UNREACHABLE, str(exc))
        self.metrics.ready.set(1 if self.outage.ok else 0)

    def drop(self, reason: str) -> None:
        """Forget the open span without rewinding: its partitions are someone else's."""
        self._settled.clear()
        self.on_rollback()
        self.checkpoint.abandon(reason)

    def _committed(self) -> None:
        """The span is durable (exactly-once: visible): count it, observe its latency."""
        self.outage.up()
        self.on_commit()
        committed_ms = time.time() * 1000
        for settled in self._settled:
            latencies = committed_ms - settled.vote_timestamps_ms
            self.metrics.latency.observe_many(latencies / 1000)
            if settled.n_stale:
                self.metrics.stale.inc(settled.n_stale)
                self.stats.stale += settled.n_stale
            self._account(settled, latencies)
        self._settled.clear()

    def _account(self, settled: Settled, latencies: np.ndarray) -> None:
        decisions, dead = settled.decisions, settled.dead
        trades = int(decisions.sum())
        metrics = self.metrics
        metrics.votes.inc(settled.n_votes)
        metrics.signals.labels(decision="1").inc(trades)
        metrics.signals.labels(decision="0").inc(len(decisions) - trades)
        for _, error in dead:
            metrics.dlq.labels(reason=error.reason).inc()
        metrics.predicted_rate.set(self._rate.update(len(decisions), trades))
        stats = self.stats
        stats.votes += settled.n_votes
        stats.signals += len(decisions)
        stats.trades += trades
        stats.dlq += len(dead)
        stats.batches += 1
        stats.latencies_ms.extend(latencies)
