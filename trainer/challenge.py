"""One champion/challenger round: build a candidate, gate it, say why it passes or not.

A request's candidate is built from the training window's older rows (the fit
part) and judged on the most recent rows it was not fitted on (the gate rows):

- ``retune`` keeps the champion's weights and refits its calibration and threshold
  (:func:`retune_artifact`); ``retrain`` fits the configured strategy anew
  (:func:`retrain_artifact`); ``label_shift`` corrects the champion's scores to the
  estimated prior (:func:`metasignal.trainer.label_shift.label_shift_challenge`).
- The champion gate: the candidate may not trail the champion by more than the
  tolerance on the gate rows (a label-shift candidate: not significantly worse, and
  better calibrated). Only an operator's force passes a candidate it refuses.
- The skill gate (:func:`gate_skill`): a candidate without evidence of skill on the
  gate rows is never published, not even when forced.

What passes is a :class:`Candidate`, unsigned and unversioned (publishing is
:mod:`metasignal.trainer.publish`); what does not is a :class:`Refusal`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasignal.stream.artifact import Artifact
from metasignal.stream.messages import ControlRequest
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.sizing import SizingRule
from metasignal.trainer.calibration import fit_platt
from metasignal.trainer.data import DataError, VoteTable
from metasignal.trainer.fit import FitConfig, build_artifact
from metasignal.trainer.label_shift import LabelShiftChallenge, label_shift_challenge
from metasignal.trainer.meta_model import MetaModelClassifier
from metasignal.trainer.objective import Objective
from metasignal.trainer.settings import TrainerOptions
from metasignal.trainer.skill import DEFAULT_ALPHA, SkillVerdict, assess_ranking, decide
from metasignal.trainer.walk_forward import abstain_value

__all__ = [
    "Candidate",
    "Refusal",
    "challenge",
    "gate_skill",
    "retrain_artifact",
    "retune_artifact",
    "split_for_gate",
]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A candidate past the gates: its unsigned body and its evidence on the gate rows."""

    body: Artifact
    gate_rows: VoteTable
    scores: np.ndarray
    threshold: float
    value: float
    champion_value: float
    gate: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a candidate is not published, with the gate's evidence."""

    detail: str
    gate: dict[str, Any]


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


def retrain_artifact(champion: Artifact, fit_part: VoteTable, options: TrainerOptions) -> Artifact:
    """Fit the configured strategy (walk-forward) on the fit part; sizing stays the champion's."""
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


def split_for_gate(
    table: VoteTable, *, gate_fraction: float, min_positives: int
) -> tuple[VoteTable, VoteTable]:
    """``(fit part, gate rows)``: the most recent ``gate_fraction`` of the rows is the gate.

    Raises :class:`DataError` when either part has too few positives to judge on.
    """
    n_gate = int(len(table) * gate_fraction)
    fit_part = table.rows(0, len(table) - n_gate)
    gate = table.rows(len(table) - n_gate, len(table))
    if fit_part.positives < min_positives or gate.positives < 1:
        raise DataError(
            f"{fit_part.positives} positives to fit and {gate.positives} to gate on "
            f"in {len(table)} recent rows; need at least {min_positives} and 1"
        )
    return fit_part, gate


@dataclass(frozen=True)
class _Built:
    body: Artifact
    scores: np.ndarray  # on the gate rows
    threshold: float
    value: float
    champion_value: float
    label_shift: LabelShiftChallenge | None = None


def _build(
    request: ControlRequest,
    champion: Artifact,
    fit_part: VoteTable,
    gate: VoteTable,
    options: TrainerOptions,
) -> _Built:
    """The request's candidate and both gate values on the gate rows."""
    objective = Objective(metric=options.metric)
    if request["kind"] == "label_shift":
        # Judged under the estimated prior: the gate rows re-weighted to it.
        shifted = label_shift_challenge(
            champion,
            fit_part,
            gate,
            prior=dict(request.get("prior") or {}),
            objective=objective,
            tolerance=options.gate_tolerance,
        )
        body = shifted.candidate
        threshold = CompiledModel.from_artifact(body).threshold
        return _Built(
            body,
            shifted.candidate_scores,
            threshold,
            shifted.candidate_value,
            shifted.champion_value,
            label_shift=shifted,
        )
    if request["kind"] == "retune":
        body, _ = retune_artifact(champion, fit_part, objective)
    elif request["kind"] == "retrain":
        body = retrain_artifact(champion, fit_part, options)
    else:
        raise ValueError(f"a {request['kind']} request builds no candidate")
    candidate = CompiledModel.from_artifact(body)
    champion_model = CompiledModel.from_artifact(champion)
    scores = candidate.predict_proba(gate.votes)
    return _Built(
        body,
        scores,
        candidate.threshold,
        objective.value_at(gate.labels, scores, candidate.threshold),
        objective.value_at(
            gate.labels, champion_model.predict_proba(gate.votes), champion_model.threshold
        ),
    )


def challenge(
    request: ControlRequest,
    champion: Artifact,
    table: VoteTable,
    *,
    options: TrainerOptions,
    forced: bool,
) -> Candidate | Refusal:
    """Build the request's candidate on ``table`` and put it through both gates.

    ``forced`` (an operator's force) passes the champion gate, never the skill gate.
    Raises :class:`DataError` or :class:`ValueError` when no candidate can be built.
    """
    fit_part, gate = split_for_gate(
        table, gate_fraction=options.gate_fraction, min_positives=options.min_positives
    )
    built = _build(request, champion, fit_part, gate, options)
    gate_block: dict[str, Any] = {
        "metric": options.metric,
        "champion_version": champion["model"]["version"],
        "champion": built.champion_value,
        "candidate": built.value,
        "tolerance": options.gate_tolerance,
        "rows_fit": len(fit_part),
        "rows_gate": len(gate),
        "forced": forced,
    }
    if built.label_shift is not None:
        # Judged on what it changes: not significantly worse, calibration better.
        gate_block["label_shift"] = built.label_shift.evidence
        if built.label_shift.refusal is not None and not forced:
            return Refusal(detail=f"refused: {built.label_shift.refusal}", gate=gate_block)
    elif built.value < built.champion_value - options.gate_tolerance and not forced:
        detail = (
            f"refused: candidate {options.metric} {built.value:.4f} < champion "
            f"{built.champion_value:.4f} on the {len(gate)} most recent rows"
        )
        return Refusal(detail=detail, gate=gate_block)
    # Then the skill gate: never published without skill, not even when forced.
    skill = gate_skill(gate, built.scores, built.value, Objective(metric=options.metric))
    gate_block["skill"] = skill.to_dict()
    if not skill.skilled:
        gate_block["skill_reason"] = (
            "no_ranking_skill" if skill.ranking.p_value > skill.alpha else "abstain_better"
        )
        return Refusal(detail=f"refused: {skill.reason}", gate=gate_block)
    return Candidate(
        body=built.body,
        gate_rows=gate,
        scores=built.scores,
        threshold=built.threshold,
        value=built.value,
        champion_value=built.champion_value,
        gate=gate_block,
    )
