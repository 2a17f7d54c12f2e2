"""The scorer loop: votes in, trade/no-trade signals out, nothing lost.

Each iteration (1) applies any new artifact from the ``models`` topic, (2) polls
a batch of votes and outcomes, (3) scores the votes (:mod:`~metasignal.stream.step`),
(4) hands the batch and its outcomes to the feedback loop
(:mod:`~metasignal.stream.feedback`: join cache, drift monitor and policy), (5)
sends one signal per valid vote, the feedback loop's training rows and
requests, and one dead letter per bad record, and (6) settles the batch
(:mod:`~metasignal.stream.checkpoint`).

Commits are lean at low rates: batches join a span that is committed (flush then
commit at-least-once; one Kafka transaction exactly-once) every
``commit_interval_s`` or ``commit_max_records``, whichever comes first, when a
poll finds nothing new (caught up), before partitions are revoked, and at close.
A failed commit rolls the whole span back; it is read again. What a crash costs:

* at-least-once: signals are sent at once; a crash re-delivers the span — at most
  one commit interval's (or ``commit_max_records - 1``) records plus one batch —
  so a signal may repeat, none is lost;
* exactly-once: the span's transaction is aborted; ``read_committed`` readers see
  a signal when its span commits: vote-to-visible latency is at most the commit
  interval plus the poll linger, one batch and the commit itself.

Counters and the vote-to-signal latency histogram are updated when a span
commits (a rolled-back batch is not counted twice).

Broker outages are ridden out (:mod:`~metasignal.stream.outage`): a batch that
cannot be committed is rolled back and retried with a bounded backoff; an
exactly-once producer whose transaction was fenced or timed out is re-created
by the checkpoint, which rewinds to the committed offsets. Meanwhile ``ready``
is false, ``metasignal_broker_reachable`` is 0 and a log line says why.

Rebalances only happen inside ``poll``, and a batch is always finished before
the next ``poll``; the open span is committed before its partitions are revoked
(if that commit fails it is dropped: the next owner reads from the committed
offsets), so a revoked partition never has work in flight.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from metasignal.stream.checkpoint import Checkpoint
from metasignal.stream.errors import MetasignalError
from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.feedback import FeedbackLoop
from metasignal.stream.join import JoinCache
from metasignal.stream.lag import PartitionLag
from metasignal.stream.messages import MessageError, dead_letter
from metasignal.stream.metrics import Heartbeat, ScorerMetrics
from metasignal.stream.model_store import LiveMembers, ModelStore
from metasignal.stream.options import ScorerOptions
from metasignal.stream.outage import BROKER_UNREACHABLE, PRODUCER_RECREATING, Outage
from metasignal.stream.stats import RollingRate, ScorerStats
from metasignal.stream.status import StatusClock, scorer_status
from metasignal.stream.step import Dead, ScoringStep
from metasignal.stream.transport.base import (
    OTHER,
    Consumer,
    Producer,
    RebalanceListener,
    Record,
    TopicPartition,
    Transport,
    TransportError,
    broker_reachable,
)

__all__ = ["Scorer", "ScorerOptions", "ScorerStats"]

log = logging.getLogger("metasignal.scorer")


@dataclass(frozen=True)
class _Settled:
    """A batch whose signals are sent but not yet committed: counted at commit."""

    n_votes: int
    decisions: np.ndarray
    dead: Dead
    vote_timestamps_ms: np.ndarray
    n_stale: int


class Scorer:
    """One scorer replica. Several in one consumer group split the partitions."""

    def __init__(
        self,
        *,
        transport: Transport,
        options: ScorerOptions,
        keys: Sequence[bytes],
        metrics: ScorerMetrics | None = None,
    ) -> None:
        self.transport = transport
        self.options = options
        self.metrics = metrics or ScorerMetrics()
        self.stats = ScorerStats()
        self.heartbeat = Heartbeat()
        self.models = ModelStore(
            keys=keys,
            model_name=options.model_name,
            allow_unsigned=options.allow_unsigned,
            on_refused=lambda reason, _: self.metrics.refused.labels(reason=reason).inc(),
        )
        self.live_members = LiveMembers()
        self._models_consumer = transport.consumer(
            assign_all=[options.topics.models], from_beginning=True
        )
        self._producer = self._new_producer()
        self.outage = Outage(max_outage_s=options.max_outage_s, on_change=self.metrics.outage.set)
        self.metrics.outage.probe(self._broker_ok)
        self._votes: Consumer | None = None
        self._rate = RollingRate(options.rate_window)
        self._lag = PartitionLag(gauge=self.metrics.lag, interval_s=options.lag_interval_s)
        self._status = StatusClock(options.status_interval_s, now=time.monotonic())
        self._status_votes = 0
        self._checkpoint: Checkpoint | None = None
        self._settled: list[_Settled] = []
        self._next_poll = 0.0
        self.scoring = ScoringStep(
            max_message_bytes=options.max_message_bytes,
            missing_members=options.missing_members,
            strict_members=options.strict_members,
            max_vote_age_ms=round(options.max_vote_age_s * 1000),
        )
        self.feedback = FeedbackLoop(options=options, metrics=self.metrics, stats=self.stats)
        self._evidence: EvidenceLog | None = None
        if options.track_outcomes:  # the shadow's counts: read back on each assignment
            self._evidence = EvidenceLog(
                transport.consumer(
                    assign_all=[options.topics.evidence], read_committed=True, from_beginning=True
                ),
                keys=list(keys) or None,  # --unsigned without a key: nothing to check
                on_refused=self._refused_evidence,
            )
            self.feedback.shadow.log = self._evidence
            self.feedback.shadow.signing_key = keys[0] if keys else None
        self._next_model_check = 0.0
        self._closed = False

    # -- readiness ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return (
            self.models.current is not None
            and self._votes is not None
            # Asked live: the loop may be blocked waiting for the broker (a flush, a commit).
            and self._broker_ok()
            and not self._closed
        )

    def _broker_ok(self) -> bool:
        """No outage noticed by the loop, and (asked live) a broker connection is up."""
        votes = self._votes
        return self.outage.ok and (votes is None or broker_reachable(votes))

    def _new_producer(self) -> Producer:
        options = self.options
        return self.transport.producer(
            transactional_id=options.transactional_id if options.exactly_once else None
        )

    @property
    def join(self) -> JoinCache:
        """Scored votes waiting for their outcomes (owned by the feedback loop)."""
        return self.feedback.join

    def assignment(self) -> set[TopicPartition]:
        """Vote partitions this replica currently owns."""
        return set() if self._votes is None else self._votes.assignment()

    # -- models ------------------------------------------------------------------
    def refresh_models(self, *, timeout_ms: int = 0) -> None:
        """Apply every pending artifact; the newest valid version wins."""
        while True:
            records = self._models_consumer.poll(timeout_ms=timeout_ms, max_records=100)
            if not records:
                return
            for record in records:
                offered = self.models.offer(record.value, live_members=self.live_members.members())
                if offered == "swapped":
                    self._on_swap()
                if offered in ("swapped", "shadow"):
                    models = self.models
                    self.feedback.shadow.sync(models.current, models.shadow, models.shadow_role)
            timeout_ms = 0

    def load_models(self, *, timeout_s: float = 30.0) -> None:
        """Read the ``models`` topic to its end before serving (start-up)."""
        partitions = sorted(self._models_consumer.assignment())
        ends = self._models_consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.refresh_models(timeout_ms=100)
            if all(self._models_consumer.position(tp) >= end for tp, end in ends.items()):
                return

    def _on_swap(self) -> None:
        model = self.models.current
        assert model is not None
        artifact = self.models.artifact
        strategy = artifact["strategy"]["name"] if artifact is not None else ""
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(
            name=model.name, version=str(model.version), strategy=strategy
        ).set(1)
        self.metrics.model_version.set(model.version)
        self.metrics.threshold.set(model.threshold)
        self.metrics.model_created.set(self.models.created_at or 0.0)
        self.metrics.swaps.inc()
        self.stats.model_versions.append(model.version)
        self.feedback.on_model(model)

    # -- consuming ---------------------------------------------------------------
    def _subscribe(self) -> Consumer:
        listener = RebalanceListener(
            on_revoked=self._on_revoked, on_assigned=self._on_assigned, on_lost=self._on_lost
        )
        topics = [self.options.topics.votes]
        if self.options.track_outcomes:
            topics.append(self.options.topics.outcomes)
            self.check_co_partitioning()
        consumer = self.transport.consumer(
            topics=topics,
            group_id=self.options.group_id,
            listener=listener,
            read_committed=True,
            from_beginning=self.options.start_from == "earliest",
        )
        self._checkpoint = Checkpoint(
            producer=self._producer,
            consumer=consumer,
            exactly_once=self.options.exactly_once,
            max_failures=self.options.max_failed_batches,
            on_abort=self.metrics.transaction_aborts.inc,
            producer_factory=self._new_producer,
            on_recreate=self.metrics.outage.recreations.inc,
            policy=self.options.commit_policy,
            before_commit=self._send_evidence,
        )
        return consumer

    def _send_evidence(self, producer: Producer) -> None:
        """The shadow's changed counts, the span's last outputs (stream/shadow.py)."""
        for message in self.feedback.evidence():
            producer.send(message.topic, key=message.key, value=message.value)
            self.metrics.shadow_evidence.inc()

    def _refused_evidence(self, record: Record, error: MessageError) -> None:
        self.metrics.shadow_evidence_refused.labels(reason=error.reason).inc()
        log.warning(
            "evidence record %s[%d]@%d refused (%s): %.200s",
            record.topic,
            record.partition,
            record.offset,
            error.reason,
            error.detail,
        )

    def _outcome_partitions(self, partitions: set[TopicPartition]) -> list[int]:
        return [tp.partition for tp in partitions if tp.topic == self.options.topics.outcomes]

    def check_co_partitioning(self) -> None:
        """Votes and outcomes must share partitioning so each scorer joins its own keys."""
        votes = self.transport.partition_count(self.options.topics.votes)
        outcomes = self.transport.partition_count(self.options.topics.outcomes)
        if votes is not None and outcomes is not None and votes != outcomes:
            raise MetasignalError(
                f"topics {self.options.topics.votes} ({votes} partitions) and "
                f"{self.options.topics.outcomes} ({outcomes}) are not co-partitioned: "
                "give them the same partition count"
            )

    def _on_revoked(self, partitions: set[TopicPartition]) -> None:
        # Each batch is settled before the next poll; the open span is committed here, so
        # the next owner of these partitions starts after it, from the shadow's counts.
        self.feedback.shadow.final = True
        try:
            if self._checkpoint is not None and (
                self._checkpoint.pending or self.feedback.shadow.held()
            ):
                self._commit()
        except TransportError as exc:
            self._drop_span(f"commit before a rebalance failed: {exc}")
        finally:
            self.feedback.shadow.final = False
        self.metrics.rebalances.labels(kind="revoked").inc()
        self.feedback.shadow.revoked(self._outcome_partitions(partitions))
        self._lag.forget(partitions)
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_lost(self, partitions: set[TopicPartition]) -> None:
        # Another replica owns them already: the open span cannot be committed any more.
        self._drop_span("partitions lost")
        self.feedback.shadow.revoked(self._outcome_partitions(partitions))
        self.metrics.rebalances.labels(kind="lost").inc()
        log.warning("partitions lost (session expired): %s", sorted(partitions))

    def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind="assigned").inc()
        self.feedback.shadow.assigned(self._outcome_partitions(partitions))
        log.info("partitions assigned: %s", sorted(partitions))

    def step(self) -> int:
        """One loop iteration; returns the number of vote records handled."""
        self.heartbeat.beat()
        self.metrics.last_batch.set_to_current_time()
        now = time.monotonic()
        if now >= self._next_model_check or self.models.current is None:
            # A poll of the models consumer costs ~0.5 ms: per batch at 1,000 votes/s that
            # was 6 % of a core and a delay on every vote; new models are rare.
            self._next_model_check = now + self.options.model_check_interval_s
            self.refresh_models()
        if self.models.current is None:
            self.metrics.ready.set(0)
            time.sleep(self.options.poll_timeout_ms / 1000)
            return 0
        try:
            return self._serve()
        except TransportError as exc:
            if exc.kind == OTHER:
                raise
            self._wait_out(BROKER_UNREACHABLE, str(exc))
            return 0

    def _serve(self) -> int:
        if self._votes is None:
            self._votes = self._subscribe()
        checkpoint = self._checkpoint
        assert checkpoint is not None
        if checkpoint.producer_lost:
            try:
                checkpoint.ensure_producer()
            except TransportError as exc:
                self._wait_out(PRODUCER_RECREATING, str(exc))
                return 0
        # Polling goes on (it is how the client reconnects); readiness says why it is idle.
        self.outage.probed(broker_reachable(self._votes))
        self.metrics.ready.set(1 if self.outage.ok else 0)
        created = self.models.created_at
        if created:
            self.metrics.model_age.set(time.time() - created)
        timeout_ms = self.options.poll_timeout_ms
        due_in = checkpoint.wait_s()
        if due_in is not None:  # wake up in time to commit the open span
            timeout_ms = min(timeout_ms, math.ceil(due_in * 1000))
        self._linger()
        records = self._votes.poll(timeout_ms=timeout_ms, max_records=self.options.batch_size)
        if 0 < len(records) < self.options.batch_size:
            self._next_poll = time.monotonic() + self.options.poll_linger_ms / 1000
        if records:
            if not self.process(records):
                time.sleep(self.outage.backoff())  # rolled back: retried after a bounded wait
                return 0
        elif (checkpoint.pending or self.feedback.shadow.held()) and not self._commit_or_rollback():
            time.sleep(self.outage.backoff())
            return 0
        if not records and not self._votes.assignment():
            # No partition (more replicas than partitions, or a rebalance): a consumer without
            # an assignment returns from poll at once, so wait here instead of spinning.
            time.sleep(self.options.poll_timeout_ms / 1000)
        if self.outage.ok:
            self._update_lag()  # end_offsets would only time out during an outage
        self._log_status()
        return len(records)

    def _linger(self) -> None:
        """Let votes gather after a partial batch: each batch has a fixed cost (a poll, the
        scoring step's set-up, metrics), and at 1,000 votes/s polling at once after each
        batch gave batches of one or two votes."""
        delay = self._next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _log_status(self) -> None:
        elapsed = self._status.due(now=time.monotonic())
        if elapsed is None:
            return
        stats = self.stats
        model = self.models.current
        rate = (stats.votes - self._status_votes) / elapsed
        self._status_votes = stats.votes
        log.info(
            scorer_status(
                votes_per_s=rate,
                signals=stats.signals,
                trades=stats.trades,
                dlq=stats.dlq,
                lag=self._lag.total,
                model_version=None if model is None else model.version,
                shadow=self.feedback.shadow.describe(),
            )
        )

    def _wait_out(self, reason: str, detail: str) -> None:
        """Not ready for ``reason``; back off (bounded) before the next try."""
        if self._checkpoint is not None and self._checkpoint.producer_lost:
            reason = PRODUCER_RECREATING
        self.outage.down(reason, detail)
        self.metrics.ready.set(0)
        time.sleep(self.outage.backoff())

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; the batch in hand is always finished first."""
        self.load_models()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    # -- the hot path ----------------------------------------------------------------
    def process(self, records: Sequence[Record]) -> bool:
        """Score one batch, join its outcomes, send, and settle it (module docstring).

        Returns False when the batch (with the open span) was rolled back: it is read again.
        """
        model = self.models.current
        checkpoint = self._checkpoint
        assert model is not None and checkpoint is not None
        started = time.perf_counter()
        outcome_topic = self.options.topics.outcomes
        vote_records = [r for r in records if r.topic != outcome_topic]
        outcome_records = [r for r in records if r.topic == outcome_topic]
        batch = self.scoring(vote_records, model, scored_at_ms=int(time.time() * 1000))
        dead: Dead = list(batch.dead)
        self.live_members.observe(batch.sample)
        topics = self.options.topics
        send = checkpoint.producer.send
        try:
            checkpoint.begin()
            for key, value in batch.signals:
                send(topics.signals, key=key, value=value)
            if self.options.track_outcomes:
                training = self.feedback.remember(batch, model)
                joined, dead_outcomes = self.feedback.join_outcomes(outcome_records)
                dead.extend(dead_outcomes)
                for message in (*training, *joined):
                    send(message.topic, key=message.key, value=message.value)
            # Label-free estimates need no outcome: they run with outcome tracking off too.
            for message in self.feedback.observe_scores(batch):
                send(message.topic, key=message.key, value=message.value)
            for record, reason in dead:
                letter = dead_letter(record, reason)
                send(topics.dlq, key=letter.key, value=letter.value, headers=letter.headers)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self._settled.append(
                _Settled(
                    n_votes=len(vote_records),
                    decisions=batch.decisions,
                    dead=dead,
                    vote_timestamps_ms=batch.written_ms(),
                    n_stale=batch.n_stale,
                )
            )
            if checkpoint.settle(records):
                self._committed()
        except TransportError as exc:
            self._rolled_back(records, exc)
            return False
        return True

    def _commit(self) -> None:
        """Commit the open span now (raises :class:`TransportError` if that fails); with
        nothing pending, the shadow's held-back counts go out alone (stream/shadow.py)."""
        checkpoint = self._checkpoint
        assert checkpoint is not None
        if not checkpoint.pending and self.feedback.shadow.held():
            if checkpoint.exactly_once:
                checkpoint.begin()  # a transaction of their own, no offset moves
            else:
                self._send_evidence(checkpoint.producer)
                checkpoint.producer.flush()
        checkpoint.commit()
        self._committed()

    def _commit_or_rollback(self) -> bool:
        try:
            self._commit()
        except TransportError as exc:
            self._rolled_back((), exc)
            return False
        return True

    def _rolled_back(self, records: Sequence[Record], exc: TransportError) -> None:
        checkpoint = self._checkpoint
        assert checkpoint is not None
        self._settled.clear()  # read again, counted when committed
        self.feedback.shadow.rolled_back()
        checkpoint.rollback(records, exc)
        if checkpoint.producer_lost:
            self.outage.down(PRODUCER_RECREATING, str(exc))
        elif exc.kind != OTHER:
            self.outage.down(BROKER_UNREACHABLE, str(exc))
        self.metrics.ready.set(1 if self.outage.ok else 0)

    def _drop_span(self, reason: str) -> None:
        if self._checkpoint is not None:
            self._settled.clear()
            self.feedback.shadow.rolled_back()
            self._checkpoint.abandon(reason)

    def _committed(self) -> None:
        """The span is durable (exactly-once: visible): count it, observe its latency."""
        self.outage.up()
        self.feedback.shadow.committed()
        committed_ms = time.time() * 1000
        for settled in self._settled:
            latencies = committed_ms - settled.vote_timestamps_ms
            self.metrics.latency.observe_many(latencies / 1000)
            if settled.n_stale:
                self.metrics.stale.inc(settled.n_stale)
                self.stats.stale += settled.n_stale
            self._account(settled.n_votes, settled.decisions, settled.dead, latencies)
        self._settled.clear()

    def _account(
        self,
        n_records: int,
        decisions: np.ndarray,
        dead: Dead,
        latencies: np.ndarray,
    ) -> None:
        trades = int(decisions.sum())
        self.metrics.votes.inc(n_records)
        self.metrics.signals.labels(decision="1").inc(trades)
        self.metrics.signals.labels(decision="0").inc(len(decisions) - trades)
        for _, error in dead:
            self.metrics.dlq.labels(reason=error.reason).inc()
        self.metrics.predicted_rate.set(self._rate.update(len(decisions), trades))
        stats = self.stats
        stats.votes += n_records
        stats.signals += len(decisions)
        stats.trades += trades
        stats.dlq += len(dead)
        stats.batches += 1
        stats.latencies_ms.extend(latencies)

    def _update_lag(self) -> None:
        if self._votes is not None:
            self._lag.update(self._votes)

    def close(self) -> None:
        """Commit the open span, flush and leave the group."""
        if self._closed:
            return
        self._closed = True
        self.metrics.ready.set(0)
        checkpoint = self._checkpoint
        self.feedback.shadow.final = True  # every count held back goes out with the last commit
        try:
            if (
                checkpoint is not None
                and (checkpoint.pending or self.feedback.shadow.held())
                and not checkpoint.producer_lost
            ):
                try:
                    self._commit()
                except TransportError as exc:
                    self._drop_span(f"commit at close failed: {exc}")
                    raise
            if checkpoint is None or not checkpoint.producer_lost:
                (self._producer if checkpoint is None else checkpoint.producer).flush()
        except TransportError as exc:  # offsets were not committed: the span is read again
            log.warning("closing without flushing: %s", exc)
        finally:
            # Each client is closed even if another's close fails: one left running keeps
            # fetching and heartbeating for a scorer that is gone.
            with contextlib.ExitStack() as clients:
                clients.callback(self._models_consumer.close)
                if self._evidence is not None:
                    clients.callback(self._evidence.close)
                if self._votes is not None:
                    clients.callback(self._votes.close)
                if checkpoint is None or not checkpoint.producer_lost:
                    producer = self._producer if checkpoint is None else checkpoint.producer
                    clients.callback(producer.close)
