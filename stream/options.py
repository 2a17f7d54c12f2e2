"""How the scorer runs: one frozen options object whose fields declare the settings.

Fields made by :func:`~metasignal.stream.config.setting` are command-line flags
and environment variables of ``metasignal scorer`` (:data:`SCORER_SETTINGS`);
the rest are tuning knobs for tests, benchmarks and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metasignal.stream.checkpoint import CommitPolicy
from metasignal.stream.config import parse_bool, setting, settings_of
from metasignal.stream.errors import MetasignalError
from metasignal.stream.join import (
    DEFAULT_JOIN_MAX_BYTES,
    DEFAULT_JOIN_MAX_ENTRIES,
    DEFAULT_JOIN_TTL_S,
)
from metasignal.stream.messages import DEFAULT_MAX_MESSAGE_BYTES
from metasignal.stream.topics import Topics

# At-least-once signals go out at once; the interval bounds only what a crash re-delivers.
AT_LEAST_ONCE_INTERVAL_S = 0.25
# Exactly-once signals are visible at commit: the interval is most of their latency.
EXACTLY_ONCE_INTERVAL_S = 0.02


@dataclass(frozen=True, kw_only=True)
class ScorerOptions:
    """How the scorer runs (flags and environment variables: :data:`SCORER_SETTINGS`)."""

    topics: Topics = field(default_factory=Topics)
    group_id: str = setting(
        "metasignal-scorer", env="METASIGNAL_GROUP_ID", help="consumer group of scorers"
    )
    model_name: str = setting(
        "meta", env="METASIGNAL_MODEL_NAME", help="model name to serve from `models`"
    )
    batch_size: int = setting(500, env="METASIGNAL_BATCH_SIZE", help="max votes per poll")
    poll_timeout_ms: int = setting(100, env="METASIGNAL_POLL_TIMEOUT_MS", help="poll wait (ms)")
    poll_linger_ms: float = setting(
        5.0,
        env="METASIGNAL_POLL_LINGER_MS",
        help="after a poll that returned less than a full batch, wait this long before the next "
        "so that votes arrive in fewer, larger batches (adds at most this much latency); "
        "0: poll again at once",
    )
    exactly_once: bool = setting(
        False,
        env="METASIGNAL_EXACTLY_ONCE",
        help="Kafka transactions: no lost and no duplicate signal",
    )
    commit_interval_s: float | None = setting(
        None,
        env="METASIGNAL_COMMIT_INTERVAL_S",
        type=float,
        help="seconds between commits (or --commit-max-records, whichever first); "
        f"default {AT_LEAST_ONCE_INTERVAL_S:g} at-least-once (bounds re-delivery after a crash), "
        f"{EXACTLY_ONCE_INTERVAL_S:g} exactly-once (signals are visible at commit); "
        "0: every batch",
    )
    commit_max_records: int = setting(
        2000,
        env="METASIGNAL_COMMIT_MAX_RECORDS",
        help="records (votes, outcomes) read since the last commit that make it due; 0: no limit",
    )
    transactional_id: str | None = setting(
        None,
        env="METASIGNAL_TRANSACTIONAL_ID",
        help="transactional id (exactly-once); default <group>-<hostname>-<metrics port>; "
        "keep it stable per replica",
    )
    metrics_port: int = setting(
        9108,
        env="METASIGNAL_METRICS_PORT",
        help="port of /metrics, /healthz, /readyz (-1 disables)",
    )
    metrics_host: str = setting(
        "0.0.0.0",
        env="METASIGNAL_METRICS_HOST",
        help="address /metrics, /healthz, /readyz listen on (127.0.0.1: this host only)",
    )
    missing_members: str = setting(
        "artifact",
        env="METASIGNAL_MISSING_MEMBERS",
        help="vote missing a member: follow the artifact's policy, impute, or reject to DLQ",
        choices=("artifact", "impute", "reject"),
    )
    strict_members: bool = setting(
        False,
        env="METASIGNAL_STRICT_MEMBERS",
        help="unknown or missing members send the vote to the DLQ",
    )
    max_message_bytes: int = setting(
        DEFAULT_MAX_MESSAGE_BYTES,
        env="METASIGNAL_MAX_MESSAGE_BYTES",
        help="larger vote payloads go to the DLQ",
    )
    track_outcomes: bool = setting(
        True,
        env="METASIGNAL_TRACK_OUTCOMES",
        help="join outcomes, write training rows, track drift and send requests",
    )
    join_max_entries: int = setting(
        DEFAULT_JOIN_MAX_ENTRIES,
        env="METASIGNAL_JOIN_MAX_ENTRIES",
        help="scored votes kept waiting for their outcome (oldest dropped first)",
    )
    join_max_bytes: int = setting(
        DEFAULT_JOIN_MAX_BYTES,
        env="METASIGNAL_JOIN_MAX_BYTES",
        help="memory the join cache may hold (oldest votes dropped first)",
    )
    join_ttl_s: float = setting(
        DEFAULT_JOIN_TTL_S,
        env="METASIGNAL_JOIN_TTL_S",
        help="seconds a scored vote waits for its outcome",
    )
    drift_detector: str = setting(
        "cusum",
        env="METASIGNAL_DRIFT_DETECTOR",
        help="detector on the realized positive rate",
        choices=("cusum", "adwin", "page_hinkley"),
    )
    drift_window: int = setting(
        5000, env="METASIGNAL_DRIFT_WINDOW", help="joined outcomes in the rolling quality window"
    )
    drift_label_free: bool = setting(
        True,
        env="METASIGNAL_LABEL_FREE",
        flag="label_free",
        help="estimate the positive rate and quality from the scores; re-tune on label shift early",
    )
    max_vote_age_s: float = setting(
        300.0,
        env="METASIGNAL_MAX_VOTE_AGE_S",
        help="a vote written to Kafka longer ago than this when scored gets a no-trade signal "
        "marked stale (a backlog never trades as live); 0 disables",
    )
    start_from: str = setting(
        "earliest",
        env="METASIGNAL_START_FROM",
        help="where a consumer group with no committed offsets starts reading votes and "
        "outcomes (earliest: nothing skipped, old votes are stale; latest: only new ones)",
        choices=("earliest", "latest"),
    )
    max_outage_s: float = setting(
        0.0,
        env="METASIGNAL_MAX_OUTAGE_S",
        help="exit (one line) when the broker stays unreachable longer than this; "
        "0: wait for it however long (not ready meanwhile)",
    )
    key_file: str | None = setting(
        None,
        env="METASIGNAL_KEY_FILE",
        help="file of signing keys, one per line (else METASIGNAL_SIGNING_KEY, comma-separated)",
    )
    allow_unsigned: bool = setting(
        False,
        env="METASIGNAL_ALLOW_UNSIGNED",
        help="accept unsigned artifacts (local experiments only)",
        type=parse_bool,
        flag="unsigned",
    )
    status_interval_s: float = setting(
        30.0,
        env="METASIGNAL_STATUS_INTERVAL_S",
        help="seconds between one-line status logs (votes/s, signals, DLQ, lag, model); 0 disables",
    )
    lag_interval_s: float = 5.0
    rate_window: int = 10_000
    drift_min_outcomes: int = 2000
    drift_cooldown_outcomes: int = 5000
    drift_settle_outcomes: int = 2000
    drift_snapshot_every: int = 250
    max_failed_batches: int = 5
    model_check_interval_s: float = 0.5
    # The shadow's counts per outcomes partition go out when this many new outcomes were
    # counted or this many seconds passed since its last record (stream/shadow.py); 0 and 0:
    # at every commit that counted some.
    evidence_min_outcomes: int = 1000
    evidence_interval_s: float = 1.0

    def __post_init__(self) -> None:
        interval = self.commit_interval_s
        if (interval is not None and not interval >= 0) or self.commit_max_records < 0:
            raise MetasignalError(
                "--commit-interval-s and --commit-max-records must be >= 0, got "
                f"{interval} and {self.commit_max_records}"
            )
        if not self.poll_linger_ms >= 0:
            raise MetasignalError(f"--poll-linger-ms must be >= 0, got {self.poll_linger_ms}")

    @property
    def commit_policy(self) -> CommitPolicy:
        """When the scorer commits: ``commit_interval_s`` (else the mode's default) or
        ``commit_max_records``, whichever comes first."""
        interval = self.commit_interval_s
        if interval is None:
            interval = EXACTLY_ONCE_INTERVAL_S if self.exactly_once else AT_LEAST_ONCE_INTERVAL_S
        return CommitPolicy(interval_s=interval, max_records=self.commit_max_records)


SCORER_SETTINGS = settings_of(ScorerOptions)
