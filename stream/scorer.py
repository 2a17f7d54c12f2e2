"""The scorer loop: votes in, trade/no-trade signals out, nothing lost.

Each iteration (1) applies any new artifact from the ``models`` topic, (2) polls
a batch of votes, (3) decodes, validates and scores them vectorised, (4) sends
one signal per valid vote and one dead letter per bad one, and (5) marks the
batch consumed:

* at-least-once: wait for every send to be acknowledged, then commit offsets;
  a crash in between replays the batch (a signal may repeat, none is lost);
* exactly-once: signals, dead letters and the consumed offsets go in one Kafka
  transaction; a crash aborts it, so each vote yields exactly one signal for
  ``read_committed`` readers.

Rebalances only happen inside ``poll``, and a batch is always finished before
the next ``poll``, so a revoked partition never has work in flight.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from metasignal.stream.drift.monitor import DriftMonitor
from metasignal.stream.drift.policy import Decision, DriftPolicy
from metasignal.stream.errors import MetasignalError
from metasignal.stream.join import JoinCache, ScoredVote
from metasignal.stream.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MessageError,
    Vote,
    decode_outcome,
    decode_vote,
    encode_signal,
    vote_matrix,
)
from metasignal.stream.metrics import Heartbeat, ScorerMetrics
from metasignal.stream.model_store import ModelStore
from metasignal.stream.topics import Topics
from metasignal.stream.transport.base import (
    Consumer,
    RebalanceListener,
    Record,
    TopicPartition,
    Transport,
    TransportError,
)

log = logging.getLogger("metasignal.scorer")


@dataclass(frozen=True, kw_only=True)
class ScorerOptions:
    """How the scorer runs (see :mod:`metasignal.stream.config` for flags and env vars)."""

    topics: Topics = field(default_factory=Topics)
    group_id: str = "metasignal-scorer"
    model_name: str = "meta"
    batch_size: int = 500
    poll_timeout_ms: int = 100
    exactly_once: bool = False
    transactional_id: str | None = None
    missing_members: str = "artifact"
    strict_members: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    allow_unsigned: bool = False
    lag_interval_s: float = 5.0
    rate_window: int = 10_000
    track_outcomes: bool = True
    join_max_entries: int = 200_000
    join_ttl_s: float = 24 * 3600.0
    drift_detector: str = "cusum"
    drift_window: int = 5000
    drift_min_outcomes: int = 2000
    drift_cooldown_outcomes: int = 5000
    drift_settle_outcomes: int = 2000
    drift_snapshot_every: int = 250
    drift_label_free: bool = True
    max_failed_batches: int = 5
    model_check_interval_s: float = 0.5


class RollingRate:
    """Share of trades among the last ``window`` decisions (batch-granular)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._batches: deque[tuple[int, int]] = deque()
        self._n = 0
        self._trades = 0

    def update(self, n: int, trades: int) -> float:
        self._batches.append((n, trades))
        self._n += n
        self._trades += trades
        while self._batches and self._n - self._batches[0][0] >= self.window:
            old_n, old_trades = self._batches.popleft()
            self._n -= old_n
            self._trades -= old_trades
        return self._trades / self._n if self._n else 0.0


class RecentValues:
    """The last ``capacity`` values of a stream, in one preallocated float array.

    >>> recent = RecentValues(3)
    >>> recent.extend(np.array([1.0, 2.0])); recent.extend(np.array([3.0, 4.0]))
    >>> recent.array().tolist(), len(recent)
    ([2.0, 3.0, 4.0], 3)
    """

    def __init__(self, capacity: int) -> None:
        self._buffer = np.empty(capacity, dtype=np.float64)
        self._written = 0

    def __len__(self) -> int:
        return min(self._written, len(self._buffer))

    def extend(self, values: np.ndarray) -> None:
        capacity = len(self._buffer)
        values = values[-capacity:]
        start = self._written % capacity
        head = min(len(values), capacity - start)
        self._buffer[start : start + head] = values[:head]
        self._buffer[: len(values) - head] = values[head:]
        self._written += len(values)

    def array(self) -> np.ndarray:
        """Oldest first (a copy)."""
        capacity = len(self._buffer)
        if self._written <= capacity:
            return self._buffer[: self._written].copy()
        start = self._written % capacity
        return np.concatenate([self._buffer[start:], self._buffer[:start]])


@dataclass
class ScorerStats:
    """Running totals for summaries (the demo, logs); Prometheus has the same figures."""

    votes: int = 0
    signals: int = 0
    trades: int = 0
    dlq: int = 0
    batches: int = 0
    outcomes: int = 0
    joined: int = 0
    model_versions: list[int] = field(default_factory=list)
    latencies_ms: RecentValues = field(default_factory=lambda: RecentValues(200_000))
    drift_requests: list[dict[str, object]] = field(default_factory=list)


def dead_letter_headers(record: Record, error: MessageError) -> list[tuple[str, bytes]]:
    return [
        ("reason", error.reason.encode()),
        ("detail", error.detail[:500].encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """Kafka commits name the next offset to read, per partition."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset >= last.get(key, -1):
            last[key] = r.offset
    return {TopicPartition(topic, partition): o + 1 for (topic, partition), o in last.items()}


def first_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    first: dict[tuple[str, int], int] = {}
    for r in records:
        key = (r.topic, r.partition)
        if r.offset < first.get(key, r.offset + 1):
            first[key] = r.offset
    return {TopicPartition(topic, partition): o for (topic, partition), o in first.items()}


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
        self._models_consumer = transport.consumer(
            assign_all=[options.topics.models], from_beginning=True
        )
        self._producer = transport.producer(
            transactional_id=options.transactional_id if options.exactly_once else None
        )
        self._votes: Consumer | None = None
        self._rate = RollingRate(options.rate_window)
        self._last_lag_check = 0.0
        self._lag_series: set[TopicPartition] = set()
        self.join = JoinCache(
            max_entries=options.join_max_entries,
            ttl_s=options.join_ttl_s,
            on_evict=self._on_evict,
        )
        self.monitor: DriftMonitor | None = None
        self._last_outcome_ts: int | None = None
        self._last_snapshot_at = 0
        self.policy = DriftPolicy(
            min_outcomes=options.drift_min_outcomes,
            cooldown_outcomes=options.drift_cooldown_outcomes,
            settle_outcomes=options.drift_settle_outcomes,
            label_free=options.drift_label_free,
        )
        self._failed_batches = 0
        self._next_model_check = 0.0
        self._closed = False

    # -- readiness ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.models.current is not None and self._votes is not None and not self._closed

    def _on_evict(self, reason: str, count: int) -> None:
        if reason == "early":
            # An outcome whose vote never came within the cache's bounds.
            self.metrics.outcomes_unmatched.labels(reason="no_vote").inc(count)
        else:
            self.metrics.join_evictions.labels(reason=reason).inc(count)

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
                if self.models.offer(record.value) == "swapped":
                    self._on_swap()
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
        strategy = str((self.models.artifact or {}).get("strategy", {}).get("name", ""))
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(
            name=model.name, version=str(model.version), strategy=strategy
        ).set(1)
        self.metrics.model_version.set(model.version)
        self.metrics.threshold.set(model.threshold)
        self.metrics.model_created.set(self.models.created_at or 0.0)
        self.metrics.swaps.inc()
        self.stats.model_versions.append(model.version)
        if self.monitor is None or self.monitor.members != model.members:
            self.monitor = DriftMonitor(
                members=model.members,
                window=self.options.drift_window,
                detector=self.options.drift_detector,
            )
        else:
            self.monitor.reset_quality()
        self.policy.start(model_version=model.version)

    # -- consuming ---------------------------------------------------------------
    def _subscribe(self) -> Consumer:
        listener = RebalanceListener(
            on_revoked=self._on_revoked, on_assigned=self._on_assigned, on_lost=self._on_lost
        )
        topics = [self.options.topics.votes]
        if self.options.track_outcomes:
            topics.append(self.options.topics.outcomes)
            self.check_co_partitioning()
        return self.transport.consumer(
            topics=topics,
            group_id=self.options.group_id,
            listener=listener,
            read_committed=True,
        )

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
        # Nothing is in flight here: each batch is committed before the next poll.
        self.metrics.rebalances.labels(kind="revoked").inc()
        for tp in partitions & self._lag_series:
            self.metrics.lag.remove(tp.topic, str(tp.partition))
        self._lag_series -= partitions
        log.info("partitions revoked: %s", sorted(partitions))

    def _on_lost(self, partitions: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind="lost").inc()
        log.warning("partitions lost (session expired): %s", sorted(partitions))

    def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind="assigned").inc()
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
        if self._votes is None:
            self._votes = self._subscribe()
        self.metrics.ready.set(1)
        created = self.models.created_at
        if created:
            self.metrics.model_age.set(time.time() - created)
        records = self._votes.poll(
            timeout_ms=self.options.poll_timeout_ms, max_records=self.options.batch_size
        )
        if records:
            self.process(records)
        elif not self._votes.assignment():
            # No partition (more replicas than partitions, or a rebalance): a consumer without
            # an assignment returns from poll at once, so wait here instead of spinning.
            time.sleep(self.options.poll_timeout_ms / 1000)
        self._update_lag()
        return len(records)

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; the batch in hand is always finished first."""
        self.load_models()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    # -- the hot path ----------------------------------------------------------------
    def _policies(self) -> tuple[bool, bool]:
        model = self.models.current
        assert model is not None
        if self.options.strict_members:
            return True, True
        policy = self.options.missing_members
        if policy == "artifact":
            policy = model.missing_policy
        return False, policy == "reject"

    def process(self, records: Sequence[Record]) -> None:
        """Score one batch, join its outcomes, and mark it consumed (module docstring)."""
        model = self.models.current
        assert model is not None and self._votes is not None
        started = time.perf_counter()
        outcome_topic = self.options.topics.outcomes
        vote_records = [r for r in records if r.topic != outcome_topic]
        outcome_records = [r for r in records if r.topic == outcome_topic]
        probabilities = model.transform == "logit"
        good: list[tuple[Record, Vote]] = []
        dead: list[tuple[Record, MessageError]] = []
        for record in vote_records:
            try:
                vote = decode_vote(
                    record.value,
                    max_bytes=self.options.max_message_bytes,
                    probabilities=probabilities,
                )
            except MessageError as bad:
                dead.append((record, bad))
            else:
                good.append((record, vote))
        reject_unknown, reject_missing = self._policies()
        matrix, errors = vote_matrix(
            [vote for _, vote in good],
            model.members,
            reject_unknown=reject_unknown,
            reject_missing=reject_missing,
        )
        if any(e is not None for e in errors):
            dead.extend((good[i][0], e) for i, e in enumerate(errors) if e is not None)
            keep = [i for i, e in enumerate(errors) if e is None]
            good, matrix = [good[i] for i in keep], matrix[keep]
        scores = model.predict_proba(matrix) if good else np.empty(0)
        decisions = model.decide(scores)
        scored_at = int(time.time() * 1000)
        topics = self.options.topics
        offsets = next_offsets(records)
        send = self._producer.send
        try:
            if self.options.exactly_once:
                self._producer.begin_transaction()
            # Python scalars: iterating numpy arrays would box each element.
            for (_, vote), score, decision in zip(
                good, scores.tolist(), decisions.tolist(), strict=True
            ):
                send(
                    topics.signals,
                    key=vote.id.encode(),
                    value=encode_signal(
                        event_id=vote.id,
                        ts_ms=vote.ts_ms,
                        decision=decision,
                        score=score,
                        threshold=model.threshold,
                        model_name=model.name,
                        model_version=model.version,
                        scored_at_ms=scored_at,
                    ),
                )
            if self.options.track_outcomes:
                event_ids = [vote.id for _, vote in good]
                self.join.remember_batch(
                    event_ids,
                    ts_ms=np.array([vote.ts_ms for _, vote in good], dtype=np.int64),
                    votes=matrix,
                    scores=scores,
                    decisions=decisions,
                    model_version=model.version,
                    members=model.members,
                )
                for event_id in event_ids if self.join.parked else ():
                    early = self.join.claim(event_id)
                    if early is not None:
                        matched = self.join.match(event_id)
                        assert matched is not None
                        self._joined(matched, early)
                dead.extend(self._join_outcomes(outcome_records))
            if self.monitor is not None and good:
                at_ts = max(vote.ts_ms for _, vote in good)
                self._observe_scores(self.monitor, scores, decisions, matrix, at_ts)
            for record, reason in dead:
                self._producer.send(
                    topics.dlq,
                    key=record.key,
                    value=record.value,
                    headers=dead_letter_headers(record, reason),
                )
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            if self.options.exactly_once:
                self._producer.commit_transaction(offsets, self._votes)
            else:
                self._producer.flush()
                self._votes.commit(offsets)
        except TransportError as exc:
            self._rollback(records, exc)
            return
        self._failed_batches = 0
        acked_ms = time.time() * 1000
        latencies = acked_ms - np.fromiter(
            (record.timestamp_ms for record, _ in good), dtype=np.float64, count=len(good)
        )
        self.metrics.latency.observe_many(latencies / 1000)
        self._account(len(vote_records), decisions, dead, latencies)

    def _join_outcomes(self, records: Sequence[Record]) -> list[tuple[Record, MessageError]]:
        """Join outcomes to remembered votes, send training rows, feed the drift monitor."""
        dead: list[tuple[Record, MessageError]] = []
        for record in records:
            try:
                outcome = decode_outcome(record.value, max_bytes=self.options.max_message_bytes)
            except MessageError as bad:
                dead.append((record, bad))
                continue
            self.stats.outcomes += 1
            scored = self.join.match(outcome.id)
            if scored is None:
                # Its vote may still be on the way (fresh outcomes can overtake votes).
                self.join.park(outcome.id, outcome.label)
                continue
            self._joined(scored, outcome.label)
        if self.monitor is not None and self.stats.joined - self._last_snapshot_at >= (
            self.options.drift_snapshot_every
        ):
            # Snapshots sort whole windows: take them every few hundred outcomes, not per batch.
            self._last_snapshot_at = self.stats.joined
            self._after_outcomes(self.monitor)
        return dead

    def _joined(self, scored: ScoredVote, label: int) -> None:
        model = self.models.current
        assert model is not None and self.monitor is not None
        self.stats.joined += 1
        self.metrics.outcomes_joined.inc()
        pairs = zip(scored.members, scored.votes.tolist(), strict=True)
        votes = {m: v for m, v in pairs if not math.isnan(v)}
        row = {
            "id": scored.id,
            "ts": scored.ts_ms,
            "votes": votes,
            "label": label,
            "score": scored.score,
            "decision": scored.decision,
            "model_version": scored.model_version,
        }
        self._producer.send(
            self.options.topics.training,
            key=scored.id.encode(),
            value=json.dumps(row, separators=(",", ":")).encode(),
        )
        if scored.model_version == model.version:
            self.monitor.update(
                label=label, score=scored.score, decision=scored.decision, votes=scored.votes
            )
        self._last_outcome_ts = scored.ts_ms

    def _observe_scores(
        self,
        monitor: DriftMonitor,
        scores: np.ndarray,
        decisions: np.ndarray,
        votes: np.ndarray,
        at_ts: int,
    ) -> None:
        """Label-free estimates and the label-shift detector see every scored vote."""
        alarm = monitor.observe(scores, decisions, votes)
        decision = self.policy.decide_label_free(alarm)
        if decision is not None and alarm is not None:
            self._request(decision, {"label_free": alarm.to_dict()}, at_ts=at_ts)
        estimate = monitor.label_free_estimate()
        if estimate is not None:
            m = self.metrics
            m.estimated_rate.set(estimate.positive_rate)
            m.expected_precision.set(estimate.precision)
            m.expected_recall.set(estimate.recall)
            m.expected_f1.set(estimate.f1)
            for side, ratio in monitor.label_shift_ratios().items():
                m.label_shift_statistic.labels(side=side).set(ratio)

    def _after_outcomes(self, monitor: DriftMonitor) -> None:
        snapshot = monitor.snapshot()
        fired, direction = monitor.consume_rate_drift()
        m = self.metrics
        m.join_entries.set(len(self.join))
        for gauge, value in (
            (m.realized_rate, snapshot.realized_rate),
            (m.rolling_f1, snapshot.rolling_f1),
            (m.rolling_precision, snapshot.rolling_precision),
            (m.rolling_recall, snapshot.rolling_recall),
            (m.rolling_pr_auc, snapshot.rolling_pr_auc),
        ):
            gauge.set(value)
        for member, loss in snapshot.member_log_loss.items():
            m.member_log_loss.labels(member=member).set(loss)
        decision = self.policy.decide(
            outcomes=snapshot.outcomes,
            window_positives=snapshot.window_positives,
            rolling_f1=snapshot.rolling_f1,
            rolling_pr_auc=snapshot.rolling_pr_auc,
            member_auc=snapshot.member_auc,
            rate_drift=fired,
            rate_direction=direction,
            event_ts=self._last_outcome_ts,
            estimated_rate=snapshot.estimated_rate,
            rate_agreement_z=snapshot.rate_agreement_z,
        )
        if decision is not None:
            self._request(decision, snapshot.to_dict())

    def _request(
        self, decision: Decision, stats: dict[str, object], *, at_ts: int | None = None
    ) -> None:
        model = self.models.current
        assert model is not None
        request = {
            "id": uuid.uuid4().hex,
            "kind": decision.kind,
            "reason": decision.reason,
            "model": model.name,
            "model_version": model.version,
            "since_ts": decision.since_ts,
            "at_event_ts": self._last_outcome_ts if at_ts is None else at_ts,
            "at": int(time.time() * 1000),
            "source": self.options.group_id,
            "evidence": decision.source,
            "prior": dict(decision.prior) if decision.prior else None,
            "stats": stats,
        }
        self._producer.send(
            self.options.topics.control,
            key=model.name.encode(),
            value=json.dumps(request, separators=(",", ":")).encode(),
        )
        self.metrics.drift_events.labels(kind=decision.kind, source=decision.source).inc()
        self.stats.drift_requests.append(
            {
                "at": self.stats.joined,
                "kind": decision.kind,
                "reason": decision.reason,
                "source": decision.source,
            }
        )
        log.warning("drift: requesting %s (%s)", decision.kind, decision.reason)

    def _rollback(self, records: Sequence[Record], exc: TransportError) -> None:
        """Rewind to the batch start so it is processed again; never skip a vote.

        A producer kafka-python has put in a fatal state fails every batch after; rather
        than spin while looking alive, give up after ``max_failed_batches`` in a row so the
        process exits and a restart (with the last committed offsets) recovers.
        """
        self._failed_batches += 1
        if self._failed_batches >= self.options.max_failed_batches:
            raise TransportError(
                f"{self._failed_batches} batches in a row could not be committed, last: {exc}"
            )
        log.warning("batch not committed, will be retried: %s", exc)
        if self.options.exactly_once:
            self.metrics.transaction_aborts.inc()
            try:
                self._producer.abort_transaction()
            except TransportError as abort_error:
                # A fenced or broken producer cannot continue; a restart recovers cleanly.
                raise TransportError(f"cannot abort transaction: {abort_error}") from abort_error
        assert self._votes is not None
        for tp, offset in first_offsets(records).items():
            self._votes.seek(tp, offset)

    def _account(
        self,
        n_records: int,
        decisions: np.ndarray,
        dead: Sequence[tuple[Record, MessageError]],
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
        now = time.monotonic()
        if self._votes is None or now - self._last_lag_check < self.options.lag_interval_s:
            return
        self._last_lag_check = now
        assigned = sorted(self._votes.assignment())
        if not assigned:
            return
        try:
            ends = self._votes.end_offsets(assigned)
            for tp in assigned:
                lag = max(ends[tp] - self._votes.position(tp), 0)
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
                self._lag_series.add(tp)
        except (TransportError, KeyError) as exc:
            log.debug("lag check skipped: %s", exc)

    def close(self) -> None:
        """Flush and leave the group; offsets are already committed per batch."""
        if self._closed:
            return
        self._closed = True
        self.metrics.ready.set(0)
        try:
            self._producer.flush()
        finally:
            self._producer.close()
            if self._votes is not None:
                self._votes.close()
            self._models_consumer.close()
