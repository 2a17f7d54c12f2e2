"""``auto`` and ``select``: choosing a strategy from walk-forward evidence.

Examples
--------
>>> guard_choice("focal_loss", [0.30, 0.32, 0.31], [0.40, 0.41, 0.39])[0]
'optimal_threshold'
>>> guard_choice("focal_loss", [0.40, 0.42, 0.41], [0.40, 0.41, 0.42])[0]
'focal_loss'
>>> beats_abstain([0.02, -0.01, 0.01], [0.0, 0.0, 0.0])[0]
False
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from metasignal.trainer.walk_forward import WalkForwardResult

ANCHOR = "optimal_threshold"
ABSTAIN = "abstain"


def beats_abstain(values: Sequence[float], abstain_values: Sequence[float]) -> tuple[bool, str]:
    """Whether trading beats never trading by more than fold noise.

    ``abstain_values`` are the objective of never trading on each fold (0 for F1,
    precision, recall and profit). The test is the one :func:`select_best` applies
    against the anchor: the mean paired fold difference must exceed its standard
    deviation, otherwise abstention is as good and no model should trade.
    """
    diff = np.asarray(values, dtype=np.float64) - np.asarray(abstain_values, dtype=np.float64)
    mean = float(diff.mean())
    noise = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    evidence = f"mean fold value {mean:+.4f} over {ABSTAIN} (never trade), fold noise {noise:.4f}"
    if mean > noise:
        return True, f"beats {ABSTAIN}: {evidence}"
    return False, f"{ABSTAIN} (never trade) is as good: {evidence}"


def guard_choice(
    rule_choice: str, rule_values: Sequence[float], anchor_values: Sequence[float]
) -> tuple[str, str]:
    """Keep the rule's choice unless it loses to the anchor by more than fold noise.

    Fold noise is the standard deviation of the paired per-fold differences: a
    loss smaller than that is indistinguishable from luck, so the rule stands.
    """
    diff = np.asarray(rule_values) - np.asarray(anchor_values)
    mean = float(diff.mean())
    noise = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    evidence = f"mean fold difference {mean:+.4f} vs {ANCHOR}, fold noise {noise:.4f}"
    if mean < -noise:
        return ANCHOR, f"guard: {rule_choice} worse than {ANCHOR} beyond fold noise ({evidence})"
    return rule_choice, f"guard kept {rule_choice} ({evidence})"


def select_best(results: Mapping[str, WalkForwardResult]) -> tuple[str, str]:
    """The best pooled walk-forward value, if it beats the anchor by more than one standard error.

    Strategies are ranked by their pooled objective (every fold's decisions at its honest
    threshold, confusion counts summed before the ratio: with a few trades per fold the mean
    of per-fold F1 swings on single trades; :func:`metasignal.trainer.walk_forward.pooled_value`),
    or by the mean fold value where no pooled value exists. A leader stays only if its lead
    over ``optimal_threshold`` exceeds one standard error of the paired per-fold differences
    (the one-standard-error rule, Hastie, Tibshirani and Friedman, *The Elements of
    Statistical Learning*, 7.10): a smaller lead is as likely luck as merit, and the anchor
    stays.
    """

    def value(r: WalkForwardResult) -> float:
        return r.pooled if np.isfinite(r.pooled) else r.mean

    best = max(results.values(), key=value)
    table = ", ".join(
        f"{name} {value(r):.4f} (folds {r.mean:.4f}±{r.std:.4f})" for name, r in results.items()
    )
    anchor = results.get(ANCHOR)
    if anchor is None or best is anchor:
        return best.strategy, f"select: best pooled walk-forward value ({table})"
    diff = np.asarray(best.fold_values) - np.asarray(anchor.fold_values)
    error = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    lead = value(best) - value(anchor)
    if lead <= error:
        return ANCHOR, (
            f"select: {best.strategy} leads {ANCHOR} by {lead:+.4f}, within one standard error "
            f"{error:.4f} of the fold differences; keeping {ANCHOR} ({table})"
        )
    return best.strategy, (
        f"select: {best.strategy} beats {ANCHOR} by {lead:+.4f} > one standard error "
        f"{error:.4f} of the fold differences ({table})"
    )
