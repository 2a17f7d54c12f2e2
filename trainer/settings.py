"""Settings of ``metasignal trainer`` and the CLI's strategy names: no heavy imports here.

The command line imports this module at start-up; scikit-learn is only loaded
by the commands that fit, so ``metasignal scorer`` stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metasignal.stream.config import setting, settings_of
from metasignal.stream.errors import MetasignalError
from metasignal.stream.topics import Topics

STRATEGY_CHOICES = (
    "auto",
    "select",
    "optimal_threshold",
    "smote_enhanced",
    "focal_loss",
    "plain_logistic",
)


@dataclass(frozen=True, kw_only=True)
class TrainerOptions:
    """How the trainer runs; fields made by ``setting`` are its flags and environment
    variables (:data:`TRAINER_SETTINGS`)."""

    topics: Topics = field(default_factory=Topics)
    group_id: str = setting(
        "metasignal-trainer", env="METASIGNAL_TRAINER_GROUP_ID", help="trainer group"
    )
    model_name: str = setting("meta", env="METASIGNAL_MODEL_NAME", help="model name to maintain")
    transactional_id: str = setting(
        "metasignal-trainer",
        env="METASIGNAL_TRAINER_TRANSACTIONAL_ID",
        help="transactional id; the same for active and standby, so a takeover fences the old one",
    )
    strategy: str = setting(
        "auto",
        env="METASIGNAL_TRAINER_STRATEGY",
        help="strategy for retrains",
        choices=STRATEGY_CHOICES,
    )
    metric: str = setting("f1", env="METASIGNAL_TRAINER_METRIC", help="threshold and gate metric")
    window_rows: int = setting(
        50_000, env="METASIGNAL_TRAINER_WINDOW_ROWS", help="recent rows used"
    )
    gate_fraction: float = setting(
        0.3,
        env="METASIGNAL_TRAINER_GATE_FRACTION",
        help="most recent share of the window kept for the champion/challenger gate",
    )
    gate_tolerance: float = setting(
        0.0,
        env="METASIGNAL_TRAINER_GATE_TOLERANCE",
        help="a candidate may trail the champion by this much (metric units)",
    )
    force: bool = setting(
        False,
        env="METASIGNAL_TRAINER_FORCE",
        help="publish candidates even when the gate refuses them",
    )
    shadow: bool = setting(
        False,
        env="METASIGNAL_TRAINER_SHADOW",
        help="publish gate-passing candidates as shadows: scored beside the champion, promoted "
        "or retired on live outcomes (signed decisions), rolled back once if worse",
    )
    shadow_alpha: float = setting(
        0.05,
        env="METASIGNAL_SHADOW_ALPHA",
        help="probability of a false promotion (or rollback) over all looks of the sequential "
        "test the trainer runs on every scorer's summed shadow evidence",
    )
    shadow_margin: float = setting(
        0.0,
        env="METASIGNAL_SHADOW_MARGIN",
        help="F1 improvement over the champion a shadow challenger must exceed to be promoted",
    )
    shadow_min_improvement: float = setting(
        0.03,
        env="METASIGNAL_SHADOW_MIN_IMPROVEMENT",
        help="F1 improvement over the margin worth a promotion: a shadow challenger is retired "
        "as soon as the sequential test rules it out (futility); 0: retired only when "
        "significantly worse or at --shadow-max-outcomes",
    )
    shadow_min_outcomes: int = setting(
        2000,
        env="METASIGNAL_SHADOW_MIN_OUTCOMES",
        help="summed joined outcomes of the first look of the shadow comparison",
    )
    shadow_look_every: int = setting(
        500,
        env="METASIGNAL_SHADOW_LOOK_EVERY",
        help="summed joined outcomes between looks of the shadow comparison",
    )
    shadow_max_outcomes: int = setting(
        50_000,
        env="METASIGNAL_SHADOW_MAX_OUTCOMES",
        help="joined outcomes (summed over scorers) a shadow challenger is compared on at most; "
        "not better by then: retired (the sequential test may decide sooner)",
    )
    rollback_outcomes: int = setting(
        10_000,
        env="METASIGNAL_ROLLBACK_OUTCOMES",
        help="a promoted champion is compared with its predecessor (kept in shadow) over its "
        "first N joined outcomes (summed over scorers) and rolled back, once, if significantly "
        "worse",
    )
    metrics_port: int = setting(
        9109,
        env="METASIGNAL_METRICS_PORT",
        help="port of /metrics, /healthz, /readyz (-1 disables)",
    )
    key_file: str | None = setting(
        None, env="METASIGNAL_KEY_FILE", help="signing keys, one per line"
    )
    status_interval_s: float = setting(
        30.0,
        env="METASIGNAL_STATUS_INTERVAL_S",
        help="seconds between one-line status logs (requests answered, last version); 0 disables",
    )
    min_positives: int = 20
    min_regime_rows: int = 1000
    poll_timeout_ms: int = 200
    splits: int = 3

    def __post_init__(self) -> None:
        problems = []
        if not 1e-6 <= self.shadow_alpha < 0.5:
            problems.append(f"--shadow-alpha must be in [1e-6, 0.5), got {self.shadow_alpha}")
        if not -1.0 < self.shadow_margin < 1.0:
            problems.append(f"--shadow-margin must be in (-1, 1), got {self.shadow_margin}")
        if not 0.0 <= self.shadow_min_improvement < 1.0:
            problems.append(
                f"--shadow-min-improvement must be in [0, 1), got {self.shadow_min_improvement}"
            )
        if not 0 < self.shadow_min_outcomes <= self.shadow_max_outcomes:
            problems.append(
                "need 0 < --shadow-min-outcomes <= --shadow-max-outcomes, got "
                f"{self.shadow_min_outcomes} and {self.shadow_max_outcomes}"
            )
        if self.shadow_look_every < 1 or self.rollback_outcomes < 1:
            problems.append(
                "--shadow-look-every and --rollback-outcomes must be at least 1, got "
                f"{self.shadow_look_every} and {self.rollback_outcomes}"
            )
        if problems:
            raise MetasignalError("; ".join(problems))


TRAINER_SETTINGS = settings_of(TrainerOptions)
