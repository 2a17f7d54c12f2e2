"""The trainer's Prometheus metrics and how a verdict is counted (:class:`TrainerMetrics`).

Examples
--------
>>> from metasignal.trainer.verdict import Verdict
>>> metrics = TrainerMetrics()
>>> metrics.count(Verdict("r-1", "skipped", "duplicate: request already answered"), "retune")
>>> metrics.registry.get_sample_value("metasignal_trainer_skipped_total", {"reason": "duplicate"})
1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metasignal.stream.messages import DECISION_KINDS
from metasignal.stream.metrics import OutageGauges
from metasignal.trainer.verdict import Verdict

__all__ = ["TrainerMetrics"]


class TrainerMetrics:
    """The trainer's Prometheus metrics (``metasignal_trainer_*``), on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "metasignal_trainer_requests", "Control requests seen, by kind", ["kind"], registry=r
        )
        self.retrains = Counter(
            "metasignal_trainer_retrains", "Retrained models published", registry=r
        )
        self.retunes = Counter(
            "metasignal_trainer_retunes", "Re-tuned models published", registry=r
        )
        self.refusals = Counter(
            "metasignal_trainer_refusals", "Candidates refused by the champion gate", registry=r
        )
        self.skipped = Counter(
            "metasignal_trainer_skipped",
            "Requests skipped (duplicate id, superseded version)",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            "metasignal_trainer_refused_records",
            "Records refused on models, control, training and evidence (any bytes), by topic "
            "and reason",
            ["topic", "reason"],
            registry=r,
        )
        self.skill_refusals = Counter(
            "metasignal_trainer_skill_refusals",
            "Candidates refused for lack of evidence of skill on the gate rows, by reason",
            ["reason"],
            registry=r,
        )
        self.force_refused = Counter(
            "metasignal_trainer_force_refused",
            "Requests whose force was ignored (unsigned, bad_signature, expired)",
            ["reason"],
            registry=r,
        )
        self.shadow_decisions = Counter(
            "metasignal_trainer_shadow_decisions",
            "Signed shadow decisions published (promote, retire, rollback)",
            ["kind"],
            registry=r,
        )
        for kind in DECISION_KINDS:
            self.shadow_decisions.labels(kind=kind)  # at 0, so a first rollback is an increase
        self.shadow_outcomes = Gauge(
            "metasignal_trainer_shadow_outcomes",
            "Joined outcomes of the current champion/shadow pair, summed over every scorer's "
            "partitions (the sequential test's sample)",
            registry=r,
        )
        self.failures = Counter(
            "metasignal_trainer_failures", "Requests that failed (data, broker)", registry=r
        )
        self.duration = Histogram(
            "metasignal_trainer_duration_seconds",
            "Time to answer a request",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.last_success = Gauge(
            "metasignal_trainer_last_success_timestamp_seconds",
            "When a request was last answered successfully",
            registry=r,
        )
        self.outage = OutageGauges(
            reachable=Gauge(
                "metasignal_trainer_broker_reachable",
                "1 while the broker answers; 0 during an outage or a producer re-creation",
                registry=r,
            ),
            reason=Gauge(
                "metasignal_trainer_not_ready_reason",
                "1 for why the trainer is not ready (broker_unreachable, producer_recreating)",
                ["reason"],
                registry=r,
            ),
            recreations=Counter(
                "metasignal_trainer_producer_recreations",
                "Producers re-created after a fenced or timed-out transaction",
                registry=r,
            ),
        )

    def count(self, verdict: Verdict, kind: str) -> None:
        """Count what became of one request of ``kind`` (or one shadow judgement)."""
        if verdict.outcome == "published" and kind in DECISION_KINDS:
            self.shadow_decisions.labels(kind=kind).inc()
            self.last_success.set_to_current_time()
        elif verdict.outcome == "published":
            (self.retrains if kind == "retrain" else self.retunes).inc()
            self.last_success.set_to_current_time()
        elif verdict.outcome == "refused" and verdict.gate and verdict.gate.get("skill_reason"):
            self.skill_refusals.labels(reason=verdict.gate["skill_reason"]).inc()
            self.last_success.set_to_current_time()
        elif verdict.outcome == "refused":
            self.refusals.inc()
            self.last_success.set_to_current_time()
        elif verdict.outcome == "skipped":
            self.skipped.labels(reason=verdict.detail.split(":", 1)[0]).inc()
        else:
            self.failures.inc()
