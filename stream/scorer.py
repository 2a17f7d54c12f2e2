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
commits (a rolled-back batch is not counted twice: :mod:`~metasignal.stream.settlement`).

This module is the loop and the scorer's lifecycle; each concern it drives lives
in its own: model hot-swap in :mod:`~metasignal.stream.model_feed`, the scoring
step in :mod:`~metasignal.stream.step`, commit/rollback and counting in
:mod:`~metasignal.stream.settlement` over :mod:`~metasignal.stream.checkpoint`,
rebalances in :mod:`~metasignal.stream.partitions`, the shadow's evidence in
:mod:`~metasignal.stream.evidence_channel`, lag in :mod:`~metasignal.stream.lag`,
the status line in :mod:`~metasignal.stream.status`.

Broker outages are ridden out (:mod:`~metasignal.stream.outage`): a batch that
cannot be committed is rolled back and retried with a bounded backoff; an
exactly-once producer whose transaction was fenced or timed out is re-created
by the checkpoint, which rewinds to the committed offsets. Meanwhile ``ready``
is false, ``metasignal_broker_reachable`` is 0 and a log line says why.

Rebalances only happen inside ``poll``, and a batch is always finished before
the next ``poll`` (:mod:`~metasignal.stream.partitions`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Sequence

from metasignal.stream.checkpoint import Checkpoint
from metasignal.stream.evidence_channel import EvidenceChannel
from metasignal.stream.feedback import FeedbackLoop
from metasignal.stream.join import JoinCache
from metasignal.stream.lag import PartitionLag
from metasignal.stream.messages import dead_letter
from metasignal.stream.metrics import Heartbeat, ScorerMetrics
from metasignal.stream.model_feed import ModelFeed
from metasignal.stream.model_store import ModelStore
from metasignal.stream.options import ScorerOptions
from metasignal.stream.outage import BROKER_UNREACHABLE, PRODUCER_RECREATING, Outage
from metasignal.stream.partitions import Ownership, check_co_partitioning
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.settlement import Settled, Settlement
from metasignal.stream.stats import ScorerStats
from metasignal.stream.status import ScorerStatus
from metasignal.stream.step import Dead, ScoringStep
from metasignal.stream.transport.base import (
    OTHER,
    Consumer,
    Producer,
    Record,
    TopicPartition,
    Transport,
    TransportError,
    broker_reachable,
)

__all__ = ["Scorer", "ScorerOptions", "ScorerStats"]

log = logging.getLogger("metasignal.scorer")


class Scorer:
    """One scorer replica. Several in one consumer group split the partitions.

    Parameters
    ----------
    transport
        Kafka (or the in-memory bus of the demo and the unit tests).
    options
        Topics, batching, commit policy, delivery guarantee, outcome tracking.
    keys
        Keys that verify model artifacts and the shadow's evidence; the first signs evidence.
    metrics
        Where the Prometheus series go (a fresh registry by default).
    """

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
        self.feedback = FeedbackLoop(options=options, metrics=self.metrics, stats=self.stats)
        self.models = ModelStore(
            keys=keys,
            model_name=options.model_name,
            allow_unsigned=options.allow_unsigned,
            on_refused=lambda reason, _: self.metrics.refused.labels(reason=reason).inc(),
        )
        self.model_feed = ModelFeed(
            consumer=transport.consumer(assign_all=[options.topics.models], from_beginning=True),
            store=self.models,
            metrics=self.metrics,
            check_interval_s=options.model_check_interval_s,
            on_swap=self._on_swap,
            on_lineup=self.feedback.shadow.sync,
        )
        self._producer = self._new_producer()
        self.outage = Outage(max_outage_s=options.max_outage_s, on_change=self.metrics.outage.set)
        self.metrics.outage.probe(self._broker_ok)
        self.scoring = ScoringStep(
            max_message_bytes=options.max_message_bytes,
            missing_members=options.missing_members,
            strict_members=options.strict_members,
            max_vote_age_ms=round(options.max_vote_age_s * 1000),
        )
        self._lag = PartitionLag(gauge=self.metrics.lag, interval_s=options.lag_interval_s)
        self._ownership = Ownership(
            outcomes_topic=options.topics.outcomes,
            metrics=self.metrics,
            lag=self._lag,
            on_outcomes_assigned=self.feedback.shadow.assigned,
            on_outcomes_revoked=self.feedback.shadow.revoked,
        )
        self._status = ScorerStatus(options.status_interval_s, now=time.monotonic())
        self._votes: Consumer | None = None
        self._settlement: Settlement | None = None  # with the votes consumer
        self._next_poll = 0.0
        self._evidence = EvidenceChannel(
            feedback=self.feedback,
            metrics=self.metrics,
            # With outcomes tracked, the shadow's counts are read back on each assignment.
            consumer=transport.consumer(
                assign_all=[options.topics.evidence], read_committed=True, from_beginning=True
            )
            if options.track_outcomes
            else None,
            keys=keys,
        )
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

    @property
    def _checkpoint(self) -> Checkpoint | None:
        """The votes' checkpoint, once subscribed."""
        return None if self._settlement is None else self._settlement.checkpoint

    def assignment(self) -> set[TopicPartition]:
        """Vote partitions this replica currently owns."""
        return set() if self._votes is None else self._votes.assignment()

    # -- models ------------------------------------------------------------------
    def refresh_models(self, *, timeout_ms: int = 0) -> None:
        """Apply every pending artifact; the newest valid version wins."""
        self.model_feed.refresh(timeout_ms=timeout_ms)

    def load_models(self, *, timeout_s: float = 30.0) -> None:
        """Read the ``models`` topic to its end before serving (start-up)."""
        self.model_feed.load(timeout_s=timeout_s)

    def _on_swap(self, model: CompiledModel) -> None:
        self.stats.model_versions.append(model.version)
        self.feedback.on_model(model)

    # -- consuming ---------------------------------------------------------------
    def _subscribe(self) -> Consumer:
        options = self.options
        topics = [options.topics.votes]
        if options.track_outcomes:
            topics.append(options.topics.outcomes)
            check_co_partitioning(
                self.transport, votes=options.topics.votes, outcomes=options.topics.outcomes
            )
        consumer = self.transport.consumer(
            topics=topics,
            group_id=options.group_id,
            listener=self._ownership.listener(),
            read_committed=True,
            from_beginning=options.start_from == "earliest",
        )
        checkpoint = Checkpoint(
            producer=self._producer,
            consumer=consumer,
            exactly_once=options.exactly_once,
            max_failures=options.max_failed_batches,
            on_abort=self.metrics.transaction_aborts.inc,
            producer_factory=self._new_producer,
            on_recreate=self.metrics.outage.recreations.inc,
            policy=options.commit_policy,
            before_commit=self._evidence.send,
        )
        self._settlement = self._ownership.settlement = Settlement(
            checkpoint=checkpoint,
            outage=self.outage,
            metrics=self.metrics,
            stats=self.stats,
            rate_window=options.rate_window,
            on_commit=self.feedback.shadow.committed,
            on_rollback=self.feedback.shadow.rolled_back,
            evidence_held=self.feedback.shadow.held,
            send_evidence=self._evidence.send,
            final_evidence=self._final_evidence,
        )
        return consumer

    # -- the loop ----------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; the batch in hand is always finished first."""
        self.load_models()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> int:
        """One loop iteration; returns the number of vote records handled."""
        self.heartbeat.beat()
        self.metrics.last_batch.set_to_current_time()
        if self.model_feed.due(now=time.monotonic()):
            self.model_feed.refresh()
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

    def _final_evidence(self, final: bool) -> None:
        self.feedback.shadow.final = final

    def _serve(self) -> int:
        """Poll a batch, process it (or commit a span that is due), then housekeeping."""
        if self._votes is None:
            self._votes = self._subscribe()
        settlement = self._settlement
        assert settlement is not None
        checkpoint = settlement.checkpoint
        if checkpoint.producer_lost:
            try:
                checkpoint.ensure_producer()
            except TransportError as exc:
                self._wait_out(PRODUCER_RECREATING, str(exc))
                return 0
        # Polling goes on (it is how the client reconnects); readiness says why it is idle.
        self.outage.probed(broker_reachable(self._votes))
        self.metrics.ready.set(1 if self.outage.ok else 0)
        self.model_feed.export_age()
        records = self._poll(self._votes, checkpoint)
        if records:
            if not self.process(records):
                time.sleep(self.outage.backoff())  # rolled back: retried after a bounded wait
                return 0
        elif settlement.due and not settlement.commit_or_rollback():
            time.sleep(self.outage.backoff())
            return 0
        if not records and not self._votes.assignment():
            # No partition (more replicas than partitions, or a rebalance): a consumer without
            # an assignment returns from poll at once, so wait here instead of spinning.
            time.sleep(self.options.poll_timeout_ms / 1000)
        if self.outage.ok:
            self._lag.update(self._votes)  # end_offsets would only time out during an outage
        self._log_status()
        return len(records)

    def _poll(self, votes: Consumer, checkpoint: Checkpoint) -> list[Record]:
        """The next batch, waiting at most until the open span is due to commit."""
        timeout_ms = self.options.poll_timeout_ms
        due_in = checkpoint.wait_s()
        if due_in is not None:  # wake up in time to commit the open span
            timeout_ms = min(timeout_ms, math.ceil(due_in * 1000))
        self._linger()
        records = votes.poll(timeout_ms=timeout_ms, max_records=self.options.batch_size)
        if 0 < len(records) < self.options.batch_size:
            self._next_poll = time.monotonic() + self.options.poll_linger_ms / 1000
        return records

    def _linger(self) -> None:
        """Let votes gather after a partial batch: each batch has a fixed cost (a poll, the
        scoring step's set-up, metrics), and at 1,000 votes/s polling at once after each
        batch gave batches of one or two votes."""
        delay = self._next_poll - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _log_status(self) -> None:
        model = self.models.current
        line = self._status.line(
            now=time.monotonic(),
            stats=self.stats,
            lag=self._lag.total,
            model_version=None if model is None else model.version,
            shadow=self.feedback.shadow.describe,
        )
        if line is not None:
            log.info(line)

    def _wait_out(self, reason: str, detail: str) -> None:
        """Not ready for ``reason``; back off (bounded) before the next try."""
        if self._checkpoint is not None and self._checkpoint.producer_lost:
            reason = PRODUCER_RECREATING
        self.outage.down(reason, detail)
        self.metrics.ready.set(0)
        time.sleep(self.outage.backoff())

    # -- the hot path ----------------------------------------------------------------
    def process(self, records: Sequence[Record]) -> bool:
        """Score one batch, join its outcomes, send, and settle it (module docstring).

        Returns False when the batch (with the open span) was rolled back: it is read again.
        """
        model = self.models.current
        settlement = self._settlement
        assert model is not None and settlement is not None
        started = time.perf_counter()
        outcome_topic = self.options.topics.outcomes
        vote_records = [r for r in records if r.topic != outcome_topic]
        outcome_records = [r for r in records if r.topic == outcome_topic]
        batch = self.scoring(vote_records, model, scored_at_ms=int(time.time() * 1000))
        dead: Dead = list(batch.dead)
        self.model_feed.live_members.observe(batch.sample)
        topics = self.options.topics
        checkpoint = settlement.checkpoint
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
            settlement.settle(
                records,
                Settled(
                    n_votes=len(vote_records),
                    decisions=batch.decisions,
                    dead=dead,
                    vote_timestamps_ms=batch.written_ms(),
                    n_stale=batch.n_stale,
                ),
            )
        except TransportError as exc:
            settlement.rolled_back(records, exc)
            return False
        return True

    # -- lifecycle ---------------------------------------------------------------------
    def _live_producer(self) -> Producer | None:
        """The producer in use; ``None`` while a discarded one awaits re-creation."""
        checkpoint = self._checkpoint
        if checkpoint is None:
            return self._producer
        return None if checkpoint.producer_lost else checkpoint.producer

    def close(self) -> None:
        """Commit the open span, flush and leave the group."""
        if self._closed:
            return
        self._closed = True
        self.metrics.ready.set(0)
        settlement = self._settlement
        try:
            if settlement is not None and not settlement.producer_lost:
                try:
                    settlement.commit_all()  # every count the shadow held back goes out
                except TransportError as exc:
                    settlement.drop(f"commit at close failed: {exc}")
                    raise
            producer = self._live_producer()
            if producer is not None:
                producer.flush()
        except TransportError as exc:  # offsets were not committed: the span is read again
            log.warning("closing without flushing: %s", exc)
        finally:
            # Each client is closed even if another's close fails: one left running keeps
            # fetching and heartbeating for a scorer that is gone.
            with contextlib.ExitStack() as clients:
                clients.callback(self.model_feed.close)
                clients.callback(self._evidence.close)
                if self._votes is not None:
                    clients.callback(self._votes.close)
                producer = self._live_producer()  # asked again: a failed commit may drop it
                if producer is not None:
                    clients.callback(producer.close)
