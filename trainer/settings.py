"""Settings of ``metasignal trainer`` and the CLI's strategy names: no heavy imports here.

The command line imports this module at start-up; scikit-learn is only loaded
by the commands that fit, so ``metasignal scorer`` stays small.
"""

from __future__ import annotations

from metasignal.stream.config import Setting, parse_bool

STRATEGY_CHOICES = (
    "auto",
    "select",
    "optimal_threshold",
    "smote_enhanced",
    "focal_loss",
    "plain_logistic",
)

TRAINER_SETTINGS = (
    Setting("group_id", "METASIGNAL_TRAINER_GROUP_ID", "metasignal-trainer", "trainer group"),
    Setting("model_name", "METASIGNAL_MODEL_NAME", "meta", "model name to maintain"),
    Setting(
        "transactional_id",
        "METASIGNAL_TRAINER_TRANSACTIONAL_ID",
        "metasignal-trainer",
        "transactional id; the same for active and standby, so a takeover fences the old one",
    ),
    Setting("strategy", "METASIGNAL_TRAINER_STRATEGY", "auto", "strategy for retrains"),
    Setting("metric", "METASIGNAL_TRAINER_METRIC", "f1", "threshold and gate metric"),
    Setting("window_rows", "METASIGNAL_TRAINER_WINDOW_ROWS", 50_000, "recent rows used", type=int),
    Setting(
        "gate_fraction",
        "METASIGNAL_TRAINER_GATE_FRACTION",
        0.3,
        "most recent share of the window kept for the champion/challenger gate",
        type=float,
    ),
    Setting(
        "gate_tolerance",
        "METASIGNAL_TRAINER_GATE_TOLERANCE",
        0.0,
        "a candidate may trail the champion by this much (metric units)",
        type=float,
    ),
    Setting(
        "force",
        "METASIGNAL_TRAINER_FORCE",
        False,
        "publish candidates even when the gate refuses them",
        type=parse_bool,
    ),
    Setting(
        "metrics_port",
        "METASIGNAL_METRICS_PORT",
        9109,
        "port of /metrics, /healthz, /readyz (-1 disables)",
        type=int,
    ),
    Setting("key_file", "METASIGNAL_KEY_FILE", None, "signing keys, one per line"),
    Setting(
        "status_interval_s",
        "METASIGNAL_STATUS_INTERVAL_S",
        30.0,
        "seconds between one-line status logs (requests answered, last version); 0 disables",
        type=float,
    ),
)
