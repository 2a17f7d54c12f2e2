"""What the joined outcomes say about the live model, tracked online with river.

Per joined outcome the monitor updates river's drift detector on the realized
positive rate and river's rolling precision/recall/F1 of the emitted signals,
and keeps a window of ``(votes, score, decision, label)``. A snapshot computes
from that window the realized and predicted rates, the PR-AUC of the scores
(ranking quality), and each member's log-loss and ROC AUC, vectorised.

Examples
--------
>>> import numpy as np
>>> monitor = DriftMonitor(members=("a", "b"), window=100, detector="adwin")
>>> rng = np.random.default_rng(0)
>>> for _ in range(500):
...     y = int(rng.random() < 0.1)
...     monitor.update(label=y, score=0.8 if y else 0.05, decision=y,
...                    votes=np.array([0.7 if y else 0.1, 0.5]))
>>> snap = monitor.snapshot()
>>> round(snap.rolling_f1, 2), snap.rolling_pr_auc
(1.0, 1.0)
>>> snap.member_log_loss["a"] < snap.member_log_loss["b"]
True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import metrics, utils

from metasignal.stream.drift.consistency import (
    LeaveOneOut,
    VoteWindow,
    bonferroni_p,
    logit_center,
    member_contrasts,
    shift_features,
    shift_z,
)
from metasignal.stream.drift.detectors import make_detector
from metasignal.stream.drift.label_free import LabelFreeEstimate, LabelFreeEstimator
from metasignal.stream.drift.label_shift import PriorShiftCUSUM
from metasignal.stream.drift.prior import estimate_prior, prior_agreement
from metasignal.stream.quality import average_precision, log_loss, roc_auc


@dataclass(frozen=True)
class DriftSnapshot:
    """The monitor's state, for the policy, the metrics and the control message."""

    outcomes: int
    window_outcomes: int
    window_positives: int
    realized_rate: float
    predicted_rate: float
    rolling_precision: float
    rolling_recall: float
    rolling_f1: float
    rolling_pr_auc: float
    member_log_loss: Mapping[str, float]
    member_auc: Mapping[str, float]
    rate_drift: bool
    rate_direction: str | None
    detector_stats: Mapping[str, Any] = field(default_factory=dict)
    # The label-free estimate on the same joined events, and how far the realized
    # positives are from it (z-score, see prior_agreement): NaN until it can be computed.
    estimated_rate: float = float("nan")
    rate_agreement_z: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        def clean(value: float) -> float | None:
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "outcomes": self.outcomes,
            "window_outcomes": self.window_outcomes,
            "window_positives": self.window_positives,
            "realized_rate": clean(self.realized_rate),
            "predicted_rate": clean(self.predicted_rate),
            "rolling_precision": clean(self.rolling_precision),
            "rolling_recall": clean(self.rolling_recall),
            "rolling_f1": clean(self.rolling_f1),
            "rolling_pr_auc": clean(self.rolling_pr_auc),
            "member_log_loss": {k: clean(v) for k, v in self.member_log_loss.items()},
            "member_auc": {k: clean(v) for k, v in self.member_auc.items()},
            "rate_drift": self.rate_drift,
            "rate_direction": self.rate_direction,
            "detector": dict(self.detector_stats),
            "estimated_rate": clean(self.estimated_rate),
            "rate_agreement_z": clean(self.rate_agreement_z),
        }


@dataclass(frozen=True)
class LabelShiftAlarm:
    """The label-free detector fired: the positive rate moved, judging by the scores alone."""

    direction: str
    reference_rate: float  # the rate the serving model's scores are calibrated to
    estimated_rate: float  # estimated from the scores since the change point
    events_since_change: int
    events: int  # votes observed under this model
    # Largest |z| of the members' votes and the scores' shape against what a prior shift
    # predicts for them (consistency.shift_z; NaN without votes): large = not label shift.
    member_shift_z: float = float("nan")
    # Each member against its colleagues (consistency.member_contrasts): the member whose
    # removal leaves a score that disagrees most with the prior shift, its z and the
    # Bonferroni p-value of that z over the members (small = not label shift; NaN, None
    # without votes).
    member_contrast: str | None = None
    member_contrast_z: float = float("nan")
    member_contrast_p: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in self.__dict__.items()
        }


class DriftMonitor:
    """Online quality and drift statistics of one scorer's joined outcomes.

    Parameters
    ----------
    members
        Member names in model order (the ``votes`` rows follow it).
    window
        Outcomes in the rolling windows.
    detector, detector_params
        Drift detector on the realized positive rate (see
        :func:`metasignal.stream.drift.detectors.make_detector`).
    label_free_window
        Votes in the label-free estimates' window (also the label-shift detector's warm-up).
    label_shift_params
        Parameters of the label-shift detector
        (:class:`~metasignal.stream.drift.label_shift.PriorShiftCUSUM`).
    label_free_refresh
        Votes between two computations of the label-free estimates (each costs a few
        passes over the window, ~0.2 ms for 5,000 votes; the detector sees every vote).
    score_recalibration
        The serving model's :attr:`~metasignal.stream.scoring.CompiledModel.score_recalibration`,
        read by the expected quality only (again at each :meth:`reset_quality`).
    """

    def __init__(
        self,
        *,
        members: Sequence[str],
        window: int = 5000,
        detector: str = "cusum",
        detector_params: Mapping[str, Any] | None = None,
        label_free_window: int = 5000,
        label_shift_params: Mapping[str, Any] | None = None,
        label_free_refresh: int = 1000,
        score_recalibration: tuple[float, float] | None = None,
    ) -> None:
        self.members = tuple(members)
        self.window = window
        self.label_free = LabelFreeEstimator(window=label_free_window, warmup=label_free_window)
        self._vote_window = VoteWindow()
        self._label_shift_params = {"warmup": label_free_window, **(label_shift_params or {})}
        self._label_shift = PriorShiftCUSUM(**self._label_shift_params)
        self.label_free_refresh = label_free_refresh
        self._estimate: LabelFreeEstimate | None = None
        self._estimated_at = 0
        self._detector_name = detector
        self._detector_params = dict(detector_params or {})
        self._detector = make_detector(detector, **self._detector_params)
        self.outcomes = 0
        self._rate_drift = False
        self._direction: str | None = None
        self.reset_quality(score_recalibration=score_recalibration)

    def reset_quality(self, *, score_recalibration: tuple[float, float] | None = None) -> None:
        """Forget the rolling quality (a new model is serving); the rate detector keeps going.

        The label-free state restarts too: the new model's scores have their own calibration.
        """
        self.label_free.reset(recalibration=score_recalibration)
        self._vote_window.reset()
        self._label_shift = PriorShiftCUSUM(**self._label_shift_params)
        self._estimate = None
        self._estimated_at = 0
        # river ships no type information: keep its objects as Any.
        self._precision: Any = utils.Rolling(metrics.Precision, window_size=self.window)
        self._recall: Any = utils.Rolling(metrics.Recall, window_size=self.window)
        self._f1: Any = utils.Rolling(metrics.F1, window_size=self.window)
        self._labels: deque[int] = deque(maxlen=self.window)
        self._scores: deque[float] = deque(maxlen=self.window)
        self._decisions: deque[int] = deque(maxlen=self.window)
        self._votes: deque[np.ndarray] = deque(maxlen=self.window)

    def update(self, *, label: int, score: float, decision: int, votes: np.ndarray) -> None:
        self.outcomes += 1
        self._detector.update(label)
        if self._detector.drift_detected:
            self._rate_drift = True
            self._direction = getattr(self._detector, "drift_direction", None)
        truth, predicted = bool(label), bool(decision)
        self._precision.update(truth, predicted)
        self._recall.update(truth, predicted)
        self._f1.update(truth, predicted)
        self._labels.append(label)
        self._scores.append(score)
        self._decisions.append(decision)
        self._votes.append(votes)

    def observe(
        self, scores: np.ndarray, decisions: np.ndarray, votes: np.ndarray | None = None
    ) -> LabelShiftAlarm | None:
        """Feed one scored batch (every vote, no outcome needed); an alarm if the rate moved.

        With the batch's ``votes`` (rows in member order) an alarm also says whether the
        members moved as a prior shift would make them move.
        """
        if not len(scores):
            return None
        estimator = self.label_free
        before = estimator.events
        estimator.update(scores, decisions)
        if votes is not None:
            self._vote_window.update(scores, votes)
        at = self._label_shift.update_many(scores)
        reference = estimator.reference_rate
        if at is None or reference is None:
            return None
        alarm_at = before + at + 1
        since = max(alarm_at - (self._label_shift.change_point or 0), 1)
        after = estimator.events - alarm_at  # votes of this batch past the alarm
        # The post-change scores (as many as the window holds) estimate the new rate.
        recent, _ = estimator.recent(since + after)
        recent = recent[: len(recent) - after]
        rate = estimate_prior(recent, reference)
        return LabelShiftAlarm(
            direction=self._label_shift.drift_direction or "changed",
            reference_rate=reference,
            estimated_rate=rate,
            events_since_change=int(since),
            events=estimator.events,
            **self._member_shift(reference, rate, since, after),
        )

    def _member_shift(
        self, reference: float, rate: float, since: int, after: int
    ) -> dict[str, Any]:
        """The consistency checks: the events since the change against the model's first.

        ``member_shift_z``: largest ``|z|`` of the votes' and the scores' moments
        (:func:`shift_features`); ``member_contrast*``: each member against its colleagues
        (:func:`member_contrasts`, net of the estimated rate's own error).
        """
        window = self._vote_window
        end = window.events - after  # the alarm's event, counted in the window
        parts = window.split(end - since, end)
        if parts is None or not 0.0 < rate < 1.0:
            return {}
        base_scores, base_votes, recent_scores, recent_votes = parts
        center = logit_center(base_scores, base_votes)
        moments = shift_z(
            base_scores,
            shift_features(base_scores, base_votes, center),
            shift_features(recent_scores, recent_votes, center),
            reference,
            rate,
        )
        out: dict[str, Any] = {"member_shift_z": _largest(moments)}
        if base_votes.shape[1] == len(self.members) >= 2:
            colleagues = LeaveOneOut.fit(base_scores, base_votes)
            z = shift_z(
                base_scores,
                member_contrasts(colleagues, base_scores, base_votes),
                member_contrasts(colleagues, recent_scores, recent_votes),
                reference,
                rate,
                recent_scores=recent_scores,
            )
            if np.isfinite(z).any():
                worst = int(np.nanargmax(np.abs(z)))
                out["member_contrast"] = self.members[worst]
                out["member_contrast_z"] = float(z[worst])
                out["member_contrast_p"] = bonferroni_p(z)
        return out

    def label_free_estimate(self) -> LabelFreeEstimate | None:
        """Positive rate and expected quality over the recent votes (``None`` in warm-up).

        Recomputed once ``label_free_refresh`` votes have arrived since the last time.
        """
        events = self.label_free.events
        if self._estimate is None or events - self._estimated_at >= self.label_free_refresh:
            self._estimate = self.label_free.estimate()
            self._estimated_at = events
        return self._estimate

    def label_shift_ratios(self) -> dict[str, float]:
        """Each side's label-shift statistic over its decision interval (1 = alarm)."""
        detector = self._label_shift
        sides = {
            "up": (detector.statistic_up, detector.threshold_up),
            "down": (detector.statistic_down, detector.threshold_down),
        }
        return {
            side: statistic / threshold
            for side, (statistic, threshold) in sides.items()
            if threshold is not None and math.isfinite(threshold)
        }

    def consume_rate_drift(self) -> tuple[bool, str | None]:
        """Whether the rate detector fired since the last call (then cleared)."""
        fired, direction = self._rate_drift, self._direction
        self._rate_drift, self._direction = False, None
        return fired, direction

    def snapshot(self) -> DriftSnapshot:
        labels = np.fromiter(self._labels, dtype=np.int64)
        scores = np.fromiter(self._scores, dtype=np.float64)
        n = len(labels)
        detector_stats = {
            key: getattr(self._detector, key)
            for key in ("rate", "statistic_up", "statistic_down")
            if isinstance(getattr(self._detector, key, None), int | float)
        }
        detector_stats["name"] = self._detector_name
        votes = np.array(self._votes).reshape(n, len(self.members))
        seen = ~np.isnan(votes)
        return DriftSnapshot(
            outcomes=self.outcomes,
            window_outcomes=n,
            window_positives=int(labels.sum()),
            realized_rate=float(labels.mean()) if n else float("nan"),
            predicted_rate=float(np.mean(self._decisions)) if n else float("nan"),
            rolling_precision=float(self._precision.get()),
            rolling_recall=float(self._recall.get()),
            rolling_f1=float(self._f1.get()),
            rolling_pr_auc=average_precision(labels, scores) if n else float("nan"),
            member_log_loss={
                m: log_loss(labels[seen[:, j]], votes[seen[:, j], j])
                for j, m in enumerate(self.members)
            },
            member_auc={
                m: roc_auc(labels[seen[:, j]], votes[seen[:, j], j])
                for j, m in enumerate(self.members)
            },
            rate_drift=self._rate_drift,
            rate_direction=self._direction,
            detector_stats=detector_stats,
            **self._agreement(labels, scores),
        )

    def _agreement(self, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
        """Label-free rate of the joined events and the realized positives' z-score to it."""
        reference = self.label_free.reference_rate
        if reference is None or not len(labels):
            return {}
        rate = estimate_prior(scores, reference)
        return {
            "estimated_rate": rate,
            "rate_agreement_z": prior_agreement(labels, scores, reference, rate),
        }


def _largest(z: np.ndarray) -> float:
    return float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else math.nan
