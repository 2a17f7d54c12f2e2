"""Position size: how much of the allowed position a trade signal takes, in ``[0, 1]``.

The meta-model decides *whether* to trade (calibrated probability ``p`` at or above the
threshold ``p*``); the sizing rule decides *how much*. One formula, used by the trainer (for
its report) and by the scorer (for every signal), so the two agree exactly.

Rules (``method``):

``probability``
    López de Prado's bet size (*Advances in Financial Machine Learning*, ch. 10):
    ``size = 2 Φ(z) − 1`` with ``z = (p − p*) / sqrt(p (1 − p))``, the test statistic of
    ``p`` against the threshold. It is 0 at the threshold and grows towards 1 as the
    evidence for the trade firms up; ``2 Φ(z) − 1`` is computed as ``erf(z / √2)``.
``kelly``
    Fractional Kelly for a bet that wins ``payoff_ratio`` per unit it can lose:
    ``size = fraction × (p − (1 − p) / payoff_ratio)``. The ratio comes from a payoff column
    (:func:`estimate_payoff_ratio`), ``--payoff-ratio``, or ``gain / cost``. Where Kelly sees
    no edge (a threshold below break-even ``1 / (1 + payoff_ratio)``) the size is 0.
``fixed``
    All or nothing: every trade takes the cap. Artifacts written before sizing existed
    are read with this rule, so their signals keep their meaning.

Every rule is then clipped to ``[0, cap]`` and, with ``step > 0``, rounded down to a
multiple of ``step`` (a discrete size ladder keeps tiny changes in ``p`` from churning
positions). No trade (``p < p*``) always has size 0.

Examples
--------
>>> import numpy as np
>>> rule = SizingRule(method="probability", cap=0.8)
>>> rule.size(np.array([0.05, 0.2, 0.5, 0.99]), threshold=0.2).round(4).tolist()
[0.0, 0.0, 0.4515, 0.8]
>>> SizingRule(method="kelly", payoff_ratio=2.0, fraction=0.5).size(
...     np.array([0.3, 0.5]), threshold=0.3).tolist()
[0.0, 0.125]
>>> SizingRule.from_dict(rule.to_dict()) == rule
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Required, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

__all__ = ["SIZING_METHODS", "SizingRule", "estimate_payoff_ratio", "resolve_sizing"]

SIZING_METHODS: Final[tuple[str, ...]] = ("probability", "kelly", "fixed")


class SizingBlock(TypedDict, total=False):
    """An artifact's ``sizing`` block: what :meth:`SizingRule.to_dict` writes."""

    method: Required[str]
    cap: Required[float]
    step: Required[float]
    fraction: float  # kelly only
    payoff_ratio: float | None  # kelly only


@dataclass(frozen=True, kw_only=True)
class SizingRule:
    """A position-size rule; see the module docstring for the formulas.

    Parameters
    ----------
    method
        One of :data:`SIZING_METHODS`.
    cap
        Largest size a signal may carry, in ``(0, 1]``.
    step
        Size ladder: sizes are rounded down to a multiple of ``step`` (0: continuous).
    fraction
        ``kelly`` only: the fraction of the full Kelly stake, in ``(0, 1]``.
    payoff_ratio
        ``kelly`` only (required there): mean win over mean loss of a trade, ``> 0``.
    """

    method: str = "probability"
    cap: float = 1.0
    step: float = 0.0
    fraction: float = 0.5
    payoff_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.method not in SIZING_METHODS:
            raise ValueError(
                f"unknown sizing method {self.method!r}; choose from {', '.join(SIZING_METHODS)}"
            )
        if not (_real(self.cap) and 0.0 < self.cap <= 1.0):
            raise ValueError(f"size cap (--size-cap) must lie in (0, 1], got {self.cap!r}")
        if not (_real(self.step) and 0.0 <= self.step <= self.cap):
            raise ValueError(f"size step (--size-step) must lie in [0, cap], got {self.step!r}")
        if not (_real(self.fraction) and 0.0 < self.fraction <= 1.0):
            raise ValueError(
                f"Kelly fraction (--kelly-fraction) must lie in (0, 1], got {self.fraction!r}"
            )
        ratio = self.payoff_ratio
        if ratio is not None and not (_real(ratio) and ratio > 0):
            raise ValueError(
                f"payoff ratio (--payoff-ratio) must be a positive number, got {ratio!r}"
            )
        if self.method == "kelly" and ratio is None:
            raise ValueError(
                "Kelly sizing needs a payoff ratio: --payoff-ratio, a --payoff column, "
                "or --metric profit with --gain/--cost"
            )

    def size(self, probability: ArrayLike, threshold: float) -> NDArray[np.float64]:
        """Size of each signal: 0 where ``probability < threshold``, else the rule, capped."""
        p = np.asarray(probability, dtype=np.float64)
        if self.method == "fixed":
            raw = np.ones_like(p)
        elif self.method == "kelly":
            assert self.payoff_ratio is not None  # checked in __post_init__
            raw = self.fraction * (p - (1.0 - p) / self.payoff_ratio)
        else:
            raw = _bet_size(p, threshold)
        size = np.clip(raw, 0.0, self.cap)
        if self.step > 0:
            # The small tolerance keeps a size that is a step multiple up to rounding on it.
            size = np.floor(size / self.step + 1e-9) * self.step
        return np.where(p >= threshold, size, 0.0)

    def describe(self) -> str:
        """One line for reports and ``metasignal inspect``."""
        if self.method == "fixed":
            text = "fixed: every trade takes the cap"
        elif self.method == "kelly":
            text = f"fractional Kelly: {self.fraction:g} × (p − (1 − p) / {self.payoff_ratio:.4g})"
        else:
            text = "López de Prado: 2Φ(z) − 1, z = (p − p*) / √(p (1 − p))"
        ladder = f", rounded down to multiples of {self.step:g}" if self.step else ""
        return f"{text}; capped at {self.cap:g}{ladder}; 0 below the threshold p*"

    def to_dict(self) -> SizingBlock:
        """The artifact's ``sizing`` block (only the fields the method uses)."""
        out: SizingBlock = {"method": self.method, "cap": self.cap, "step": self.step}
        if self.method == "kelly":
            out["fraction"] = self.fraction
            out["payoff_ratio"] = self.payoff_ratio
        return out

    @classmethod
    def from_dict(cls, block: Mapping[str, Any] | None) -> SizingRule:
        """Read an artifact's ``sizing`` block; ``None`` (an older artifact) is ``fixed``."""
        if block is None:
            return cls(method="fixed")
        if not isinstance(block, Mapping):
            raise ValueError("sizing must be an object")
        unknown = set(block) - {"method", "cap", "step", "fraction", "payoff_ratio"}
        if unknown:
            raise ValueError(f"unknown sizing field(s) {', '.join(sorted(unknown))}")
        fields = {k: block[k] for k in ("cap", "step", "fraction", "payoff_ratio") if k in block}
        return cls(method=str(block.get("method", "")), **fields)


def estimate_payoff_ratio(payoff: ArrayLike, labels: ArrayLike) -> float:
    """Kelly's payoff ratio from realised payoffs: mean payoff of a positive event over the
    mean loss of a negative one (the probability being sized is that of a positive label).

    Examples
    --------
    >>> round(estimate_payoff_ratio([0.03, -0.01, 0.01, -0.02], [1, 0, 1, 0]), 6)
    1.333333
    """
    values = np.asarray(payoff, dtype=np.float64)
    positive = np.asarray(labels) == 1
    ok = np.isfinite(values)
    win, loss = values[ok & positive], values[ok & ~positive]
    if not len(win) or not len(loss) or win.mean() <= 0 or loss.mean() >= 0:
        raise ValueError(
            "cannot estimate a payoff ratio for Kelly sizing: positive events must gain and "
            "negative events lose on average"
        )
    return float(win.mean() / -loss.mean())


def resolve_sizing(
    spec: Mapping[str, Any],
    *,
    payoff: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    gain_cost: tuple[float, float] | None = None,
) -> SizingRule:
    """The rule ``spec`` asks for, with Kelly's payoff ratio filled in when it is not given.

    The ratio comes, in this order, from ``spec["payoff_ratio"]``, realised ``payoff`` with
    their ``labels`` (training rows only), or a profit objective's ``gain / cost``.

    Examples
    --------
    >>> resolve_sizing({"method": "kelly"}, gain_cost=(3.0, 1.0)).payoff_ratio
    3.0
    """
    fields = dict(spec)
    if fields.get("method") == "kelly" and fields.get("payoff_ratio") is None:
        if payoff is not None and labels is not None:
            fields["payoff_ratio"] = estimate_payoff_ratio(payoff, labels)
        elif gain_cost is not None:
            fields["payoff_ratio"] = gain_cost[0] / gain_cost[1]
    return SizingRule.from_dict(fields)


def _bet_size(p: NDArray[np.float64], threshold: float) -> NDArray[np.float64]:
    edge = p - threshold
    spread = np.sqrt(p * (1.0 - p))
    certain = spread == 0
    # p = 0 or 1 leaves no doubt: the size is the sign of the edge (0 when there is none).
    sure = np.where(edge == 0, 0.0, np.copysign(np.inf, edge))
    z = np.where(certain, sure, edge / np.where(certain, 1.0, spread))
    return np.asarray(erf(z / math.sqrt(2.0)), dtype=np.float64)


def _real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
