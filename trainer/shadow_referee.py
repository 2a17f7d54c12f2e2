"""The active trainer's shadow decisions: evidence in, signed promote/retire/rollback out.

Every scorer writes its per-partition counts for the champion/shadow pair to the
compacted ``evidence`` topic (:class:`metasignal.stream.evidence.EvidenceLog`). The
referee adds them up and runs one sequential test on the sum
(:class:`metasignal.trainer.shadow.ShadowJudge`); once the test decides, it hands
back the signed decision for the trainer to publish with its control position, so
only the replica owning ``control`` (fencing the standby) decides. A promote, retire
or rollback asked for on ``control`` is answered from the same judgement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import Gauge

from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.messages import ControlRequest, ShadowDecision
from metasignal.trainer.published import PublishedModels
from metasignal.trainer.settings import TrainerOptions
from metasignal.trainer.shadow import (
    Judgement,
    ShadowJudge,
    answer_shadow_request,
    finished_keys,
    sign_judgement,
)
from metasignal.trainer.verdict import Verdict

__all__ = ["Ruling", "ShadowReferee", "shadow_judge"]

log = logging.getLogger("metasignal.trainer")


def shadow_judge(options: TrainerOptions) -> ShadowJudge:
    """The sequential test the trainer's shadow settings describe."""
    return ShadowJudge(
        alpha=options.shadow_alpha,
        margin=options.shadow_margin,
        min_outcomes=options.shadow_min_outcomes,
        max_outcomes=options.shadow_max_outcomes,
        look_every=options.shadow_look_every,
        rollback_outcomes=options.rollback_outcomes,
        min_improvement=options.shadow_min_improvement or None,  # 0: no futility stop
    )


@dataclass(frozen=True)
class Ruling:
    """A decided judgement and its signed decision record (``None`` for both when there is
    only evidence to tombstone), and the ``evidence`` keys of pairs that are over: the
    decided one and any whose lineup has moved on (tombstoned with the decision)."""

    judgement: Judgement | None
    decision: ShadowDecision | None
    finished: list[bytes]

    @property
    def request_id(self) -> str:
        return "evidence:tombstones" if self.decision is None else self.decision["request_id"]

    @property
    def detail(self) -> str:
        if self.judgement is None:
            return f"{len(self.finished)} finished evidence keys tombstoned"
        return f"{self.judgement.kind}: {self.judgement.reason}"


class ShadowReferee:
    """Judges the summed shadow evidence of the lineup's pair and signs what it decides."""

    def __init__(
        self,
        *,
        evidence: EvidenceLog,
        judge: ShadowJudge,
        published: PublishedModels,
        key: bytes,
        outcomes: Gauge,
    ) -> None:
        self.evidence = evidence
        self.judge = judge
        self.published = published
        self.key = key
        self.outcomes = outcomes
        self.judge_again = True  # read the evidence at start-up; again after a failed publish

    def judgement(self) -> Judgement | None:
        """What every partition's latest evidence for the lineup's pair supports, if decided."""
        lineup = self.published.lineup
        champion, shadow, _ = lineup.versions
        summed = self.evidence.summed(self.published.model_name, champion or 0, shadow or 0)
        judgement = self.judge.judge(lineup, summed)
        self.outcomes.set(self.judge.n_outcomes)
        return judgement

    def rule(self) -> Ruling | None:
        """On new evidence (or when asked to judge again): the signed decision the test
        reaches and the evidence keys to tombstone; ``None`` when there is neither."""
        if not self.evidence.poll() and not self.judge_again:
            return None
        self.judge_again = False
        self.published.catch_up()
        judgement = self.judgement()
        lineup = self.published.lineup
        finished = finished_keys(self.evidence, lineup, judgement)
        if judgement is None and not finished:
            return None
        decision = None if judgement is None else sign_judgement(judgement, lineup, key=self.key)
        return Ruling(judgement, decision, finished)

    def answer(self, request: ControlRequest) -> tuple[Verdict, ShadowDecision | None]:
        """A shadow request: the signed decision if the referee's own judgement of the
        summed evidence for the current state is that decision (trainer/shadow.py)."""
        request_id = request["id"]
        if request_id in self.published.handled:
            return Verdict(request_id, "skipped", "duplicate: request already answered"), None
        self.evidence.catch_up()
        outcome, detail, decision = answer_shadow_request(
            request, self.published.lineup, self.judgement(), key=self.key
        )
        if outcome == "published" and request["kind"] == "rollback":
            log.warning("rolling back: %s", detail)
        return Verdict(request_id, outcome, detail), decision
