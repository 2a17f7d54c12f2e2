"""The skill gate: no evidence that the committee beats no skill, no model.

Evidence comes from the walk-forward out-of-fold scores of the training period
(never from the holdout) and has two parts, both required:

1. **Ranking skill.** The average precision (PR-AUC) of the out-of-fold scores
   against what scores without information get, the base rate. The p-value is
   a *rotation* permutation test that respects time order: the label sequence is
   shifted circularly against the score sequence by a random offset, which
   breaks any link between scores and labels while keeping the serial
   dependence (regimes, clustered positives) of both. ``lift`` is
   ``AP / base rate`` with a block-bootstrap interval over time blocks.
2. **Beating abstention.** The chosen strategy's fold values at its threshold
   must beat never trading (an F1, precision, recall or profit of 0) by more
   than the fold noise (:func:`metasignal.trainer.selection.beats_abstain`).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = (rng.random(4000) < 0.05).astype(int)
>>> noise = rng.random(4000)
>>> assess_ranking(y, noise, np.arange(4000)).p_value > 0.001
True
>>> skilled = noise + 0.8 * y
>>> assess_ranking(y, skilled, np.arange(4000)).p_value
0.0005
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from metasignal.stream.errors import MetasignalError
from metasignal.trainer.purge import time_blocks
from metasignal.trainer.resample import DEFAULT_BLOCKS, interval
from metasignal.trainer.thresholds import average_precision

__all__ = [
    "EXIT_NO_SKILL",
    "NoSkillError",
    "RankingEvidence",
    "SkillVerdict",
    "assess_ranking",
    "decide",
]

# Exit code of `metasignal fit` when the committee shows no evidence of skill.
EXIT_NO_SKILL: Final = 3
# Refusing noise reliably is the point: at 0.01 one committee without information in a
# hundred is published (the trainer benchmark saw 1 of 20 slip through at p = 0.009); at
# 0.001 one in a thousand. 1999 rotations put the smallest p-value (1/2000) below it.
DEFAULT_ALPHA: Final = 0.001
DEFAULT_PERMUTATIONS: Final = 1999
_BATCH: Final = 64


class NoSkillError(MetasignalError):
    """The committee shows no evidence of skill; ``report`` is what ``fit`` found."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


def _hits(ends: NDArray[np.integer]) -> NDArray[np.float64]:
    """Per row of sorted ``ends``: how many entries are <= each entry (ties count fully)."""
    count = ends.shape[-1]
    tied = ends[..., 1:] == ends[..., :-1]
    if not tied.any():
        # Distinct scores (the usual case): the count is the position.
        return np.broadcast_to(np.arange(1.0, count + 1.0), ends.shape)
    last_of_tie = np.concatenate([~tied, np.ones((*ends.shape[:-1], 1), dtype=bool)], axis=-1)
    position = np.where(last_of_tie, np.arange(1, count + 1), count + 1)
    return np.minimum.accumulate(position[..., ::-1], axis=-1)[..., ::-1].astype(np.float64)


def _rotated_average_precisions(
    positive_rows: NDArray[np.int64],
    shifts: NDArray[np.int64],
    run_end_twice: NDArray[np.int32],
) -> NDArray[np.float64]:
    """AP after moving every positive from row ``i`` to ``(i + shift) % n``, per shift.

    Only the positives matter: a positive whose tie run ends at rank ``e`` contributes
    the precision there, ``#{positives with run end <= e} / (e + 1)``. ``run_end_twice``
    is each row's tie-run end, the sequence written twice so a rotation is a plain
    gather; int32 halves the sort (O(P log P) a shift).
    """
    ends = np.sort(run_end_twice[positive_rows[None, :] + shifts[:, None]], axis=1)
    hits = _hits(ends)
    return np.asarray((hits / (ends + 1.0)).mean(axis=1), dtype=np.float64)


def _lift_interval(
    y: NDArray[np.integer],
    rank: NDArray[np.int64],
    run_end_of_rank: NDArray[np.int64],
    blocks: NDArray[np.int64],
    rng: np.random.Generator,
    n_resamples: int = 400,
) -> tuple[float, float]:
    """Block-bootstrap interval of ``AP / base rate``, without re-sorting per resample.

    A resample counts block ``b`` ``w_b`` times, so every count in AP is a weighted sum
    over blocks: we precompute, for each positive's tie-run end ``e``, how many rows and
    positives of each block rank at or above ``e``, and each resample is a product.
    """
    n_blocks = int(blocks.max()) + 1
    positive_rows = np.flatnonzero(y)
    ends = run_end_of_rank[rank[positive_rows]]
    rows_above = np.empty((ends.size, n_blocks))
    positives_above = np.empty((ends.size, n_blocks))
    for b in range(n_blocks):
        members = blocks == b
        rows_above[:, b] = np.searchsorted(np.sort(rank[members]), ends, side="right")
        pos_ranks = np.sort(ends[blocks[positive_rows] == b])
        positives_above[:, b] = np.searchsorted(pos_ranks, ends, side="right")
    sizes = np.bincount(blocks, minlength=n_blocks)
    block_positives = np.bincount(blocks[positive_rows], minlength=n_blocks)
    draws = rng.integers(0, n_blocks, size=(n_resamples, n_blocks))
    weights = np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype(np.float64)
    own = weights[:, blocks[positive_rows]]  # (resamples, positives)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = (weights @ positives_above.T) / (weights @ rows_above.T)
        ap = (own * precision).sum(axis=1) / own.sum(axis=1)
        base = (weights @ block_positives) / (weights @ sizes)
        return interval(ap / base)


@dataclass(frozen=True)
class RankingEvidence:
    """Average precision against the base rate, with its interval and p-value.

    ``null_pr_auc`` is the mean AP of the rotated (information-free) label sequences:
    on a finite sample it sits slightly above the base rate, which is why the p-value
    comes from the rotations and not from the lift interval alone.
    """

    pr_auc: float
    base_rate: float
    lift: float
    lift_interval: tuple[float, float]
    null_pr_auc: float
    p_value: float
    n_permutations: int
    rows: int
    positives: int


def assess_ranking(
    y: NDArray[np.integer],
    scores: NDArray[np.floating],
    times: NDArray[np.integer],
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> RankingEvidence:
    """Rotation-permutation test and block-bootstrap lift of the average precision.

    Rows must be in time order. Offsets are drawn from the middle 90 % of the
    sequence so no rotation is close to the identity.
    """
    y = np.asarray(y).astype(np.int8)
    scores = np.asarray(scores, dtype=np.float64)
    n = y.size
    order = np.argsort(-scores, kind="stable")
    s_desc = scores[order]
    run_ends = np.append(np.flatnonzero(s_desc[1:] != s_desc[:-1]), n - 1)
    observed = average_precision(y, scores)
    base_rate = float(y.mean())
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    run_end_of_rank = np.repeat(run_ends, np.diff(run_ends, prepend=-1))
    positive_rows = np.flatnonzero(y)
    rng = np.random.default_rng(seed)
    margin = max(1, n // 20)
    shifts = rng.integers(margin, max(n - margin, margin + 1), size=n_permutations)
    run_end_of_row = run_end_of_rank[rank].astype(np.int32 if n < 2**31 else np.int64)
    run_end_twice = np.concatenate([run_end_of_row, run_end_of_row])
    exceed, null_total = 0, 0.0
    for start in range(0, n_permutations, _BATCH):
        rotated = _rotated_average_precisions(
            positive_rows, shifts[start : start + _BATCH], run_end_twice
        )
        exceed += int((rotated >= observed - 1e-12).sum())
        null_total += float(rotated.sum())
    lift_interval = _lift_interval(
        y, rank, run_end_of_rank, time_blocks(np.asarray(times), DEFAULT_BLOCKS), rng
    )
    return RankingEvidence(
        pr_auc=observed,
        base_rate=base_rate,
        lift=observed / base_rate if base_rate else float("nan"),
        lift_interval=lift_interval,
        null_pr_auc=null_total / n_permutations,
        p_value=(1 + exceed) / (1 + n_permutations),
        n_permutations=n_permutations,
        rows=n,
        positives=int(y.sum()),
    )


@dataclass(frozen=True)
class SkillVerdict:
    """The gate's decision and the evidence it rests on."""

    skilled: bool
    reason: str
    ranking: RankingEvidence
    alpha: float
    beats_abstain: bool
    abstain_detail: str
    overridden: bool = False

    @property
    def verdict(self) -> str:
        if self.skilled:
            return "skill"
        return "no skill (overridden by --allow-no-skill)" if self.overridden else "no skill"

    def to_dict(self) -> dict[str, Any]:
        ranking = asdict(self.ranking)
        ranking["lift_interval"] = list(self.ranking.lift_interval)
        return {
            "verdict": self.verdict,
            "skilled": self.skilled,
            "reason": self.reason,
            "overridden": self.overridden,
            "test": "average precision of walk-forward out-of-fold scores vs the base rate; "
            "p-value from a rotation permutation test (labels shifted circularly against "
            "scores, time order kept); lift interval from a block bootstrap over time blocks",
            "alpha": self.alpha,
            **ranking,
            "beats_abstain": self.beats_abstain,
            "abstain": self.abstain_detail,
        }


def decide(
    ranking: RankingEvidence, *, alpha: float, beats_abstain: bool, abstain_detail: str
) -> SkillVerdict:
    """Skill needs a significant ranking lift and a strategy that beats never trading."""
    evidence = (
        f"out-of-fold PR-AUC {ranking.pr_auc:.4f} vs base rate {ranking.base_rate:.4f} "
        f"(lift {ranking.lift:.2f}, 95% interval {ranking.lift_interval[0]:.2f}-"
        f"{ranking.lift_interval[1]:.2f}, p = {ranking.p_value:.3g}, "
        f"{ranking.positives} positives)"
    )
    if ranking.p_value > alpha:
        reason = f"no evidence of skill: {evidence}, p above {alpha:g}"
        return SkillVerdict(False, reason, ranking, alpha, beats_abstain, abstain_detail)
    if not beats_abstain:
        reason = f"no evidence of skill: {abstain_detail} ({evidence})"
        return SkillVerdict(False, reason, ranking, alpha, beats_abstain, abstain_detail)
    return SkillVerdict(True, f"skill: {evidence}", ranking, alpha, True, abstain_detail)
