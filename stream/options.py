"""How the scorer runs: one frozen options object (see :mod:`metasignal.stream.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from metasignal.stream.messages import DEFAULT_MAX_MESSAGE_BYTES
from metasignal.stream.topics import Topics


@dataclass(frozen=True, kw_only=True)
class ScorerOptions:
    """How the scorer runs (see :mod:`metasignal.stream.config` for flags and env vars)."""

    topics: Topics = field(default_factory=Topics)
    group_id: str = "metasignal-scorer"
    model_name: str = "meta"
    batch_size: int = 500
    poll_timeout_ms: int = 100
    exactly_once: bool = False
    transactional_id: str | None = None
    missing_members: str = "artifact"
    strict_members: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    allow_unsigned: bool = False
    lag_interval_s: float = 5.0
    rate_window: int = 10_000
    track_outcomes: bool = True
    join_max_entries: int = 200_000
    join_ttl_s: float = 24 * 3600.0
    drift_detector: str = "cusum"
    drift_window: int = 5000
    drift_min_outcomes: int = 2000
    drift_cooldown_outcomes: int = 5000
    drift_settle_outcomes: int = 2000
    drift_snapshot_every: int = 250
    max_failed_batches: int = 5
    model_check_interval_s: float = 0.5
