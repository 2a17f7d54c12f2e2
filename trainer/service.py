"""``metasignal trainer``: answers drift requests with gated, signed models.

The trainer consumes the one-partition ``control`` topic in a consumer group,
so exactly one trainer is active and a standby takes over when it dies. For
each request it takes the recent window of joined rows from ``training``,
re-tunes the champion (calibration intercept and threshold) or retrains it,
and compares candidate and champion on the most recent rows the candidate was
not fitted on. A candidate without evidence of skill on those rows is never
published (:func:`gate_skill`, counted by reason); one that is not worse than
the champion is published to ``models``.

Publishing the artifact and committing the request's offset happen in one
Kafka transaction: a trainer killed mid-request leaves nothing behind, and the
request is served again — once — by whoever takes over. Requests already
answered (by id) or about a superseded model version are skipped, so duplicate
requests give one new model.

The active trainer also judges shadow challengers: it reads every scorer's per-partition
counts from the compacted ``evidence`` topic, runs one sequential test on their sum and
publishes the signed promote/retire/rollback (:mod:`metasignal.trainer.shadow`).

A broker outage is ridden out like the scorer's (:mod:`metasignal.stream.outage`):
the request in hand is read again once the broker answers, a producer whose
transaction was fenced or timed out is re-created, and the loop backs off
(bounded) meanwhile, with ``metasignal_trainer_broker_reachable`` at 0.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metasignal.stream.artifact import Artifact, dumps_artifact, load_artifact, sign_artifact
from metasignal.stream.checkpoint import Checkpoint, next_offsets
from metasignal.stream.decisions import (
    DecisionError,
    decision_key,
    encode_decision,
    is_decision,
    load_decision,
)
from metasignal.stream.errors import ArtifactError
from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.lineup import Lineup, Refused
from metasignal.stream.messages import (
    DECISION_KINDS,
    ControlRequest,
    MessageError,
    ShadowDecision,
    TrainingRow,
    decode_control_request,
    decode_training_row,
)
from metasignal.stream.metrics import Heartbeat, OutageGauges
from metasignal.stream.model_store import refusal_reason
from metasignal.stream.outage import BROKER_UNREACHABLE, PRODUCER_RECREATING, Outage
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.sizing import SizingRule
from metasignal.stream.status import StatusClock, trainer_status
from metasignal.stream.topics import model_key
from metasignal.stream.transport.base import (
    OTHER,
    Consumer,
    Producer,
    Record,
    Transport,
    TransportError,
    broker_reachable,
)
from metasignal.trainer.calibration import fit_platt
from metasignal.trainer.control import check_force
from metasignal.trainer.data import DataError, VoteTable
from metasignal.trainer.fit import FitConfig, build_artifact, holdout_metrics
from metasignal.trainer.label_shift import label_shift_challenge
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.objective import Objective
from metasignal.trainer.settings import TRAINER_SETTINGS, TrainerOptions
from metasignal.trainer.shadow import (
    Judgement,
    ShadowJudge,
    answer_shadow_request,
    finished_keys,
    sign_judgement,
)
from metasignal.trainer.skill import DEFAULT_ALPHA, SkillVerdict, assess_ranking, decide
from metasignal.trainer.walk_forward import abstain_value

__all__ = ["TRAINER_SETTINGS", "TrainerMetrics", "TrainerOptions", "TrainerService"]

log = logging.getLogger("metasignal.trainer")


class TrainerMetrics:
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


@dataclass(frozen=True)
class Verdict:
    """What became of one request."""

    request_id: str
    outcome: str  # published, refused, skipped, failed; retry: not committed, read again
    detail: str
    version: int | None = None
    gate: dict[str, Any] | None = None


def rows_to_table(rows: Sequence[TrainingRow], members: Sequence[str]) -> VoteTable:
    """Joined training rows, time-ordered, in the champion's member order (NaN = missing)."""
    ordered = sorted(rows, key=lambda row: row["ts"])
    votes = np.array(
        [[row["votes"].get(m, np.nan) for m in members] for row in ordered], dtype=np.float64
    ).reshape(len(ordered), len(members))
    return VoteTable(
        time_ms=np.array([row["ts"] for row in ordered], dtype=np.int64),
        members=tuple(members),
        votes=votes,
        labels=np.array([row["label"] for row in ordered], dtype=np.int8),
    )


def retune_artifact(
    champion: Artifact, table: VoteTable, objective: Objective
) -> tuple[Artifact, float]:
    """Keep the weights; refit the calibration map and threshold on recent rows.

    A base-rate shift moves the log-odds of every event alike, so a new Platt
    intercept (and slope) plus a re-tuned threshold is the whole correction.
    """
    model = CompiledModel.from_artifact(champion)
    coef = np.asarray(champion["linear"]["coef"], dtype=np.float64)
    raw = model.features(table.votes) @ coef + float(champion["linear"]["intercept"])
    calibration = fit_platt(raw, table.labels)
    scores = calibration.transform(raw)
    threshold = objective.find(table.labels, scores).threshold
    candidate = copy.deepcopy(champion)
    candidate["calibration"] = calibration.to_dict()
    candidate["threshold"] = {
        **champion["threshold"],
        "value": threshold,
        "fold_thresholds": [threshold],
    }
    candidate["strategy"] = {
        **champion["strategy"],
        "reason": f"re-tuned on {len(table)} recent joined rows (weights unchanged)",
    }
    return candidate, threshold


def gate_skill(
    gate: VoteTable, scores: np.ndarray, candidate_value: float, objective: Objective
) -> SkillVerdict:
    """The skill gate on the recent rows the candidate was not fitted on.

    Its ranking must beat the base rate (rotation permutation test) and trading at its
    threshold must beat never trading on those rows.
    """
    ranking = assess_ranking(gate.labels, scores, gate.time_ms)
    abstain = abstain_value(objective, gate.labels, scores, None)
    detail = f"gate {objective.metric} {candidate_value:.4f} vs abstain {abstain:.4f}"
    return decide(
        ranking, alpha=DEFAULT_ALPHA, beats_abstain=candidate_value > abstain, abstain_detail=detail
    )


class TrainerService:
    """One trainer replica (a standby waits in the same consumer group)."""

    def __init__(
        self,
        *,
        transport: Transport,
        options: TrainerOptions,
        keys: Sequence[bytes],
        metrics: TrainerMetrics | None = None,
    ) -> None:
        if not keys:
            raise ArtifactError("the trainer signs what it publishes: a signing key is required")
        self.transport = transport
        self.options = options
        self.keys = list(keys)
        self.metrics = metrics or TrainerMetrics()
        # A retrain may take minutes: liveness allows for it, a wedged loop still fails.
        self.heartbeat = Heartbeat(max_silence_s=900.0)
        self.lineup = Lineup(model_name=options.model_name)
        self.handled: set[str] = set()
        self.verdicts: list[Verdict] = []
        self.rows: deque[TrainingRow] = deque(maxlen=options.window_rows)
        topics = options.topics
        self._models = transport.consumer(assign_all=[topics.models], read_committed=True)
        self._training = transport.consumer(assign_all=[topics.training], read_committed=True)
        # Every scorer's per-partition shadow counts (trainer/shadow.py judges their sum).
        self.evidence = EvidenceLog(
            transport.consumer(assign_all=[topics.evidence], read_committed=True),
            keys=self.keys,
            on_refused=lambda record, bad: self._refuse(record, bad.reason, bad.detail),
        )
        self.judge = ShadowJudge(
            alpha=options.shadow_alpha,
            margin=options.shadow_margin,
            min_outcomes=options.shadow_min_outcomes,
            max_outcomes=options.shadow_max_outcomes,
            look_every=options.shadow_look_every,
            rollback_outcomes=options.rollback_outcomes,
            min_improvement=options.shadow_min_improvement or None,  # 0: no futility stop
        )
        self._judge_again = True  # read the evidence at start-up; again after a failed publish
        self._control: Consumer | None = None
        self._checkpoint: Checkpoint | None = None
        self._producer = self._new_producer()
        self._status = StatusClock(options.status_interval_s, now=time.monotonic())
        self.outage = Outage(on_change=self.metrics.outage.set)
        self.metrics.outage.probe(self._broker_ok)

    @property
    def ready(self) -> bool:
        """The loop is alive and the broker answers (``/readyz``)."""
        return self.heartbeat.alive() and self._broker_ok()

    def _broker_ok(self) -> bool:
        """No outage noticed by the loop, and (asked live) a broker connection is up."""
        control = self._control
        return self.outage.ok and (control is None or broker_reachable(control))

    def _new_producer(self) -> Producer:
        return self.transport.producer(transactional_id=self.options.transactional_id)

    @property
    def champion(self) -> Artifact | None:
        """The model serving, as the ``models`` topic says (artifacts and decisions)."""
        return self.lineup.champion

    @champion.setter
    def champion(self, artifact: Artifact | None) -> None:
        """Serve ``artifact`` as if the topic held it alone (benchmarks answer requests so)."""
        self.lineup = Lineup(model_name=self.options.model_name)
        if artifact is not None:
            self.lineup.offer_artifact(artifact)

    # -- state from the log ----------------------------------------------------------
    def _drain(self, consumer: Consumer) -> list[Record]:
        """Everything up to the current end of the consumer's partitions."""
        out: list[Record] = []
        ends = consumer.end_offsets(sorted(consumer.assignment()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out.extend(consumer.poll(timeout_ms=100, max_records=5000))
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
        return out

    def refresh(self) -> None:
        """Catch up with published models (champion, answered requests) and training rows."""
        self._refresh_models()
        for record in self._drain(self._training):
            try:
                self.rows.append(decode_training_row(record.value))
            except MessageError as bad:
                self._refuse(record, bad.reason, bad.detail)
            except Exception as exc:
                self._refuse(record, "internal", repr(exc))

    def _refresh_models(self) -> None:
        """Catch up with published models and decisions (the lineup, answered requests)."""
        for record in self._drain(self._models):
            if record.value is None:
                continue  # a compaction tombstone
            try:
                document = json.loads(record.value)
            except (ValueError, UnicodeDecodeError, RecursionError):
                document = None  # load_artifact says why
            if is_decision(document):
                self._refresh_decision(record, document)
                continue
            try:
                artifact = load_artifact(record.value, keys=self.keys)
            except Exception as exc:
                reason = (
                    refusal_reason(exc) if isinstance(exc, ArtifactError) else "invalid_artifact"
                )
                self._refuse(record, reason, str(exc))
                continue
            if artifact["model"]["name"] != self.options.model_name:
                continue
            request = artifact.get("request") or {}
            if request.get("id"):
                self.handled.add(str(request["id"]))
            try:
                self.lineup.offer_artifact(artifact)
            except Refused as refused:  # the scorers refuse and count it too
                log.info("models record at offset %d not applied: %s", record.offset, refused)

    def _refresh_decision(self, record: Record, document: dict[str, Any]) -> None:
        """A decision record on ``models``: verified, then applied to the lineup."""
        try:
            decision = load_decision(document, keys=self.keys)
            self.handled.add(decision["request_id"])
            self.lineup.offer_decision(decision)
        except (DecisionError, Refused) as refused:
            self._refuse(record, refused.reason, refused.detail)

    # -- the loop ------------------------------------------------------------------------
    def step(self) -> int:
        """Answer the next control request, if any; an outage is waited out (bounded backoff)."""
        self.heartbeat.beat()
        try:
            return self._serve()
        except TransportError as exc:
            if exc.kind == OTHER:
                raise
            lost = self._checkpoint is not None and self._checkpoint.producer_lost
            self.outage.down(PRODUCER_RECREATING if lost else BROKER_UNREACHABLE, str(exc))
            time.sleep(self.outage.backoff())
            return 0

    def _serve(self) -> int:
        if self._control is None:
            self._control = self.transport.consumer(
                topics=[self.options.topics.control],
                group_id=self.options.group_id,
                read_committed=True,
            )
            # Every answer is one transaction: the published model and the request's offset.
            self._checkpoint = Checkpoint(
                producer=self._producer,
                consumer=self._control,
                exactly_once=True,
                producer_factory=self._new_producer,
                on_recreate=self.metrics.outage.recreations.inc,
            )
        assert self._checkpoint is not None
        self._checkpoint.ensure_producer()
        records = self._control.poll(timeout_ms=self.options.poll_timeout_ms, max_records=1)
        for record in records:
            verdict = self.handle(record)
            if verdict.outcome == "retry":
                # Not committed: read again after a bounded wait (the broker is away).
                time.sleep(self.outage.backoff())
                return 0
        judged = self.judge_evidence()
        if judged is not None and judged.outcome == "retry":
            time.sleep(self.outage.backoff())
            return 0
        self.outage.probed(broker_reachable(self._control))
        self._log_status()
        return len(records)

    def _log_status(self) -> None:
        if self._status.due(now=time.monotonic()) is None:
            return
        outcomes = [verdict.outcome for verdict in self.verdicts]
        published = [v.version for v in self.verdicts if v.outcome == "published"]
        champion = self.champion
        log.info(
            trainer_status(
                published=len(published),
                refused=outcomes.count("refused"),
                skipped=outcomes.count("skipped"),
                failed=outcomes.count("failed"),
                last_published=published[-1] if published else None,
                champion=None if champion is None else int(champion["model"]["version"]),
            )
        )

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def handle(self, record: Record) -> Verdict:
        """Answer one control request and commit it, atomically with any published model."""
        checkpoint = self._checkpoint
        assert checkpoint is not None
        started = time.perf_counter()
        try:
            self.refresh()
        except TransportError as exc:
            # The models or training topic cannot be read: answer this request later.
            assert self._control is not None
            self._control.seek(record.topic_partition, record.offset)
            self.outage.down(BROKER_UNREACHABLE, str(exc))
            return Verdict(f"offset-{record.offset}", "retry", str(exc))
        request: ControlRequest | None = None
        try:
            request = decode_control_request(record.value)
        except MessageError as bad:
            # Answered as failed and committed: a bad request is refused once, not re-read.
            self._refuse(record, bad.reason, bad.detail)
        except Exception as exc:
            self._refuse(record, "internal", repr(exc))
        operator_force = request is not None and self._operator_force(record)
        kind = "invalid" if request is None else request["kind"]
        request_id = f"offset-{record.offset}" if request is None else request["id"]
        log.info("handling request %s (%s)", request_id, kind)
        self.metrics.requests.labels(kind=kind).inc()
        artifact: Artifact | None = None
        decision: ShadowDecision | None = None
        if request is None:
            verdict = Verdict(request_id, "failed", "invalid request")
        elif request["kind"] in DECISION_KINDS:
            verdict, decision = self._answer_shadow(request)
        else:
            verdict, artifact = self._answer(request, operator_force=operator_force)
        try:
            checkpoint.begin()
            if artifact is not None:
                checkpoint.producer.send(
                    self.options.topics.models,
                    key=model_key(self.options.model_name, artifact["model"]["version"]),
                    value=dumps_artifact(artifact).encode(),
                )
            if decision is not None:
                checkpoint.producer.send(
                    self.options.topics.models,
                    key=decision_key(decision),
                    value=encode_decision(decision),
                )
            checkpoint.commit(next_offsets([record]))
        except TransportError as exc:
            self.metrics.failures.inc()
            checkpoint.rollback([record], exc)
            log.error("could not publish the answer to %s: %s", verdict.request_id, exc)
            if exc.kind != OTHER:
                reason = PRODUCER_RECREATING if checkpoint.producer_lost else BROKER_UNREACHABLE
                self.outage.down(reason, str(exc))
                return Verdict(verdict.request_id, "retry", str(exc))
            return Verdict(verdict.request_id, "failed", str(exc))
        if artifact is not None or decision is not None:
            self.handled.add(verdict.request_id)
            try:  # what was just published applies; the next refresh() reads it again anyway
                if artifact is not None:
                    self.lineup.offer_artifact(artifact)
                if decision is not None:
                    self.lineup.offer_decision(decision)
            except Refused as refused:
                log.warning("published %s does not apply: %s", verdict.request_id, refused)
        self._count(verdict, kind)
        self.metrics.duration.observe(time.perf_counter() - started)
        self.verdicts.append(verdict)
        log.info(
            "request %s (%s): %s — %s", verdict.request_id, kind, verdict.outcome, verdict.detail
        )
        return verdict

    def _count(self, verdict: Verdict, kind: str) -> None:
        if verdict.outcome == "published" and kind in DECISION_KINDS:
            self.metrics.shadow_decisions.labels(kind=kind).inc()
            self.metrics.last_success.set_to_current_time()
        elif verdict.outcome == "published":
            (self.metrics.retrains if kind == "retrain" else self.metrics.retunes).inc()
            self.metrics.last_success.set_to_current_time()
        elif verdict.outcome == "refused" and verdict.gate and verdict.gate.get("skill_reason"):
            self.metrics.skill_refusals.labels(reason=verdict.gate["skill_reason"]).inc()
            self.metrics.last_success.set_to_current_time()
        elif verdict.outcome == "refused":
            self.metrics.refusals.inc()
            self.metrics.last_success.set_to_current_time()
        elif verdict.outcome == "skipped":
            self.metrics.skipped.labels(reason=verdict.detail.split(":", 1)[0]).inc()
        else:
            self.metrics.failures.inc()

    def _refuse(self, record: Record, reason: str, detail: str) -> None:
        """Count and log one record that cannot be used; the trainer carries on."""
        self.metrics.refused.labels(topic=record.topic, reason=reason).inc()
        log.warning(
            "refused record %s[%d]@%d (%s): %.200s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail,
        )

    def _operator_force(self, record: Record) -> bool:
        """Whether the request carries a valid operator-signed force (trainer/control.py)."""
        verdict = check_force(record.value, keys=self.keys, now_ms=int(time.time() * 1000))
        if verdict is None or verdict == "signed":
            return verdict == "signed"
        self.metrics.force_refused.labels(reason=verdict).inc()
        log.warning(
            "control[%d]@%d asks for force without a valid operator signature (%s): "
            "the champion gate decides",
            record.partition,
            record.offset,
            verdict,
        )
        return False

    def _judgement(self) -> Judgement | None:
        """What every partition's latest evidence for the lineup's pair supports, if decided."""
        champion, shadow, _ = self.lineup.versions
        summed = self.evidence.summed(self.options.model_name, champion or 0, shadow or 0)
        judgement = self.judge.judge(self.lineup, summed)
        self.metrics.shadow_outcomes.set(self.judge.n_outcomes)
        return judgement

    def judge_evidence(self) -> Verdict | None:
        """New evidence: the sequential test on the sum; a verdict is published, signed, in a
        transaction with the control position (so only the active trainer, fencing the
        standby, decides). ``None`` when there is nothing to decide."""
        control, checkpoint = self._control, self._checkpoint
        if control is None or checkpoint is None or not control.assignment():
            return None  # a standby: whoever owns control judges
        if not self.evidence.poll() and not self._judge_again:
            return None
        self._judge_again = False
        self._refresh_models()
        judgement = self._judgement()
        finished = finished_keys(self.evidence, self.lineup, judgement)  # tombstoned with it
        if judgement is None and not finished:
            return None
        decision = (
            None if judgement is None else sign_judgement(judgement, self.lineup, key=self.keys[0])
        )
        request_id = "evidence:tombstones" if decision is None else decision["request_id"]
        try:
            checkpoint.begin()
            if decision is not None:
                checkpoint.producer.send(
                    self.options.topics.models,
                    key=decision_key(decision),
                    value=encode_decision(decision),
                )
            for key in finished:
                checkpoint.producer.send(self.options.topics.evidence, key=key, value=None)
            checkpoint.commit({tp: control.position(tp) for tp in control.assignment()})
        except TransportError as exc:
            self.metrics.failures.inc()
            checkpoint.rollback([], exc)
            self._judge_again = True
            what = "evidence tombstones" if judgement is None else f"{judgement.kind} decision"
            log.error("could not publish the %s: %s", what, exc)
            if exc.kind != OTHER:
                reason = PRODUCER_RECREATING if checkpoint.producer_lost else BROKER_UNREACHABLE
                self.outage.down(reason, str(exc))
            return Verdict(request_id, "retry", str(exc))
        self.evidence.forget(finished)
        if judgement is None or decision is None:
            return None
        self.handled.add(request_id)
        try:
            self.lineup.offer_decision(decision)
        except Refused as refused:
            log.warning("published %s does not apply: %s", request_id, refused)
        detail = f"{judgement.kind}: {judgement.reason}"
        verdict = Verdict(request_id, "published", detail)
        self._count(verdict, judgement.kind)
        self.verdicts.append(verdict)
        if judgement.kind == "rollback":
            log.warning("rolling back: %s", detail)  # the runbook's MetasignalChampionRolledBack
        else:
            log.info("shadow decision: %s", detail)
        return verdict

    def _answer_shadow(self, request: ControlRequest) -> tuple[Verdict, ShadowDecision | None]:
        """A shadow request: the signed decision if the trainer's own judgement of the
        summed evidence for the current state is that decision (trainer/shadow.py)."""
        request_id = request["id"]
        if request_id in self.handled:
            return Verdict(request_id, "skipped", "duplicate: request already answered"), None
        self.evidence.catch_up()
        outcome, detail, decision = answer_shadow_request(
            request, self.lineup, self._judgement(), key=self.keys[0]
        )
        if outcome == "published" and request["kind"] == "rollback":
            log.warning("rolling back: %s", detail)
        return Verdict(request_id, outcome, detail), decision

    def _answer(
        self, request: ControlRequest, *, operator_force: bool = False
    ) -> tuple[Verdict, Artifact | None]:
        request_id = request["id"]
        if request_id in self.handled:
            return Verdict(request_id, "skipped", "duplicate: request already answered"), None
        champion = self.champion
        if champion is None:
            return Verdict(request_id, "failed", "no champion model on the models topic"), None
        version = int(champion["model"]["version"])
        asked = request["model_version"]
        if isinstance(asked, int) and asked < version:
            return Verdict(
                request_id, "skipped", f"superseded: v{asked} already replaced by v{version}"
            ), None
        try:
            return self._challenge(request, champion, operator_force=operator_force)
        except (DataError, ValueError) as exc:
            return Verdict(request_id, "failed", f"cannot build a candidate: {exc}"), None

    def _challenge(
        self, request: ControlRequest, champion: Artifact, *, operator_force: bool = False
    ) -> tuple[Verdict, Artifact | None]:
        options = self.options
        members = champion["members"]
        rows = list(self.rows)
        since = request["since_ts"]
        if isinstance(since, int):
            # A rate change was located: learn the new regime only, if it has enough rows.
            recent = [row for row in rows if row["ts"] >= since]
            if len(recent) >= options.min_regime_rows:
                rows = recent
        table = rows_to_table(rows, members)
        n_gate = int(len(table) * options.gate_fraction)
        fit_part, gate = (
            table.rows(0, len(table) - n_gate),
            table.rows(len(table) - n_gate, len(table)),
        )
        if fit_part.positives < options.min_positives or gate.positives < 1:
            raise DataError(
                f"{fit_part.positives} positives to fit and {gate.positives} to gate on "
                f"in {len(table)} recent rows; need at least {options.min_positives} and 1"
            )
        objective = Objective(metric=options.metric)
        champion_model = CompiledModel.from_artifact(champion)
        champion_value = objective.value_at(
            gate.labels, champion_model.predict_proba(gate.votes), champion_model.threshold
        )
        kind = request["kind"]
        if kind == "label_shift":
            # Judged under the estimated prior: the gate rows re-weighted to it.
            challenge = label_shift_challenge(
                champion,
                fit_part,
                gate,
                prior=dict(request.get("prior") or {}),
                objective=objective,
                tolerance=options.gate_tolerance,
            )
            body, candidate_scores = challenge.candidate, challenge.candidate_scores
            champion_value, candidate_value = challenge.champion_value, challenge.candidate_value
        if kind == "retune":
            body, _ = retune_artifact(champion, fit_part, objective)
        elif kind == "retrain":
            body = self._retrain(champion, fit_part, table)
        candidate = CompiledModel.from_artifact(body)
        if kind != "label_shift":
            candidate_scores = candidate.predict_proba(gate.votes)
            candidate_value = objective.value_at(gate.labels, candidate_scores, candidate.threshold)
        # Only an operator bypasses the gate: the trainer's own --force, or a request signed
        # with the signing key (`metasignal control ... --force`). A bare force field on
        # control, which anyone with write access could set, is ignored and counted.
        forced = options.force or operator_force
        gate_block = {
            "metric": options.metric,
            "champion_version": champion["model"]["version"],
            "champion": champion_value,
            "candidate": candidate_value,
            "tolerance": options.gate_tolerance,
            "rows_fit": len(fit_part),
            "rows_gate": len(gate),
            "forced": forced,
        }
        request_id = str(request["id"])
        if kind == "label_shift":
            # Judged on what it changes: not significantly worse, calibration better.
            gate_block["label_shift"] = challenge.evidence
            if challenge.refusal is not None and not forced:
                detail = f"refused: {challenge.refusal}"
                log.warning("request %s %s", request_id, detail)
                return Verdict(request_id, "refused", detail, gate=gate_block), None
        elif candidate_value < champion_value - options.gate_tolerance and not forced:
            detail = (
                f"refused: candidate {options.metric} {candidate_value:.4f} < champion "
                f"{champion_value:.4f} on the {len(gate)} most recent rows"
            )
            log.warning("request %s %s", request_id, detail)
            return Verdict(request_id, "refused", detail, gate=gate_block), None
        # Then the skill gate: never published without skill, not even when forced.
        skill = gate_skill(gate, candidate_scores, candidate_value, objective)
        gate_block["skill"] = skill.to_dict()
        if not skill.skilled:
            gate_block["skill_reason"] = (
                "no_ranking_skill" if skill.ranking.p_value > skill.alpha else "abstain_better"
            )
            log.warning("request %s refused: %s", request_id, skill.reason)
            return Verdict(request_id, "refused", f"refused: {skill.reason}", gate=gate_block), None
        # Versions only go up, shadows included (a shadow may be newer than the champion).
        version = max(self.lineup.highest, int(champion["model"]["version"])) + 1
        body["model"] = {"name": options.model_name, "version": version}
        if options.shadow:
            body["stage"] = "shadow"  # scored beside the champion until a decision
        else:
            body.pop("stage", None)  # a candidate built from a promoted shadow serves
        body["created_at"] = (
            datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
        keys = ("id", "kind", "reason", "model_version", "evidence", "prior")
        body["request"] = {k: request[k] for k in keys if k in request}  # type: ignore[literal-required]
        body["gate"] = gate_block
        metrics = dict(body.get("metrics") or {})
        metrics["gate"] = holdout_metrics(gate.labels, candidate_scores, candidate.threshold)
        body["metrics"] = metrics
        body.pop("signature", None)
        artifact = sign_artifact(body, self.keys[0])
        detail = (
            f"published v{version}{' as a shadow' if options.shadow else ''}: candidate "
            f"{options.metric} {candidate_value:.4f} vs "
            f"champion {champion_value:.4f}"
        )
        return Verdict(request_id, "published", detail, version=version, gate=gate_block), artifact

    def _retrain(self, champion: Artifact, fit_part: VoteTable, table: VoteTable) -> Artifact:
        """Fit the configured strategy on the fit part; publish weights refitted on all rows."""
        options = self.options
        model = MetaModelClassifier(
            strategy=options.strategy, metric=options.metric, n_splits=options.splits
        ).fit(fit_part.votes, fit_part.labels, times=fit_part.time_ms)
        config = FitConfig(
            model_name=options.model_name,
            model_version=int(champion["model"]["version"]) + 1,
            missing_policy=champion["preprocessing"]["missing_policy"],
        )
        evidence = model.walk_forward_[model.strategy_]
        validation = {
            "metric": model.metric,
            "chosen": evidence.summary(),
            "oof_brier": float(
                np.mean((evidence.oof_scores - fit_part.labels[evidence.oof_index]) ** 2)
            ),
        }
        return build_artifact(
            model,
            table=fit_part,
            config=config,
            training_window=(int(fit_part.time_ms[0]), int(fit_part.time_ms[-1])),
            validation=validation,
            holdout=None,
            # A retrain changes the weights, not how the desk sizes its positions.
            sizing=SizingRule.from_dict(champion.get("sizing")),
        )

    def close(self) -> None:
        checkpoint = self._checkpoint
        if checkpoint is None:
            self._producer.close()
        elif not checkpoint.producer_lost:
            checkpoint.producer.close()
        for consumer in (self._models, self._training, self._control, self.evidence.consumer):
            if consumer is not None:
                consumer.close()
