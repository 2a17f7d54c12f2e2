"""The pure-numpy scorer: an artifact compiled into a few arrays, no scikit-learn.

The calibrated probability is ``sigmoid(slope * (z @ coef + intercept) + c0)``
with ``z`` the standardised, clipped logits of the votes. Both affine maps are
folded into one weight vector at compile time, so scoring a batch is one
matrix-vector product.

Examples
--------
>>> import numpy as np
>>> from metasignal.stream.artifact import example_artifact
>>> scorer = CompiledModel.from_artifact(example_artifact())
>>> scorer.predict_proba(np.array([[0.5, 0.5], [0.9, 0.9]])).round(3).tolist()
[0.5, 0.988]
>>> scorer.decide(np.array([0.2, 0.7])).tolist()
[0, 1]
>>> scorer.size(np.array([0.2, 0.7])).tolist()  # no sizing block: all or nothing
[0.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metasignal.stream.artifact import model_identity
from metasignal.stream.sizing import SizingRule


def logit(p: np.ndarray, clip_eps: float) -> np.ndarray:
    """Log-odds of probabilities clipped to ``[eps, 1 - eps]`` so 0 and 1 stay finite."""
    clipped = np.clip(p, clip_eps, 1.0 - clip_eps)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    out = np.empty_like(x, dtype=np.float64)
    positive = x >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-x[positive]))
    exp_x = np.exp(x[~positive])
    out[~positive] = exp_x / (1.0 + exp_x)
    return out


def score_recalibration(artifact: Mapping[str, Any]) -> tuple[float, float] | None:
    """The artifact's ``score_recalibration`` as ``(a, b)`` on the served score's logit.

    Only artifacts published before the trainer composed this map into the served
    calibration carry it (newer ones serve the recalibrated score: ``None``); it is still
    read from them so their label-free expected quality stays corrected.

    It maps decision values ``r`` to ``k' r + c'`` and was fitted beside the calibration
    ``k r + c_fit``; the served score's logit is ``k r + c``. A calibration with another
    slope was refitted on outcomes (an outcome re-tune): the recalibration no longer
    applies. Only the intercept moved (a label-shift re-tune moves the prior): the shift
    carries over, ``k' r + c' + (c - c_fit)``.

    >>> art = {"calibration": {"slope": 2.0, "intercept": -3.0}, "score_recalibration": {
    ...     "slope": 1.0, "intercept": -2.0, "calibration": {"slope": 2.0, "intercept": -4.0}}}
    >>> score_recalibration(art)
    (0.5, 0.5)
    """
    block = artifact.get("score_recalibration")
    if block is None:
        return None
    slope = float(artifact["calibration"]["slope"])
    fitted = block["calibration"]
    if not math.isclose(slope, float(fitted["slope"]), rel_tol=1e-9):
        return None
    intercept = float(artifact["calibration"]["intercept"])
    a = float(block["slope"]) / slope
    b = float(block["intercept"]) + intercept - float(fitted["intercept"]) - a * intercept
    return a, b


@dataclass(frozen=True)
class CompiledModel:
    """An artifact ready for the hot path."""

    name: str
    version: int
    members: tuple[str, ...]
    transform: str
    clip_eps: float
    missing_policy: str
    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    sizing: SizingRule = field(default_factory=lambda: SizingRule(method="fixed"))
    # (a, b): sigmoid(a logit(score) + b) is what the score means, for the label-free
    # expected quality only (an older artifact's score_recalibration); None: the score itself.
    score_recalibration: tuple[float, float] | None = None

    @classmethod
    def from_artifact(cls, artifact: Mapping[str, Any]) -> CompiledModel:
        """Compile a validated artifact (see :func:`metasignal.stream.artifact.load_artifact`)."""
        name, version = model_identity(artifact)
        pre = artifact["preprocessing"]
        coef = np.asarray(artifact["linear"]["coef"], dtype=np.float64)
        slope = float(artifact["calibration"]["slope"])
        return cls(
            name=name,
            version=version,
            members=tuple(artifact["members"]),
            transform=str(pre["transform"]),
            clip_eps=float(pre["clip_eps"]),
            missing_policy=str(pre["missing_policy"]),
            impute=np.asarray(pre["impute"], dtype=np.float64),
            mean=np.asarray(pre["mean"], dtype=np.float64),
            scale=np.asarray(pre["scale"], dtype=np.float64),
            weights=slope * coef,
            bias=slope * float(artifact["linear"]["intercept"])
            + float(artifact["calibration"]["intercept"]),
            threshold=float(artifact["threshold"]["value"]),
            sizing=SizingRule.from_dict(artifact.get("sizing")),
            score_recalibration=score_recalibration(artifact),
        )

    def features(self, votes: np.ndarray) -> np.ndarray:
        """Standardised meta-features; NaN (a missing member) takes its imputation value."""
        x = np.array(votes, dtype=np.float64, copy=True)
        missing = np.isnan(x)
        if missing.any():
            x[missing] = np.broadcast_to(self.impute, x.shape)[missing]
        if self.transform == "logit":
            x = logit(x, self.clip_eps)
        return (x - self.mean) / self.scale

    def predict_proba(self, votes: np.ndarray) -> np.ndarray:
        """Calibrated P(trade) for a batch of shape ``(n_events, n_members)``."""
        return sigmoid(self.features(votes) @ self.weights + self.bias)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Trade (1) iff the calibrated score reaches the threshold."""
        return (scores >= self.threshold).astype(np.int8)

    def size(self, scores: np.ndarray) -> np.ndarray:
        """Position size in ``[0, 1]`` per calibrated score: 0 where :meth:`decide` says 0."""
        return self.sizing.size(scores, self.threshold)
