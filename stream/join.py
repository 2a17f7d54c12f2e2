"""Join late outcomes to the votes they grade, in bounded memory.

Each scored vote is remembered (member votes, score, decision, model version)
until its outcome arrives, its entry outlives ``ttl_s``, or the cache is full
(oldest first). An outcome that overtakes its vote (possible when both are
fresh) is parked until the vote is scored. Votes and outcomes are
co-partitioned by event id, so each scorer only ever needs its own keys.

Examples
--------
>>> import numpy as np
>>> cache = JoinCache(max_entries=2, ttl_s=60)
>>> cache.remember("e1", ts_ms=1, votes=np.array([0.2]), score=0.9, decision=1, model_version=3)
>>> cache.remember("e2", ts_ms=2, votes=np.array([0.4]), score=0.1, decision=0, model_version=3)
>>> cache.remember("e3", ts_ms=3, votes=np.array([0.6]), score=0.2, decision=0, model_version=3)
>>> cache.evictions["size"], len(cache)
(1, 2)
>>> cache.match("e1") is None, cache.match("e2").score
(True, 0.1)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ScoredVote:
    """What the scorer knew when it decided."""

    id: str
    ts_ms: int
    votes: np.ndarray
    score: float
    decision: int
    model_version: int
    remembered_at: float


@dataclass
class JoinCache:
    """Bounded by entries and age; counts what it had to drop."""

    max_entries: int = 200_000
    ttl_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    on_evict: Callable[[str], None] | None = None
    evictions: dict[str, int] = field(default_factory=lambda: {"size": 0, "ttl": 0, "early": 0})
    _entries: OrderedDict[str, ScoredVote] = field(default_factory=OrderedDict)
    _early: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if self.ttl_s <= 0:
            raise ValueError("ttl_s must be positive")

    def __len__(self) -> int:
        return len(self._entries)

    def remember(
        self,
        event_id: str,
        *,
        ts_ms: int,
        votes: np.ndarray,
        score: float,
        decision: int,
        model_version: int,
    ) -> None:
        # A replayed vote (at-least-once) refreshes its entry rather than duplicating it.
        self._entries.pop(event_id, None)
        self._entries[event_id] = ScoredVote(
            id=event_id,
            ts_ms=ts_ms,
            votes=votes,
            score=score,
            decision=decision,
            model_version=model_version,
            remembered_at=self.clock(),
        )
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._evicted("size")
        self.expire()

    def expire(self) -> None:
        """Drop entries older than the TTL (insertion order is age order)."""
        cutoff = self.clock() - self.ttl_s
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.remembered_at >= cutoff:
                break
            self._entries.popitem(last=False)
            self._evicted("ttl")

    def park(self, event_id: str, label: int) -> None:
        """Keep an outcome that arrived before its vote (bounded like the votes)."""
        self._early[event_id] = label
        while len(self._early) > self.max_entries:
            self._early.popitem(last=False)
            self._evicted("early")

    def claim(self, event_id: str) -> int | None:
        """The parked label of a vote that has just been scored, if its outcome came first."""
        return self._early.pop(event_id, None)

    def _evicted(self, reason: str) -> None:
        self.evictions[reason] += 1
        if self.on_evict is not None:
            self.on_evict(reason)

    def match(self, event_id: str) -> ScoredVote | None:
        """The vote an outcome grades, removed from the cache; ``None`` if unknown or evicted."""
        return self._entries.pop(event_id, None)
