"""``metasignal trainer``: answers drift requests with gated, signed models.

The trainer consumes the one-partition ``control`` topic in a consumer group,
so exactly one trainer is active and a standby takes over when it dies. For
each request it takes the recent window of joined rows from ``training``,
re-tunes the champion (calibration intercept and threshold) or retrains it,
and compares candidate and champion on the most recent rows the candidate was
not fitted on. A candidate without evidence of skill on those rows is never
published (:func:`~metasignal.trainer.challenge.gate_skill`, counted by reason);
one that is not worse than the champion is published to ``models``.

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

Each concern has its module; :class:`TrainerService` is the loop and its lifecycle:

- ``published.py``: the lineup and the answered request ids, read from ``models``;
- ``window.py``: the training window, read from ``training``;
- ``answer.py``: one request: skipped, or built, gated and made publishable;
- ``challenge.py``: candidates (re-tune, retrain, label shift) and both gates;
- ``publish.py``: an artifact's version, shadow stage and signature; records on ``models``;
- ``shadow_referee.py``: shadow evidence in, signed promote/retire/rollback out;
- ``control_position.py``: the control offset, committed in one transaction with each answer;
- ``intake.py``: records refused with a reason; control requests and their force;
- ``telemetry.py``: the ``metasignal_trainer_*`` metrics;
- ``verdict.py``: what became of a request; the status line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from metasignal.stream.artifact import Artifact
from metasignal.stream.errors import ArtifactError
from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.lineup import Lineup
from metasignal.stream.messages import (
    DECISION_KINDS,
    ControlRequest,
    ShadowDecision,
    TrainingRow,
)
from metasignal.stream.metrics import Heartbeat
from metasignal.stream.outage import BROKER_UNREACHABLE, PRODUCER_RECREATING, Outage
from metasignal.stream.status import StatusClock
from metasignal.stream.transport.base import OTHER, Record, Transport, TransportError
from metasignal.trainer.answer import answer_request
from metasignal.trainer.control_position import ControlPosition
from metasignal.trainer.intake import Intake
from metasignal.trainer.publish import artifact_message, decision_message
from metasignal.trainer.published import PublishedModels
from metasignal.trainer.settings import TRAINER_SETTINGS, TrainerOptions
from metasignal.trainer.shadow_referee import ShadowReferee, shadow_judge
from metasignal.trainer.telemetry import TrainerMetrics
from metasignal.trainer.verdict import Verdict, status_line
from metasignal.trainer.window import TrainingWindow

__all__ = ["TRAINER_SETTINGS", "TrainerMetrics", "TrainerOptions", "TrainerService", "Verdict"]

log = logging.getLogger("metasignal.trainer")


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
        self.options = options
        self.keys = list(keys)
        self.metrics = metrics or TrainerMetrics()
        # A retrain may take minutes: liveness allows for it, a wedged loop still fails.
        self.heartbeat = Heartbeat(max_silence_s=900.0)
        self.verdicts: list[Verdict] = []
        self.intake = Intake(
            keys=self.keys,
            refused=self.metrics.refused,
            force_refused=self.metrics.force_refused,
        )
        topics = options.topics
        self.published = PublishedModels(
            consumer=transport.consumer(assign_all=[topics.models], read_committed=True),
            model_name=options.model_name,
            keys=self.keys,
            on_refused=self.intake.refuse,
        )
        self.window = TrainingWindow(
            consumer=transport.consumer(assign_all=[topics.training], read_committed=True),
            max_rows=options.window_rows,
            on_refused=self.intake.refuse,
        )
        # Every scorer's per-partition shadow counts (trainer/shadow.py judges their sum).
        self.evidence = EvidenceLog(
            transport.consumer(assign_all=[topics.evidence], read_committed=True),
            keys=self.keys,
            on_refused=lambda record, bad: self.intake.refuse(record, bad.reason, bad.detail),
        )
        self.judge = shadow_judge(options)
        self.referee = ShadowReferee(
            evidence=self.evidence,
            judge=self.judge,
            published=self.published,
            key=self.keys[0],
            outcomes=self.metrics.shadow_outcomes,
        )
        self.control = ControlPosition(
            transport=transport,
            control_topic=topics.control,
            models_topic=topics.models,
            group_id=options.group_id,
            transactional_id=options.transactional_id,
            on_recreate=self.metrics.outage.recreations.inc,
        )
        self._status = StatusClock(options.status_interval_s, now=time.monotonic())
        self.outage = Outage(on_change=self.metrics.outage.set)
        self.metrics.outage.probe(self._broker_ok)

    # -- state -----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """The loop is alive and the broker answers (``/readyz``)."""
        return self.heartbeat.alive() and self._broker_ok()

    def _broker_ok(self) -> bool:
        """No outage noticed by the loop, and (asked live) a broker connection is up."""
        return self.outage.ok and self.control.reachable()

    @property
    def lineup(self) -> Lineup:
        """Champion and shadow, as the ``models`` topic says (artifacts and decisions)."""
        return self.published.lineup

    @property
    def handled(self) -> set[str]:
        """Ids of the requests answered already (on ``models``)."""
        return self.published.handled

    @property
    def rows(self) -> deque[TrainingRow]:
        """The training window's rows (benchmarks fill it directly)."""
        return self.window.rows

    @property
    def champion(self) -> Artifact | None:
        """The model serving, as the ``models`` topic says (artifacts and decisions)."""
        return self.published.lineup.champion

    @champion.setter
    def champion(self, artifact: Artifact | None) -> None:
        """Serve ``artifact`` as if the topic held it alone (benchmarks answer requests so)."""
        self.published.serve_alone(artifact)

    def refresh(self) -> None:
        """Catch up with published models (champion, answered requests) and training rows."""
        self.published.catch_up()
        self.window.catch_up()

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> int:
        """Answer the next control request, if any; an outage is waited out (bounded backoff)."""
        self.heartbeat.beat()
        try:
            return self._serve()
        except TransportError as exc:
            if exc.kind == OTHER:
                raise
            self._broker_down(exc)
            time.sleep(self.outage.backoff())
            return 0

    def _serve(self) -> int:
        records = self.control.poll(timeout_ms=self.options.poll_timeout_ms)
        for record in records:
            if self.handle(record).outcome == "retry":
                # Not committed: read again after a bounded wait (the broker is away).
                time.sleep(self.outage.backoff())
                return 0
        judged = self.judge_evidence()
        if judged is not None and judged.outcome == "retry":
            time.sleep(self.outage.backoff())
            return 0
        self.outage.probed(self.control.reachable())
        self._log_status()
        return len(records)

    def handle(self, record: Record) -> Verdict:
        """Answer one control request and commit it, atomically with any published model."""
        started = time.perf_counter()
        try:
            self.refresh()
        except TransportError as exc:
            # The models or training topic cannot be read: answer this request later.
            self.control.read_again(record)
            self.outage.down(BROKER_UNREACHABLE, str(exc))
            return Verdict(f"offset-{record.offset}", "retry", str(exc))
        request = self.intake.request(record)
        operator_force = request is not None and self.intake.operator_force(record)
        kind = "invalid" if request is None else request["kind"]
        request_id = f"offset-{record.offset}" if request is None else request["id"]
        log.info("handling request %s (%s)", request_id, kind)
        self.metrics.requests.labels(kind=kind).inc()
        artifact: Artifact | None = None
        decision: ShadowDecision | None = None
        if request is None:
            verdict = Verdict(request_id, "failed", "invalid request")
        elif request["kind"] in DECISION_KINDS:
            verdict, decision = self.referee.answer(request)
        else:
            verdict, artifact = self._answer(request, operator_force=operator_force)
        messages = [artifact_message(artifact)] if artifact is not None else []
        if decision is not None:
            messages.append(decision_message(decision))
        try:
            self.control.publish(messages, answered=record)
        except TransportError as exc:
            log.error("could not publish the answer to %s: %s", verdict.request_id, exc)
            outcome = "retry" if self._publish_failed(exc) else "failed"
            return Verdict(verdict.request_id, outcome, str(exc))
        if messages:
            self.published.published(verdict.request_id, artifact, decision)
        return self._answered(verdict, kind, started=started)

    def judge_evidence(self) -> Verdict | None:
        """New evidence: the sequential test on the sum; a verdict is published, signed, in a
        transaction with the control position (so only the active trainer, fencing the
        standby, decides). ``None`` when there is nothing to decide."""
        if not self.control.active:
            return None  # a standby: whoever owns control judges
        ruling = self.referee.rule()
        if ruling is None:
            return None
        judgement, decision = ruling.judgement, ruling.decision
        evidence_topic = self.options.topics.evidence
        try:
            self.control.publish(
                [] if decision is None else [decision_message(decision)],
                answered=None,
                tombstones=[(evidence_topic, key) for key in ruling.finished],
            )
        except TransportError as exc:
            self.referee.judge_again = True
            what = "evidence tombstones" if judgement is None else f"{judgement.kind} decision"
            log.error("could not publish the %s: %s", what, exc)
            self._publish_failed(exc)
            return Verdict(ruling.request_id, "retry", str(exc))
        self.referee.evidence.forget(ruling.finished)
        if judgement is None or decision is None:
            return None
        self.published.published(ruling.request_id, None, decision)
        if judgement.kind == "rollback":
            # The runbook's MetasignalChampionRolledBack (the alert on this rollback).
            log.warning("rolling back: %s", ruling.detail)
        else:
            log.info("shadow decision: %s", ruling.detail)
        verdict = Verdict(ruling.request_id, "published", ruling.detail)
        self.metrics.count(verdict, judgement.kind)
        self.verdicts.append(verdict)
        return verdict

    def _answer(
        self, request: ControlRequest, *, operator_force: bool = False
    ) -> tuple[Verdict, Artifact | None]:
        """A re-tune, retrain or label-shift request (trainer/answer.py; benchmarks call it)."""
        return answer_request(
            request,
            published=self.published,
            window=self.window,
            options=self.options,
            key=self.keys[0],
            operator_force=operator_force,
        )

    def _answered(self, verdict: Verdict, kind: str, *, started: float) -> Verdict:
        self.metrics.count(verdict, kind)
        self.metrics.duration.observe(time.perf_counter() - started)
        self.verdicts.append(verdict)
        log.info(
            "request %s (%s): %s — %s", verdict.request_id, kind, verdict.outcome, verdict.detail
        )
        return verdict

    # -- failures ------------------------------------------------------------------------
    def _publish_failed(self, exc: TransportError) -> bool:
        """Count a failed publish (rolled back); True when the broker is away (retry)."""
        self.metrics.failures.inc()
        if exc.kind == OTHER:
            return False
        self._broker_down(exc)
        return True

    def _broker_down(self, exc: TransportError) -> None:
        lost = self.control.producer_lost
        self.outage.down(PRODUCER_RECREATING if lost else BROKER_UNREACHABLE, str(exc))

    # -- lifecycle -----------------------------------------------------------------------
    def _log_status(self) -> None:
        if self._status.due(now=time.monotonic()) is None:
            return
        champion = self.champion
        version = None if champion is None else int(champion["model"]["version"])
        log.info(status_line(self.verdicts, champion=version))

    def close(self) -> None:
        self.control.close()
        for consumer in (self.published.consumer, self.window.consumer, self.evidence.consumer):
            consumer.close()
