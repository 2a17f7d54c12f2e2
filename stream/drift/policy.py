"""The drift policy: detector output and rolling quality in, one request out.

* **re-tune** when the base rate moved (the rate detector fired) or F1 fell
  while the ranking holds (rolling PR-AUC within tolerance of its baseline):
  the intercept and threshold need correcting, the weights do not;
* **retrain** when the ranking degraded (PR-AUC fell beyond tolerance) or a
  member decayed (its rolling ROC AUC fell by more than ``member_tolerance``;
  AUC ignores calibration, so a base-rate shift alone never looks like decay).

One change gives one request: after a request the policy waits for a new model
(or ``cooldown_outcomes``), and never repeats a kind for the same model version.

Examples
--------
>>> policy = DriftPolicy(min_outcomes=10, min_positives=1, cooldown_outcomes=100,
...                      settle_outcomes=0)
>>> policy.start(model_version=1, baseline_f1=0.5)
>>> quality = dict(window_positives=5, rolling_f1=0.48, rolling_pr_auc=0.6,
...                member_auc={"a": 0.9, "b": 0.8, "c": 0.85})
>>> [policy.decide(outcomes=n, **quality, rate_drift=False, rate_direction=None) for n in (0, 20)]
[None, None]
>>> decision = policy.decide(outcomes=30, **quality, rate_drift=True, rate_direction="up")
>>> decision.kind, decision.reason
('retune', 'positive rate shifted up; ranking holds (PR-AUC 0.600 vs 0.600)')
>>> policy.decide(outcomes=40, **quality, rate_drift=True, rate_direction="up") is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decision:
    kind: str
    reason: str
    since_ts: int | None = None  # event time from which the new regime holds, if known


@dataclass
class DriftPolicy:
    """Tolerances are relative: 0.2 means "20 % below the baseline"."""

    ap_tolerance: float = 0.2
    f1_tolerance: float = 0.2
    f1_min_positives: int = 100
    member_tolerance: float = 0.08
    min_outcomes: int = 2000
    min_positives: int = 20
    cooldown_outcomes: int = 5000
    settle_outcomes: int = 2000
    model_version: int = 0
    baseline_f1: float | None = None
    baseline_ap: float | None = None
    baseline_auc: dict[str, float] = field(default_factory=dict)
    _started_at: int | None = None
    _last_request_at: int | None = None
    _requested: set[tuple[int, str]] = field(default_factory=set)
    _pending_rate: str | None = None
    _pending_since: tuple[int, int | None] | None = None  # (outcomes, event ts) at detection

    def start(self, *, model_version: int, baseline_f1: float | None = None) -> None:
        """A new model is serving: new baselines, cooldown over."""
        self.model_version = model_version
        self.baseline_f1 = baseline_f1
        self.baseline_ap = None
        self.baseline_auc = {}
        self._started_at = None
        self._last_request_at = None
        self._pending_rate = None
        self._pending_since = None

    def _decayed_members(self, member_auc: Mapping[str, float]) -> list[str]:
        return sorted(
            m
            for m, auc in member_auc.items()
            if m in self.baseline_auc
            and not math.isnan(auc)
            and auc < self.baseline_auc[m] - self.member_tolerance
        )

    def decide(
        self,
        *,
        outcomes: int,
        window_positives: int,
        rolling_f1: float,
        rolling_pr_auc: float,
        member_auc: Mapping[str, float],
        rate_drift: bool,
        rate_direction: str | None,
        event_ts: int | None = None,
    ) -> Decision | None:
        """Return a request to make now, or ``None``.

        After a rate change the policy waits ``settle_outcomes`` outcomes, so the
        trainer has enough rows of the new regime to re-tune on.
        """
        if rate_drift:
            self._pending_rate = rate_direction or "changed"
            self._pending_since = (outcomes, event_ts)
        if self._started_at is None:
            self._started_at = outcomes
        seen = outcomes - self._started_at
        if seen < self.min_outcomes or window_positives < self.min_positives:
            return None
        if self.baseline_ap is None and not math.isnan(rolling_pr_auc):
            # The first full window under this model is the ranking and member baseline.
            self.baseline_ap = rolling_pr_auc
            self.baseline_auc = {k: v for k, v in member_auc.items() if not math.isnan(v)}
            return None
        if self._last_request_at is not None and outcomes - self._last_request_at < (
            self.cooldown_outcomes
        ):
            return None
        decision = self._classify(rolling_f1, rolling_pr_auc, member_auc, window_positives)
        if decision is None:
            return None
        if decision.kind == "retune" and self._pending_since is not None:
            detected_at, since_ts = self._pending_since
            if outcomes - detected_at < self.settle_outcomes:
                return None
            decision = Decision(decision.kind, decision.reason, since_ts)
        if (self.model_version, decision.kind) in self._requested or (
            decision.kind == "retune" and (self.model_version, "retrain") in self._requested
        ):
            return None
        self._requested.add((self.model_version, decision.kind))
        self._last_request_at = outcomes
        self._pending_rate = None
        self._pending_since = None
        return decision

    def _classify(
        self, f1: float, ap: float, member_auc: Mapping[str, float], positives: int
    ) -> Decision | None:
        decayed = self._decayed_members(member_auc)
        if decayed:
            detail = ", ".join(
                f"{m} AUC {member_auc[m]:.3f} < {self.baseline_auc[m]:.3f}" for m in decayed
            )
            return Decision("retrain", f"member(s) decayed: {detail}")
        assert self.baseline_ap is not None
        if not math.isnan(ap) and ap < self.baseline_ap * (1 - self.ap_tolerance):
            return Decision(
                "retrain", f"ranking degraded: PR-AUC {ap:.3f} < baseline {self.baseline_ap:.3f}"
            )
        ranking = f"ranking holds (PR-AUC {ap:.3f} vs {self.baseline_ap:.3f})"
        if self._pending_rate is not None:
            return Decision("retune", f"positive rate shifted {self._pending_rate}; {ranking}")
        # F1 on few positives is noise: only a well-populated window may call for a re-tune.
        if (
            self.baseline_f1
            and positives >= self.f1_min_positives
            and not math.isnan(f1)
            and f1 < self.baseline_f1 * (1 - self.f1_tolerance)
        ):
            return Decision("retune", f"F1 {f1:.3f} < baseline {self.baseline_f1:.3f}; {ranking}")
        return None
