"""Join late outcomes to the votes they grade, in bounded memory.

Each scored vote is remembered (member votes, score, decision, model version)
until its outcome arrives, its entry outlives ``ttl_s``, or the cache is full
(oldest first). An outcome that overtakes its vote (possible when both are
fresh) is parked until the vote is scored. Votes and outcomes are
co-partitioned by event id, so each scorer only ever needs its own keys.

The entries live in preallocated numpy columns (``max_entries`` slots)
indexed by a ``dict`` of event id to slot: about 170 bytes per entry
instead of ~500 for one Python object per vote, and nothing the cyclic garbage
collector has to walk (a dict of ``str`` to ``int`` is untracked), so a full
cache does not lengthen GC pauses.

Examples
--------
>>> import numpy as np
>>> cache = JoinCache(max_entries=2, ttl_s=60)
>>> for i in (1, 2, 3):
...     cache.remember(f"e{i}", ts_ms=i, votes=np.array([i / 10]), score=i / 10,
...                    decision=0, model_version=3, members=("m1",))
>>> cache.evictions["size"], len(cache)
(1, 2)
>>> cache.match("e1") is None, cache.match("e2").score
(True, 0.2)
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# One default for every layer (options, flags, README): a day covers daily-settled outcomes.
DEFAULT_JOIN_TTL_S = 24 * 3600.0
DEFAULT_JOIN_MAX_ENTRIES = 200_000
# 200,000 entries with ids of up to 256 ASCII characters fit (~110 MB); longer or non-ASCII
# ids evict older entries instead of growing the process (60 KB ids once grew RSS by 91 MB
# per 1,000 votes).
DEFAULT_JOIN_MAX_BYTES = 128 * 1024 * 1024
# An outcome whose vote has not come within this long is counted unmatched, not kept.
DEFAULT_PARK_TTL_S = 600.0
# A dict slot holding an id (key, value, hash, index) on CPython, beyond the str itself.
_DICT_ENTRY_BYTES = 100


@dataclass(frozen=True, slots=True)
class ScoredVote:
    """What the scorer knew when it decided."""

    id: str
    ts_ms: int
    members: tuple[str, ...]
    votes: np.ndarray
    score: float
    decision: int
    model_version: int
    # What the shadow (metasignal.stream.shadow) decided for the same vote; version 0: none.
    shadow_version: int = 0
    shadow_decision: int = -1
    shadow_size: float = 0.0


class JoinCache:
    """Scored votes awaiting their outcomes, bounded by entries, bytes and age.

    Parameters
    ----------
    max_entries
        Votes kept at most (oldest evicted first); also bounds parked outcomes.
    ttl_s
        Seconds a vote waits for its outcome.
    max_bytes
        Bound on :attr:`nbytes` (the columns, sized by ``max_entries``, plus the event ids of
        votes and parked outcomes); the oldest votes are evicted (``"bytes"``) to stay under.
    park_ttl_s
        Seconds an outcome that came before its vote waits for it; then it is counted as
        ``"early"`` (unmatched: no vote).
    clock
        Monotonic seconds (injectable for tests).
    on_evict
        Called with ``"size"``, ``"ttl"`` or ``"early"`` and how many entries were dropped.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_JOIN_MAX_ENTRIES,
        ttl_s: float = DEFAULT_JOIN_TTL_S,
        max_bytes: int = DEFAULT_JOIN_MAX_BYTES,
        park_ttl_s: float = DEFAULT_PARK_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.clock = clock
        self.on_evict = on_evict
        self.max_bytes = max_bytes
        self.park_ttl_s = park_ttl_s
        self.evictions = {"size": 0, "ttl": 0, "bytes": 0, "early": 0}
        self._id_bytes = 0
        self._slot_of: dict[str, int] = {}
        self._ids: list[str | None] = [None] * max_entries
        self._free = np.arange(max_entries - 1, -1, -1, dtype=np.int64)  # a stack of free slots
        self._n_free = max_entries
        # Insertion order: (slot, sequence number) pairs in a ring twice the capacity. Matched
        # entries stay in it as stale pairs (their slot's sequence number moved on) and are
        # skipped at the front or squeezed out when the ring fills up.
        self._seq = np.full(max_entries, -1, dtype=np.int64)
        self._order_slot = np.zeros(2 * max_entries, dtype=np.int64)
        self._order_seq = np.zeros(2 * max_entries, dtype=np.int64)
        self._head = 0
        self._tail = 0
        self._next_seq = 0
        self._ts_ms = np.zeros(max_entries, dtype=np.int64)
        self._score = np.zeros(max_entries, dtype=np.float64)
        self._decision = np.zeros(max_entries, dtype=np.int8)
        self._version = np.zeros(max_entries, dtype=np.int64)
        self._shadow_version = np.zeros(max_entries, dtype=np.int64)
        self._shadow_decision = np.zeros(max_entries, dtype=np.int8)
        self._shadow_size = np.zeros(max_entries, dtype=np.float32)
        self._born = np.zeros(max_entries, dtype=np.float64)
        self._layout = np.zeros(max_entries, dtype=np.int32)
        self._votes = np.zeros((max_entries, 0), dtype=np.float64)
        self._layouts: list[tuple[str, ...]] = []
        self._early: OrderedDict[str, tuple[int, float]] = OrderedDict()
        if self.nbytes >= max_bytes:
            raise ValueError(
                f"max_bytes {max_bytes} does not even hold the columns of {max_entries} "
                f"entries ({self.nbytes} bytes)"
            )

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def nbytes(self) -> int:
        """Memory held: the preallocated columns plus the ids of votes and parked outcomes."""
        columns = (
            self._free, self._seq, self._order_slot, self._order_seq, self._ts_ms,
            self._score, self._decision, self._version, self._born, self._layout, self._votes,
            self._shadow_version, self._shadow_decision, self._shadow_size,
        )  # fmt: skip
        return sum(c.nbytes for c in columns) + 8 * len(self._ids) + self._id_bytes

    @staticmethod
    def _id_cost(event_id: str) -> int:
        return sys.getsizeof(event_id) + _DICT_ENTRY_BYTES

    def remember(
        self,
        event_id: str,
        *,
        ts_ms: int,
        votes: np.ndarray,
        score: float,
        decision: int,
        model_version: int,
        members: Sequence[str],
    ) -> None:
        """Keep one scored vote; ``votes`` follow ``members`` (the model's order)."""
        self.remember_batch(
            [event_id],
            ts_ms=np.array([ts_ms]),
            votes=np.asarray(votes, dtype=np.float64).reshape(1, -1),
            scores=np.array([score]),
            decisions=np.array([decision]),
            model_version=model_version,
            members=members,
        )

    def remember_batch(
        self,
        event_ids: Sequence[str],
        *,
        ts_ms: np.ndarray,
        votes: np.ndarray,
        scores: np.ndarray,
        decisions: np.ndarray,
        model_version: int,
        members: Sequence[str],
        shadow_version: int = 0,
        shadow_decisions: np.ndarray | None = None,
        shadow_sizes: np.ndarray | None = None,
    ) -> None:
        """Keep a batch scored by one model, as ``remember`` one by one would, but vectorised.

        ``shadow_decisions`` (one per vote, -1 where the shadow did not decide) and
        ``shadow_sizes`` are those of shadow ``shadow_version``, scored beside the champion.
        """
        n = len(event_ids)
        if n == 0:
            return
        if not self._slot_of.keys().isdisjoint(event_ids):
            # A replayed vote (at-least-once) refreshes its entry rather than duplicating it.
            replayed = {self._slot_of[e] for e in event_ids if e in self._slot_of}
            self._release(np.array(sorted(replayed), dtype=np.int64))
        if len(set(event_ids)) < n or n > self.max_entries:
            # Rare (a vote repeated within a batch, or a batch larger than the cache): the last
            # occurrence wins and only the newest max_entries can stay.
            last = {event_id: i for i, event_id in enumerate(event_ids)}
            keep = np.array(sorted(last.values()), dtype=np.intp)[-self.max_entries :]
            self._evicted("size", len(last) - len(keep))
            event_ids = [event_ids[i] for i in keep]
            ts_ms, votes = ts_ms[keep], votes[keep]
            scores, decisions = scores[keep], decisions[keep]
            if shadow_decisions is not None:
                shadow_decisions = shadow_decisions[keep]
            if shadow_sizes is not None:
                shadow_sizes = shadow_sizes[keep]
            n = len(event_ids)
        now = self.clock()
        if n > self._n_free:
            self._evict(self._take_oldest(n - self._n_free), "size")
        slots = self._free[self._n_free - n : self._n_free][::-1].copy()
        self._n_free -= n
        self._push_order(slots)
        slot_list = slots.tolist()
        self._slot_of.update(zip(event_ids, slot_list, strict=True))
        ids = self._ids
        for slot, event_id in zip(slot_list, event_ids, strict=True):
            ids[slot] = event_id
        self._id_bytes += sum(map(sys.getsizeof, event_ids)) + _DICT_ENTRY_BYTES * n
        self._ts_ms[slots] = ts_ms
        self._score[slots] = scores
        self._decision[slots] = decisions
        self._version[slots] = model_version
        self._shadow_version[slots] = shadow_version if shadow_decisions is not None else 0
        self._shadow_decision[slots] = -1 if shadow_decisions is None else shadow_decisions
        self._shadow_size[slots] = 0.0 if shadow_sizes is None else shadow_sizes
        self._born[slots] = now
        self._layout[slots] = self._layout_index(tuple(members))
        self._votes[slots, : votes.shape[1]] = votes
        self.expire(now)
        self._enforce_bytes()

    def _enforce_bytes(self) -> None:
        """Evict the oldest votes, then the oldest parked outcomes, until under ``max_bytes``."""
        while self.nbytes > self.max_bytes and len(self):
            excess = self.nbytes - self.max_bytes
            average = max(self._id_bytes // max(len(self) + len(self._early), 1), 1)
            self._evict(self._take_oldest(max(excess // average, 1)), "bytes")
        while self.nbytes > self.max_bytes and self._early:
            self._pop_early()

    def _push_order(self, slots: np.ndarray) -> None:
        ring = len(self._order_slot)
        if self._tail - self._head + len(slots) > ring:
            self._compact_order()
        seqs = np.arange(self._next_seq, self._next_seq + len(slots), dtype=np.int64)
        self._next_seq += len(slots)
        self._seq[slots] = seqs
        positions = np.arange(self._tail, self._tail + len(slots)) % ring
        self._order_slot[positions] = slots
        self._order_seq[positions] = seqs
        self._tail += len(slots)

    def _compact_order(self) -> None:
        # At most max_entries pairs are live, so this frees at least half the ring: O(1) amortised.
        ring = len(self._order_slot)
        positions = np.arange(self._head, self._tail) % ring
        slots, seqs = self._order_slot[positions], self._order_seq[positions]
        live = self._seq[slots] == seqs
        n = int(live.sum())
        self._order_slot[:n], self._order_seq[:n] = slots[live], seqs[live]
        self._head, self._tail = 0, n

    def _oldest_slot(self) -> int | None:
        """Slot of the oldest live entry, dropping stale pairs on the way."""
        ring = len(self._order_slot)
        while self._head < self._tail:
            slot = int(self._order_slot[self._head % ring])
            if self._seq[slot] == self._order_seq[self._head % ring]:
                return slot
            self._head += 1
        return None

    def _take_oldest(self, count: int, *, born_before: float = math.inf) -> np.ndarray:
        """Slots of up to ``count`` oldest live entries, stopping at one born at or after
        ``born_before``; they leave the insertion order (the caller releases them)."""
        ring = len(self._order_slot)
        taken: list[np.ndarray] = []
        while count > 0 and self._head < self._tail:
            span = min(self._tail - self._head, 2 * count + 64)
            positions = np.arange(self._head, self._head + span) % ring
            slots = self._order_slot[positions]
            live = self._seq[slots] == self._order_seq[positions]
            young = np.flatnonzero(live & (self._born[slots] >= born_before))
            end = int(young[0]) if len(young) else span
            chosen = np.flatnonzero(live[:end])[:count]
            if len(chosen) == count:
                end = int(chosen[-1]) + 1
            taken.append(slots[chosen])
            count -= len(chosen)
            self._head += end
            if len(young):
                break
        return np.concatenate(taken) if taken else np.empty(0, dtype=np.int64)

    def _layout_index(self, members: tuple[str, ...]) -> int:
        # Member lists change only when a new model is swapped in: a short list suffices.
        for index in range(len(self._layouts) - 1, -1, -1):
            if self._layouts[index] == members:
                return index
        self._layouts.append(members)
        if len(members) > self._votes.shape[1]:
            widened = np.zeros((self.max_entries, len(members)), dtype=np.float64)
            widened[:, : self._votes.shape[1]] = self._votes
            self._votes = widened
        return len(self._layouts) - 1

    def expire(self, now: float | None = None) -> None:
        """Drop entries older than the TTL (insertion order is age order)."""
        now = self.clock() if now is None else now
        early_cutoff = now - self.park_ttl_s
        while self._early and next(iter(self._early.values()))[1] < early_cutoff:
            self._pop_early()
        cutoff = now - self.ttl_s
        oldest = self._oldest_slot()
        if oldest is None or self._born[oldest] >= cutoff:
            return
        self._evict(self._take_oldest(len(self), born_before=cutoff), "ttl")

    def park(self, event_id: str, label: int) -> None:
        """Keep an outcome that arrived before its vote (bounded like the votes)."""
        previous = self._early.pop(event_id, None)
        if previous is None:
            self._id_bytes += self._id_cost(event_id)
        self._early[event_id] = (label, self.clock())
        while len(self._early) > self.max_entries:
            self._pop_early()
        self._enforce_bytes()

    def _pop_early(self) -> None:
        """The oldest parked outcome leaves unmatched."""
        event_id, _ = self._early.popitem(last=False)
        self._id_bytes -= self._id_cost(event_id)
        self._evicted("early", 1)

    @property
    def parked(self) -> int:
        """Outcomes waiting for their vote."""
        return len(self._early)

    def claim(self, event_id: str) -> int | None:
        """The parked label of a vote that has just been scored, if its outcome came first."""
        parked = self._early.pop(event_id, None)
        if parked is None:
            return None
        self._id_bytes -= self._id_cost(event_id)
        return parked[0]

    def match(self, event_id: str) -> ScoredVote | None:
        """The vote an outcome grades, removed from the cache; ``None`` if unknown or evicted."""
        slot = self._slot_of.get(event_id)
        if slot is None:
            return None
        members = self._layouts[int(self._layout[slot])]
        scored = ScoredVote(
            id=event_id,
            ts_ms=int(self._ts_ms[slot]),
            members=members,
            votes=self._votes[slot, : len(members)].copy(),
            score=float(self._score[slot]),
            decision=int(self._decision[slot]),
            model_version=int(self._version[slot]),
            shadow_version=int(self._shadow_version[slot]),
            shadow_decision=int(self._shadow_decision[slot]),
            shadow_size=float(self._shadow_size[slot]),
        )
        self._release(np.array([slot], dtype=np.int64))
        return scored

    def _release(self, slots: np.ndarray) -> None:
        ids, slot_of = self._ids, self._slot_of
        freed = 0
        for slot in slots.tolist():
            event_id = ids[slot]
            assert event_id is not None  # a live slot always holds its id
            del slot_of[event_id]
            ids[slot] = None
            freed += sys.getsizeof(event_id) + _DICT_ENTRY_BYTES
        self._id_bytes -= freed
        self._seq[slots] = -1
        self._free[self._n_free : self._n_free + len(slots)] = slots
        self._n_free += len(slots)

    def _evict(self, slots: np.ndarray, reason: str) -> None:
        self._release(slots)
        self._evicted(reason, len(slots))

    def _evicted(self, reason: str, count: int = 1) -> None:
        if count:
            self.evictions[reason] += count
            if self.on_evict is not None:
                self.on_evict(reason, count)
