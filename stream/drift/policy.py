"""The drift policy: detector output and rolling quality in, one request out.

* **re-tune** when the base rate moved (the rate detector fired) or F1 fell
  while the ranking holds (rolling PR-AUC within tolerance of its baseline):
  the intercept and threshold need correcting, the weights do not;
* **retrain** when the ranking degraded (PR-AUC fell beyond tolerance) or a
  member decayed (its rolling ROC AUC fell by ``member_tolerance`` more than the
  median member's: AUC ignores calibration, and comparing with the other members
  keeps a change that affects the whole committee from looking like decay).

* **label-shift re-tune** (``label_shift``, source ``label_free``) when the label-free
  detector on the scores fired (:meth:`DriftPolicy.decide_label_free`), long before the
  outcomes can show it: the trainer shifts the calibration to the estimated rate and
  re-optimises the threshold for it. An alarm the members do not bear out is concept drift,
  not label shift, and asks nothing (the outcome path's retrain follows): the votes' and
  scores' moments off a prior shift by more than ``consistency_z``, or one member against
  its colleagues off it with a Bonferroni p-value below ``member_alpha``
  (:mod:`~metasignal.stream.drift.consistency`). Label shift keeps ``P(y | x)`` up to the
  prior; when the joined outcomes disagree with the label-free estimate on the same events (concept
  drift, or a miscalibrated model), or the ranking degrades, label-free requests stop for
  that model and the outcome path decides. Once outcomes arrive under a label-shift re-tune
  they confirm it (the rate change they show is the one already corrected) or the policy
  falls back to an outcome-based re-tune.

One change gives one request: after a request the policy waits
``cooldown_outcomes``, and asks for the same kind for the same model version
again only if the problem persists ``retry_outcomes`` later (the trainer may
have refused a candidate while the change was still young).

Examples
--------
>>> policy = DriftPolicy(min_outcomes=10, min_positives=1, quality_min_positives=5,
...                      cooldown_outcomes=100, settle_outcomes=0)
>>> policy.start(model_version=1)
>>> quality = dict(window_positives=5, rolling_f1=0.48, rolling_pr_auc=0.6,
...                member_auc={"a": 0.9, "b": 0.8, "c": 0.85})
>>> [policy.decide(outcomes=n, **quality, rate_drift=False, rate_direction=None)
...  for n in (0, 20, 25)]
[None, None, None]
>>> decision = policy.decide(outcomes=30, **quality, rate_drift=True, rate_direction="up")
>>> decision.kind, decision.reason
('retune', 'positive rate shifted up; ranking holds (PR-AUC 0.600 vs 0.600)')
>>> policy.decide(outcomes=40, **quality, rate_drift=True, rate_direction="up") is None
True
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from metasignal.stream.drift.monitor import LabelShiftAlarm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    kind: str  # retune, retrain or label_shift
    reason: str
    since_ts: int | None = None  # event time from which the new regime holds, if known
    source: str = "outcomes"  # what the evidence was: "outcomes" or "label_free"
    prior: Mapping[str, Any] | None = None  # label_shift: reference and estimated rates


@dataclass
class DriftPolicy:
    """Tolerances are relative: 0.2 means "20 % below the baseline"."""

    ap_tolerance: float = 0.25
    f1_tolerance: float = 0.25
    quality_min_positives: int = 100
    member_tolerance: float = 0.08
    min_outcomes: int = 2000
    min_positives: int = 20
    cooldown_outcomes: int = 5000
    settle_outcomes: int = 2000
    retry_outcomes: int = 20_000
    label_free: bool = True
    agreement_z: float = 5.0
    consistency_z: float = 3.0
    # A genuine label shift is taken for concept drift by the member check with probability
    # at most this (Bonferroni over the members).
    member_alpha: float = 0.01
    label_free_retry_events: int = 50_000
    min_agreement_outcomes: int = 2000
    model_version: int = 0
    baseline_f1: float | None = None
    baseline_ap: float | None = None
    baseline_auc: dict[str, float] = field(default_factory=dict)
    _started_at: int | None = None
    _last_request_at: int | None = None
    _requested: dict[tuple[int, str], int] = field(default_factory=dict)
    _pending_rate: str | None = None
    _pending_since: tuple[int, int | None] | None = None  # (outcomes, event ts) at detection
    _last_kind: str | None = None  # the last request made, for the next model to inherit
    _label_shift_model: bool = False  # the serving model answered a label_shift request
    _label_free_off: str | None = None  # why label-free requests stopped for this model
    _label_free_asked_at: int | None = None  # votes observed when label_shift was asked
    label_shift_confirmed: bool | None = None  # outcomes' verdict on a label-shift re-tune
    not_label_shift: str | None = None  # why the last label-free alarm was not acted on

    def start(self, *, model_version: int) -> None:
        """A new model is serving: new baselines, cooldown over."""
        self._label_shift_model = model_version > self.model_version and (
            self._last_kind == "label_shift"
        )
        self._last_kind = None
        self._label_free_off = None
        self._label_free_asked_at = None
        self.label_shift_confirmed = None
        self.model_version = model_version
        self.baseline_f1 = None
        self.baseline_ap = None
        self.baseline_auc = {}
        self._started_at = None
        self._last_request_at = None
        self._pending_rate = None
        self._pending_since = None

    def _decayed_members(self, member_auc: Mapping[str, float]) -> list[str]:
        drops = {
            m: self.baseline_auc[m] - auc
            for m, auc in member_auc.items()
            if m in self.baseline_auc and not math.isnan(auc)
        }
        if len(drops) < 3:
            return []
        # Relative to the typical member: a regime change that makes the event harder to
        # rank lowers every member's AUC alike; decay singles one out.
        typical = statistics.median(drops.values())
        return sorted(m for m, drop in drops.items() if drop - typical > self.member_tolerance)

    def decide_label_free(self, alarm: LabelShiftAlarm | None) -> Decision | None:
        """A ``label_shift`` request for a label-free alarm, or ``None``.

        Nothing is asked while label-free requests are off for this model (see
        :meth:`decide`), or within ``label_free_retry_events`` votes of the last ask (the
        trainer may have refused it).
        """
        if alarm is None or not self.label_free or self._label_free_off is not None:
            return None
        # The scores moved but the members did not move as a prior shift moves them:
        # concept drift. A retrain needs labelled rows of the new regime: the outcome path
        # asks for it once they arrive.
        reason = self._not_label_shift(alarm)
        if reason is not None:
            self.not_label_shift = reason
            log.warning("label-free alarm not acted on (model v%d): %s", self.model_version, reason)
            return None
        asked = self._label_free_asked_at
        if asked is not None and alarm.events - asked < self.label_free_retry_events:
            return None
        self._label_free_asked_at = alarm.events
        self._requested[(self.model_version, "label_shift")] = alarm.events
        self._last_kind = "label_shift"
        reason = (
            f"positive rate shifted {alarm.direction}: {alarm.estimated_rate:.4f} estimated "
            f"from the scores of the last {alarm.events_since_change:,} votes vs "
            f"{alarm.reference_rate:.4f} the model is calibrated to (no outcome yet)"
        )
        prior = {
            "reference_rate": alarm.reference_rate,
            "estimated_rate": alarm.estimated_rate,
            "events_since_change": alarm.events_since_change,
        }
        return Decision("label_shift", reason, source="label_free", prior=prior)

    def _not_label_shift(self, alarm: LabelShiftAlarm) -> str | None:
        """Why the consistency checks say ``alarm`` is not a label shift, or ``None``."""
        if alarm.member_shift_z > self.consistency_z:
            return (
                f"scores shifted {alarm.direction} but the votes and the scores' shape are "
                f"{alarm.member_shift_z:.1f} standard errors from a prior shift"
            )
        if alarm.member_contrast_p < self.member_alpha:
            return (
                f"scores shifted {alarm.direction} but without {alarm.member_contrast} the "
                f"other members' score is {alarm.member_contrast_z:+.1f} standard errors from "
                f"a prior shift (p = {alarm.member_contrast_p:.1e} over the members): "
                f"{alarm.member_contrast} changed, not the class mix"
            )
        return None

    def _agreement(self, outcomes: int, estimated_rate: float, z: float) -> bool | None:
        """Do realized and label-free rates agree on the joined events? ``None``: too few yet.

        Disagreement turns label-free requests off for this model and, under a label-shift
        re-tune, rejects it: the outcome path re-tunes instead.
        """
        if math.isnan(z) or outcomes - (self._started_at or 0) < self.min_agreement_outcomes:
            return None
        if abs(z) <= self.agreement_z:
            return True
        if self._label_free_off is None:
            self._label_free_off = (
                f"realized rate disagrees with the label-free estimate {estimated_rate:.4f} "
                f"(z = {z:+.1f})"
            )
        if self._label_shift_model and self.label_shift_confirmed is None:
            self.label_shift_confirmed = False
            self._pending_rate = "(the label-shift re-tune is not confirmed by the outcomes)"
            self._pending_since = (outcomes, None)
        return False

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
        estimated_rate: float = math.nan,
        rate_agreement_z: float = math.nan,
    ) -> Decision | None:
        """Return a request to make now, or ``None``.

        After a rate change the policy waits ``settle_outcomes`` outcomes, so the
        trainer has enough rows of the new regime to re-tune on.
        """
        if self._started_at is None:
            self._started_at = outcomes
        agree = self._agreement(outcomes, estimated_rate, rate_agreement_z)
        if rate_drift:
            self._pending_rate = rate_direction or "changed"
            self._pending_since = (outcomes, event_ts)
        seen = outcomes - self._started_at
        if seen < self.min_outcomes or window_positives < self.min_positives:
            return None
        if not self.baseline_auc:
            # The first window under this model is the members' baseline...
            self.baseline_auc = {k: v for k, v in member_auc.items() if not math.isnan(v)}
            return None
        if (
            self.baseline_ap is None
            and window_positives >= self.quality_min_positives
            and not math.isnan(rolling_pr_auc)
        ):
            # ...and the first window with enough trades to measure PR-AUC and F1 is theirs.
            self.baseline_ap = rolling_pr_auc
            self.baseline_f1 = None if math.isnan(rolling_f1) else rolling_f1
        if self._last_request_at is not None and outcomes - self._last_request_at < (
            self.cooldown_outcomes
        ):
            return None
        decision = self._classify(rolling_f1, rolling_pr_auc, member_auc, window_positives)
        if decision is None:
            return None
        if decision.kind == "retune" and self._pending_since is not None:
            if agree and self._label_shift_model and self.label_shift_confirmed is not False:
                # The rate change the outcomes show is the one the label-shift re-tune
                # already corrected, and the outcomes agree with the model: confirmed.
                self.label_shift_confirmed = True
                self._pending_rate = None
                self._pending_since = None
                return None
            detected_at, since_ts = self._pending_since
            if outcomes - detected_at < self.settle_outcomes:
                return None
            decision = Decision(decision.kind, decision.reason, since_ts)
        if self._asked_recently(decision.kind, outcomes) or (
            decision.kind == "retune" and self._asked_recently("retrain", outcomes)
        ):
            return None
        if decision.kind == "retrain" and self._label_free_off is None:
            self._label_free_off = "the ranking changed (concept drift): retraining"
        self._requested[(self.model_version, decision.kind)] = outcomes
        self._last_kind = decision.kind
        self._last_request_at = outcomes
        self._pending_rate = None
        self._pending_since = None
        return decision

    def _asked_recently(self, kind: str, outcomes: int) -> bool:
        asked_at = self._requested.get((self.model_version, kind))
        return asked_at is not None and outcomes - asked_at < self.retry_outcomes

    def _classify(
        self, f1: float, ap: float, member_auc: Mapping[str, float], positives: int
    ) -> Decision | None:
        decayed = self._decayed_members(member_auc)
        if decayed:
            detail = ", ".join(
                f"{m} AUC {member_auc[m]:.3f} < {self.baseline_auc[m]:.3f}" for m in decayed
            )
            return Decision("retrain", f"member(s) decayed: {detail}")
        # PR-AUC and F1 on few positives are noise: only a well-populated window may act.
        enough = positives >= self.quality_min_positives and self.baseline_ap is not None
        baseline_ap = self.baseline_ap if self.baseline_ap is not None else float("nan")
        if enough and not math.isnan(ap) and ap < baseline_ap * (1 - self.ap_tolerance):
            return Decision(
                "retrain", f"ranking degraded: PR-AUC {ap:.3f} < baseline {baseline_ap:.3f}"
            )
        ranking = (
            f"ranking holds (PR-AUC {ap:.3f} vs {baseline_ap:.3f})"
            if enough
            else f"ranking not yet measurable ({positives} trades in the window)"
        )
        if self._pending_rate is not None:
            return Decision("retune", f"positive rate shifted {self._pending_rate}; {ranking}")
        if (
            self.baseline_f1
            and enough
            and not math.isnan(f1)
            and f1 < self.baseline_f1 * (1 - self.f1_tolerance)
        ):
            return Decision("retune", f"F1 {f1:.3f} < baseline {self.baseline_f1:.3f}; {ranking}")
        return None
