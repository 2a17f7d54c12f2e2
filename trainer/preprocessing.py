"""Members' votes to meta-features: impute, clipped logits, standardise.

Logits make a linear meta-model additive in evidence (log-odds), which is what
stacking probabilities wants; clipping keeps a member's 0 or 1 finite.

Examples
--------
>>> import numpy as np
>>> X = np.array([[0.1, 0.8], [0.3, np.nan], [0.2, 0.6]])
>>> pre = LogitStandardizer().fit(X)
>>> pre.impute_.round(2).tolist()
[0.2, 0.7]
>>> bool(abs(pre.transform(X).mean(axis=0)).max() < 1e-12)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from metasignal.stream.scoring import logit

INPUT_KINDS = ("probability", "raw")


class LogitStandardizer(TransformerMixin, BaseEstimator):
    """Impute missing members, map probabilities to clipped logits, standardise.

    Parameters
    ----------
    kind : {"probability", "raw"}
        ``"probability"`` takes logits of votes in [0, 1]; ``"raw"`` leaves
        unbounded member scores as they are.
    clip_eps : float
        Probabilities are clipped to ``[clip_eps, 1 - clip_eps]`` before the logit.
    """

    def __init__(self, *, kind: str = "probability", clip_eps: float = 1e-6) -> None:
        self.kind = kind
        self.clip_eps = clip_eps

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _raw_features(self, X: np.ndarray) -> np.ndarray:
        # Skipping the copy when nothing is missing gives the same numbers, faster.
        x = np.where(np.isnan(X), self.impute_, X) if np.isnan(X).any() else X
        return logit(x, self.clip_eps) if self.kind == "probability" else x

    def fit(self, X: Any, y: Any = None) -> LogitStandardizer:
        self._fit(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X).transform(X)``, with the logits taken once instead of twice."""
        z = self._fit(X)
        return (z - self.mean_) / self.scale_

    def _fit(self, X: Any) -> np.ndarray:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if not 0.0 < self.clip_eps < 0.5:
            raise ValueError(f"clip_eps must lie in (0, 0.5), got {self.clip_eps!r}")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        # The median survives a member that is missing for a stretch and is a valid probability.
        # np.median equals np.nanmedian without NaNs and skips its per-column Python loop.
        with np.errstate(all="ignore"):
            median = np.nanmedian if np.isnan(X).any() else np.median
            impute = median(X, axis=0) if X.shape[0] else np.zeros(X.shape[1])
        default = 0.5 if self.kind == "probability" else 0.0
        self.impute_ = np.where(np.isnan(impute), default, impute)
        z = self._raw_features(X)
        self.mean_ = z.mean(axis=0)
        scale = z.std(axis=0)
        # A constant member carries no information; scale 1 keeps it harmless rather than inf.
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return z

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "scale_")
        X = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)
        return (self._raw_features(X) - self.mean_) / self.scale_
