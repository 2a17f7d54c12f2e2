"""Answering one re-tune, retrain or label-shift request: a verdict and what to publish.

A request already answered (by id) or about a superseded model version is skipped, so
duplicate requests give one new model. Otherwise the request's candidate is built
from the training window and put through the champion and skill gates
(:mod:`metasignal.trainer.challenge`); a candidate that passes is versioned, staged
and signed (:mod:`metasignal.trainer.publish`). Nothing is sent here: the trainer
publishes the artifact in one transaction with the request's control offset.
"""

from __future__ import annotations

import logging

from metasignal.stream.artifact import Artifact
from metasignal.stream.messages import ControlRequest
from metasignal.trainer.challenge import Refusal, challenge
from metasignal.trainer.data import DataError
from metasignal.trainer.publish import next_version, publishable_artifact
from metasignal.trainer.published import PublishedModels
from metasignal.trainer.settings import TrainerOptions
from metasignal.trainer.verdict import Verdict
from metasignal.trainer.window import TrainingWindow

__all__ = ["answer_request"]

log = logging.getLogger("metasignal.trainer")


def answer_request(
    request: ControlRequest,
    *,
    published: PublishedModels,
    window: TrainingWindow,
    options: TrainerOptions,
    key: bytes,
    operator_force: bool = False,
) -> tuple[Verdict, Artifact | None]:
    """The verdict on ``request`` and the signed artifact to publish (``None``: nothing).

    Only an operator bypasses the champion gate: the trainer's own ``--force``, or a
    request signed with the signing key (``operator_force``, trainer/control.py).
    """
    request_id = str(request["id"])
    if request_id in published.handled:
        return Verdict(request_id, "skipped", "duplicate: request already answered"), None
    champion = published.lineup.champion
    if champion is None:
        return Verdict(request_id, "failed", "no champion model on the models topic"), None
    version = int(champion["model"]["version"])
    asked = request["model_version"]
    if isinstance(asked, int) and asked < version:
        return Verdict(
            request_id, "skipped", f"superseded: v{asked} already replaced by v{version}"
        ), None
    try:
        table = window.table(
            champion["members"],
            since_ts=request["since_ts"],
            min_regime_rows=options.min_regime_rows,
        )
        candidate = challenge(
            request, champion, table, options=options, forced=options.force or operator_force
        )
    except (DataError, ValueError) as exc:
        return Verdict(request_id, "failed", f"cannot build a candidate: {exc}"), None
    if isinstance(candidate, Refusal):
        log.warning("request %s %s", request_id, candidate.detail)
        return Verdict(request_id, "refused", candidate.detail, gate=candidate.gate), None
    new_version = next_version(published.lineup, champion)
    artifact = publishable_artifact(
        candidate,
        request,
        model_name=options.model_name,
        version=new_version,
        shadow=options.shadow,
        key=key,
    )
    detail = (
        f"published v{new_version}{' as a shadow' if options.shadow else ''}: candidate "
        f"{options.metric} {candidate.value:.4f} vs champion {candidate.champion_value:.4f}"
    )
    return Verdict(
        request_id, "published", detail, version=new_version, gate=candidate.gate
    ), artifact
