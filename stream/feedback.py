"""The feedback loop: outcomes joined to scored votes, training rows, drift requests.

:class:`FeedbackLoop` owns the join cache, the drift monitor and the drift
policy. The scorer hands it each scored batch (remembered until its outcomes
arrive) and each batch of outcome records; it answers with the messages to
send — a training row per joined outcome and, when the policy decides, a
re-tune or retrain request on ``control`` — and the outcome records that go to
the DLQ. It sends nothing itself: its messages travel in the scorer's batch
(and transaction), so a rolled-back batch leaves none behind. Joined outcomes
also feed the shadow slot's paired counts (:mod:`~metasignal.stream.shadow`),
sent just before each commit (:meth:`FeedbackLoop.evidence`).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import NamedTuple, cast

import numpy as np

from metasignal.stream.drift.monitor import DriftMonitor, DriftSnapshot
from metasignal.stream.drift.policy import Decision, DriftPolicy
from metasignal.stream.join import JoinCache, ScoredVote
from metasignal.stream.messages import (
    ControlRequest,
    EvidenceSource,
    MessageError,
    RequestKind,
    TrainingRow,
    decode_outcome,
    encode_control_request,
    encode_training_row,
)
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.options import ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.shadow import ShadowSlot
from metasignal.stream.stats import ScorerStats
from metasignal.stream.step import Dead, ScoredBatch, internal_error
from metasignal.stream.transport.base import Record

log = logging.getLogger("metasignal.scorer")


class Message(NamedTuple):
    """One message to send: topic, key, value."""

    topic: str
    key: bytes
    value: bytes


def defined_quality(snapshot: DriftSnapshot) -> tuple[float, float, float, float, float]:
    """Realized rate, F1, precision, recall, PR-AUC of the window; NaN where undefined.

    Precision needs a predicted trade, recall an actual one, F1 either; all need outcomes.
    (An empty window once exported F1 0.0, which reads as a collapse.)

    >>> from types import SimpleNamespace
    >>> quiet = SimpleNamespace(window_outcomes=50, window_positives=0, predicted_rate=0.0,
    ...     realized_rate=0.0, rolling_f1=0.0, rolling_precision=0.0, rolling_recall=0.0,
    ...     rolling_pr_auc=float("nan"))
    >>> defined_quality(quiet)
    (0.0, nan, nan, nan, nan)
    """
    n = snapshot.window_outcomes
    nan = math.nan
    if n == 0:
        return nan, nan, nan, nan, nan
    predicted = round(snapshot.predicted_rate * n)
    actual = snapshot.window_positives
    return (
        snapshot.realized_rate,
        snapshot.rolling_f1 if predicted or actual else nan,
        snapshot.rolling_precision if predicted else nan,
        snapshot.rolling_recall if actual else nan,
        snapshot.rolling_pr_auc if actual else nan,
    )


class FeedbackLoop:
    """Join outcomes to what was decided and ask for re-tunes/retrains (module docstring)."""

    def __init__(
        self, *, options: ScorerOptions, metrics: ScorerMetrics, stats: ScorerStats
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.stats = stats
        self.join = JoinCache(
            max_entries=options.join_max_entries,
            ttl_s=options.join_ttl_s,
            max_bytes=options.join_max_bytes,
            on_evict=self._on_evict,
        )
        self.monitor: DriftMonitor | None = None
        self.policy = DriftPolicy(
            min_outcomes=options.drift_min_outcomes,
            cooldown_outcomes=options.drift_cooldown_outcomes,
            settle_outcomes=options.drift_settle_outcomes,
            label_free=options.drift_label_free,
        )
        self.shadow = ShadowSlot(options=options, metrics=metrics)
        self._model: CompiledModel | None = None
        self._last_outcome_ts: int | None = None
        self._last_snapshot_at = 0

    def _gauge_join(self) -> None:
        self.metrics.join_entries.set(len(self.join))
        self.metrics.join_bytes.set(self.join.nbytes)

    def _on_evict(self, reason: str, count: int) -> None:
        if reason == "early":
            # An outcome whose vote never came within the cache's bounds.
            self.metrics.outcomes_unmatched.labels(reason="no_vote").inc(count)
        else:
            self.metrics.join_evictions.labels(reason=reason).inc(count)

    def on_model(self, model: CompiledModel) -> None:
        """A new model serves: quality is measured afresh, the policy restarts."""
        self._model = model
        for gauge in self.metrics.rolling_gauges:
            gauge.set(math.nan)  # an empty window: nothing measured yet, not 0.0
        if self.monitor is None or self.monitor.members != model.members:
            self.monitor = DriftMonitor(
                members=model.members,
                window=self.options.drift_window,
                detector=self.options.drift_detector,
                score_recalibration=model.score_recalibration,
            )
        else:
            self.monitor.reset_quality(score_recalibration=model.score_recalibration)
        self.policy.start(model_version=model.version)

    def remember(self, batch: ScoredBatch, model: CompiledModel) -> list[Message]:
        """Keep the batch's decisions for their outcomes; join outcomes that came first."""
        event_ids = batch.event_ids
        shadow = self.shadow.score(batch, model)
        self.join.remember_batch(
            event_ids,
            ts_ms=np.array(batch.ts_ms, dtype=np.int64),
            votes=batch.matrix,
            scores=batch.scores,
            decisions=batch.decisions,
            model_version=model.version,
            members=model.members,
            shadow_version=0 if shadow is None else shadow.version,
            shadow_decisions=None if shadow is None else shadow.decisions,
            shadow_sizes=None if shadow is None else shadow.sizes,
        )
        self._gauge_join()
        out: list[Message] = []
        if self.join.parked:
            for event_id, record in zip(event_ids, batch.records, strict=True):
                early = self.join.claim(event_id)
                if early is not None:
                    matched = self.join.match(event_id)
                    assert matched is not None
                    # Co-partitioned: the outcome's partition is its vote's.
                    out.append(self._joined(matched, early, record.partition))
        self.shadow.flush()
        return out

    def observe_scores(self, batch: ScoredBatch) -> list[Message]:
        """Label-free estimates and the label-shift detector see every scored vote.

        No outcome is needed: a label-shift re-tune can be asked for long before the
        outcomes of the shifted votes arrive.
        """
        monitor = self.monitor
        if monitor is None or not batch.ids:
            return []
        alarm = monitor.observe(batch.scores, batch.decisions, batch.matrix)
        out: list[Message] = []
        decision = self.policy.decide_label_free(alarm)
        if decision is not None and alarm is not None:
            at_ts = max(batch.ts_ms)
            out.append(self._request(decision, {"label_free": alarm.to_dict()}, at_ts=at_ts))
        estimate = monitor.label_free_estimate()
        if estimate is not None:
            m = self.metrics
            m.estimated_rate.set(estimate.positive_rate)
            m.expected_precision.set(estimate.precision)
            m.expected_recall.set(estimate.recall)
            m.expected_f1.set(estimate.f1)
            for side, ratio in monitor.label_shift_ratios().items():
                m.label_shift_statistic.labels(side=side).set(ratio)
        return out

    def join_outcomes(self, records: Sequence[Record]) -> tuple[list[Message], Dead]:
        """Join outcomes to remembered votes: training rows, drift requests, dead letters."""
        out: list[Message] = []
        dead: Dead = []
        if records:
            self.join.expire()  # parked outcomes whose vote never came are counted unmatched
        for record in records:
            try:
                outcome = decode_outcome(record.value, max_bytes=self.options.max_message_bytes)
            except MessageError as bad:
                dead.append((record, bad))
                continue
            except Exception as exc:
                log.warning("outcome at %s@%d: %r", record.topic, record.offset, exc)
                dead.append((record, internal_error(exc)))
                continue
            self.stats.outcomes += 1
            scored = self.join.match(outcome.id)
            if scored is None:
                # Its vote may still be on the way (fresh outcomes can overtake votes).
                self.join.park(outcome.id, outcome.label)
                continue
            out.append(self._joined(scored, outcome.label, record.partition))
        if self.monitor is not None and self.stats.joined - self._last_snapshot_at >= (
            self.options.drift_snapshot_every
        ):
            # Snapshots sort whole windows: take them every few hundred outcomes, not per batch.
            self._last_snapshot_at = self.stats.joined
            request = self._after_outcomes(self.monitor)
            if request is not None:
                out.append(request)
        self.shadow.flush()
        return out, dead

    def evidence(self) -> list[Message]:
        """The shadow's changed per-partition counts: sent in the span, just before it commits."""
        topic = self.options.topics.evidence
        return [Message(topic, key, value) for key, value in self.shadow.evidence()]

    def _joined(self, scored: ScoredVote, label: int, partition: int) -> Message:
        model = self._model
        assert model is not None and self.monitor is not None
        self.stats.joined += 1
        self.metrics.outcomes_joined.inc()
        pairs = zip(scored.members, scored.votes.tolist(), strict=True)
        votes = {m: v for m, v in pairs if not math.isnan(v)}
        row = TrainingRow(
            id=scored.id,
            ts=scored.ts_ms,
            votes=votes,
            label=label,
            score=scored.score,
            decision=scored.decision,
            model_version=scored.model_version,
        )
        if scored.model_version == model.version:
            self.monitor.update(
                label=label, score=scored.score, decision=scored.decision, votes=scored.votes
            )
        self.shadow.observe(scored, label, partition)
        self._last_outcome_ts = scored.ts_ms
        return Message(self.options.topics.training, scored.id.encode(), encode_training_row(row))

    def _after_outcomes(self, monitor: DriftMonitor) -> Message | None:
        snapshot = monitor.snapshot()
        fired, direction = monitor.consume_rate_drift()
        m = self.metrics
        self._gauge_join()
        for gauge, value in zip(m.rolling_gauges, defined_quality(snapshot), strict=True):
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
        if decision is None:
            return None
        return self._request(decision, snapshot.to_dict())

    def _request(
        self, decision: Decision, stats: dict[str, object], *, at_ts: int | None = None
    ) -> Message:
        model = self._model
        assert model is not None
        request = ControlRequest(
            id=uuid.uuid4().hex,
            kind=cast(RequestKind, decision.kind),
            reason=decision.reason,
            model=model.name,
            model_version=model.version,
            since_ts=decision.since_ts,
            at_event_ts=self._last_outcome_ts if at_ts is None else at_ts,
            at=int(time.time() * 1000),
            source=self.options.group_id,
            stats=stats,
            evidence=cast(EvidenceSource, decision.source),
        )
        if decision.prior:
            request["prior"] = {k: float(v) for k, v in decision.prior.items()}
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
        return Message(
            self.options.topics.control, model.name.encode(), encode_control_request(request)
        )
