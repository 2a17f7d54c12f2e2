"""The shadow slot at work in a scorer: scored beside the champion, counted on outcomes.

The shadow (:class:`metasignal.stream.lineup.Lineup`) scores every vote the champion
scores, in one extra vectorised predict per batch; it emits no signal and trades
nothing. Its decisions are remembered in the join cache next to the champion's, and
each joined outcome of the current pair adds to the eight paired counts
(:func:`~metasignal.stream.drift.promotion.paired_counts`: label, champion's decision,
shadow's decision) of the outcomes partition it came from, with the PnL sums.

The scorer does not judge. It publishes a partition's cumulative counts on the compacted
``evidence`` topic (:class:`~metasignal.stream.messages.ShadowEvidence`) inside a commit
(exactly-once: in the transaction that commits the offsets), at the first commit after
``evidence_min_outcomes`` (1,000) new outcomes were counted on it or ``evidence_interval_s``
(1 s) passed since its last record, whichever first; every partition's held-back counts go
out before its partitions leave (a rebalance, a close), and an idle scorer commits them
when due. The trainer sums the latest counts of every partition for the pair and runs the
one sequential test (:mod:`metasignal.trainer.shadow`): two replicas never race two tests
on half the data.

Why a bound: exactly-once commits every 20 ms, so publishing at every commit made up to
50 records/s per partition, each one a re-check by the trainer; the test looks every few
hundred summed outcomes and a decision takes thousands, so one record a second per
partition delays a verdict by at most a second (or ``evidence_min_outcomes`` outcomes per
partition in a burst) and costs nothing in power. Measured on the memory bus (4 partitions,
a shadow, 10 s): exactly-once at 1,000 events/s 75 records/s before, 4.0 after; at 3,000
events/s 56 and 4.0; at-least-once (250 ms commits) at 1,000 events/s 13.2 and 3.6.

A replica assigned a partition (start-up, restart, rebalance) continues from that
partition's last published counts for the current pair. A rolled-back span's counts are
dropped with it (they are counted again when it is read again). What a crash (a kill,
no close) costs, per partition:

* exactly-once: the outcomes counted since the partition's last record, whose offsets
  were committed without them: fewer than ``evidence_min_outcomes``, and at most
  ``evidence_interval_s`` seconds' worth. Never one counted twice (a record is visible only with
  the offsets it counts). This loss is accepted rather than publishing at every commit:
  the lost outcomes are a stretch of time chosen by the crash, not by which model was
  right, so the test's error rates are unchanged and it only sees fewer outcomes; and the
  same crash already loses far more, every scored vote still waiting in the in-memory join
  cache for its outcome. ``evidence_min_outcomes=0, evidence_interval_s=0`` publishes at
  every commit that counted outcomes: then nothing is lost.
* at-least-once: counts are flushed before the offsets are committed, so a process
  that dies between the two has published counts that include the span its successor
  reads again: each such crash counts at most one commit span's joined outcomes twice
  (``commit_max_records`` records, or ``commit_interval_s`` of them, plus one batch);
  or it loses, as exactly-once, those counted since the partition's last record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from metasignal.stream.drift.promotion import paired_counts
from metasignal.stream.evidence import EvidenceLog, sign_evidence
from metasignal.stream.join import ScoredVote
from metasignal.stream.lineup import Role
from metasignal.stream.messages import (
    EVIDENCE_SCHEMA_VERSION,
    ShadowEvidence,
    encode_shadow_evidence,
    vote_matrix,
)
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.options import ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.step import ScoredBatch
from metasignal.stream.topics import evidence_key
from metasignal.stream.transport.base import TransportError

log = logging.getLogger("metasignal.scorer")


@dataclass(frozen=True, slots=True)
class ShadowScores:
    """The shadow's decisions for a scored batch (-1 where it could not score a vote) and
    its position sizes (0 where it does not trade)."""

    version: int
    decisions: np.ndarray
    sizes: np.ndarray


def f1(true_positives: int, false_positives: int, false_negatives: int) -> float:
    """F1 from counts; NaN when there is neither a trade nor a positive.

    >>> f1(3, 1, 2), f1(0, 0, 0)
    (0.6666666666666666, nan)
    """
    denominator = 2 * true_positives + false_positives + false_negatives
    return math.nan if denominator == 0 else 2 * true_positives / denominator


def role_f1(counts: np.ndarray) -> tuple[float, float]:
    """``(champion F1, shadow F1)`` from the eight paired counts (index ``4 y + 2 b + c``).

    >>> role_f1(np.array([90, 0, 0, 0, 0, 0, 5, 5]))
    (1.0, 0.6666666666666666)
    """
    n = counts.tolist()
    champion = f1(n[6] + n[7], n[2] + n[3], n[4] + n[5])
    shadow = f1(n[5] + n[7], n[1] + n[3], n[4] + n[6])
    return champion, shadow


class ShadowSlot:
    """Scores the shadow and counts its paired evidence per outcomes partition."""

    def __init__(self, *, options: ScorerOptions, metrics: ScorerMetrics) -> None:
        self.options = options
        self.metrics = metrics
        self.champion: CompiledModel | None = None
        self.model: CompiledModel | None = None
        self.role: Role | None = None
        self.log: EvidenceLog | None = None  # set by the scorer: counts read back
        self.signing_key: bytes | None = None  # set by the scorer: evidence is signed
        self.owned: set[int] = set()  # outcomes partitions this replica owns
        # Per outcomes partition: counts (8) and PnL sums (champion, shadow) in memory, and
        # as last committed. Rolling back a span returns to the committed ones.
        self._counts: dict[int, np.ndarray] = {}
        self._pnl: dict[int, np.ndarray] = {}
        self._committed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._published: dict[int, np.ndarray] = {}  # the counts the evidence topic holds
        self._published_at: dict[int, float] = {}  # when (clock) they were sent
        self._sent: dict[int, np.ndarray] = {}  # sent in the open commit, not committed yet
        self.final = False  # set by the scorer: every held-back count goes out (leaving)
        self.clock = time.monotonic
        self._unread: set[int] = set()  # assigned, published counts not read back yet
        self._batch: list[tuple[int, int, int, int, float, float]] = []

    @property
    def pair(self) -> tuple[int | None, int | None, Role | None]:
        """``(champion version, shadow version, role)`` being compared."""
        champion = None if self.champion is None else self.champion.version
        shadow = None if self.model is None else self.model.version
        return champion, shadow, self.role

    @property
    def n_outcomes(self) -> int:
        """Joined outcomes of the pair counted on this replica's partitions."""
        return int(sum(int(counts.sum()) for counts in self._counts.values()))

    def describe(self) -> str | None:
        """One phrase for the status line: role, version, progress; ``None``: empty slot.

        >>> from metasignal.stream.artifact import example_artifact
        >>> slot = ShadowSlot(options=ScorerOptions(), metrics=ScorerMetrics())
        >>> model = CompiledModel.from_artifact(example_artifact())
        >>> slot.describe() is None
        True
        >>> slot.sync(model, model, "challenger"); slot.describe()
        'challenger v1, 0 joined outcomes counted on this replica (the trainer judges)'
        """
        if self.model is None or self.role is None:
            return None
        return (
            f"{self.role} v{self.model.version}, {self.n_outcomes:,} joined outcomes counted "
            "on this replica (the trainer judges)"
        )

    def sync(
        self, champion: CompiledModel | None, shadow: CompiledModel | None, role: Role | None
    ) -> None:
        """The lineup changed: a new pair is counted afresh (from its published counts)."""
        before = self.pair
        self.champion, self.model, self.role = champion, shadow, role
        if self.pair == before:
            return
        self.metrics.shadow_info.clear()
        self._batch = []
        self._counts, self._pnl, self._committed, self._published = {}, {}, {}, {}
        self._published_at, self._sent = {}, {}
        self._unread = set()
        for gauge_role in ("champion", "shadow"):
            self.metrics.live_f1.labels(role=gauge_role).set(math.nan)
            self.metrics.live_pnl.labels(role=gauge_role).set(math.nan)
        if shadow is None or role is None:
            return
        self.metrics.shadow_info.labels(version=str(shadow.version), role=role).set(1)
        self.assigned(self.owned)
        log.info(
            "shadow: counting %s v%d against champion v%d on joined outcomes",
            role,
            shadow.version,
            self.pair[0],
        )

    def assigned(self, partitions: Iterable[int]) -> None:
        """Outcomes ``partitions`` are this replica's now: continue from their published
        counts for the current pair (another replica's, or this one's before a restart)."""
        partitions = set(partitions)
        self.owned |= partitions
        if self.champion is None or self.model is None or not partitions:
            return
        for partition in partitions:
            counts, pnl = np.zeros(8, dtype=np.int64), np.zeros(2)
            self._counts[partition], self._pnl[partition] = counts.copy(), pnl.copy()
            self._committed[partition] = (counts, pnl)
            self._published[partition] = counts
            # Its last record is recent (a restart, a rebalance): the bound applies from now.
            self._published_at[partition] = self.clock()
        self._unread |= partitions
        self._read_back()

    def _read_back(self) -> bool:
        """Add the published counts of newly assigned partitions once the ``evidence`` topic
        is read to its end; until then (an outage) they are counted but not published, so
        counts from zero never overwrite a partition's published ones. False meanwhile."""
        champion, shadow = self.champion, self.model
        if not self._unread or champion is None or shadow is None:
            return True
        if self.log is not None:
            try:
                caught_up = self.log.catch_up()
            except TransportError as exc:
                log.warning("shadow: cannot read the evidence topic (%s)", exc)
                caught_up = False
            if not caught_up:
                log.warning(
                    "shadow: partitions %s publish no counts until the evidence topic is read",
                    sorted(self._unread),
                )
                return False
            pair = (champion.name, champion.version, shadow.version)
            for partition in sorted(self._unread):
                published = self.log.partition(pair, partition)
                if published is None:
                    continue
                base = np.asarray(published["counts"], dtype=np.int64)
                base_pnl = np.asarray(published["pnl"] or (0.0, 0.0), dtype=np.float64)
                self._counts[partition] += base
                self._pnl[partition] += base_pnl
                counts, pnl = self._committed[partition]
                self._committed[partition] = (counts + base, pnl + base_pnl)
                self._published[partition] = base
                log.info(
                    "shadow: partition %d continues from %d published outcomes",
                    partition,
                    int(base.sum()),
                )
        self._unread.clear()
        self._gauge()
        return True

    def revoked(self, partitions: Iterable[int]) -> None:
        """Outcomes ``partitions`` went to another replica (their span is settled first)."""
        for partition in partitions:
            self.owned.discard(partition)
            self._unread.discard(partition)
            for table in (self._counts, self._pnl, self._committed, self._published):
                table.pop(partition, None)
            self._published_at.pop(partition, None)
            self._sent.pop(partition, None)
        self._gauge()

    def score(self, batch: ScoredBatch, champion: CompiledModel) -> ShadowScores | None:
        """The shadow's decisions for the batch's valid votes (stale votes: no trade)."""
        model = self.model
        if model is None or not batch.good or self.role is None:
            return None
        if model.members == champion.members:
            matrix = batch.matrix
            unusable = np.zeros(len(batch.good), dtype=bool)
        else:
            matrix, errors = vote_matrix(
                [vote for _, vote in batch.good],
                model.members,
                reject_unknown=False,
                reject_missing=False,
            )
            unusable = np.array([error is not None for error in errors], dtype=bool)
        scores = model.predict_proba(matrix)
        decisions, sizes = model.decide(scores), model.size(scores)
        stale = batch.stale if batch.stale is not None else False
        if batch.stale is not None or unusable.any():
            # Stale votes never trade, the champion's included; unusable ones are not compared.
            decisions = np.where(unusable, -1, np.where(stale, 0, decisions)).astype(np.int8)
            sizes = np.where(unusable | stale, 0.0, sizes)
        return ShadowScores(version=model.version, decisions=decisions, sizes=sizes)

    def observe(self, scored: ScoredVote, label: int, partition: int) -> None:
        """One joined outcome of outcomes ``partition``; counted when both decisions were
        made by the current pair."""
        champion, shadow, _ = self.pair
        if (
            self.role is None
            or scored.shadow_decision < 0
            or scored.model_version != champion
            or scored.shadow_version != shadow
        ):
            return
        self._batch.append(
            (
                partition,
                label,
                scored.decision,
                scored.shadow_decision,
                scored.score,
                scored.shadow_size,
            )
        )

    @property
    def payoff_ratio(self) -> float | None:
        """Mean win over mean loss of a trade, from the champion's artifact (else the
        shadow's): one yardstick for both PnL figures; ``None`` without a payoff."""
        for model in (self.champion, self.model):
            if model is not None and model.sizing.payoff_ratio is not None:
                return float(model.sizing.payoff_ratio)
        return None

    def flush(self) -> None:
        """Count the outcomes gathered since the last call (once per batch)."""
        if not self._batch:
            return
        columns = np.array(self._batch, dtype=np.float64)
        self._batch = []
        self.metrics.shadow_outcomes.inc(len(columns))
        partitions = columns[:, 0].astype(np.int64)
        for partition in np.unique(partitions).tolist():
            rows = columns[partitions == partition]
            labels, incumbent, challenger = (rows[:, i].astype(np.int8) for i in (1, 2, 3))
            counts = self._counts.setdefault(partition, np.zeros(8, dtype=np.int64))
            counts += paired_counts(labels, incumbent, challenger)
            pnl = self._pnl.setdefault(partition, np.zeros(2))
            pnl += self._gain(labels, incumbent, rows[:, 4], rows[:, 5])
        self._gauge()

    def _gain(
        self, labels: np.ndarray, incumbent: np.ndarray, scores: np.ndarray, sizes: np.ndarray
    ) -> np.ndarray:
        """PnL per role: a trade of size s wins ``payoff_ratio * s`` or loses ``s``."""
        ratio, champion = self.payoff_ratio, self.champion
        if ratio is None or champion is None:
            return np.zeros(2)
        outcome = np.where(labels == 1, ratio, -1.0)
        champion_sizes = np.where(incumbent == 1, champion.size(scores), 0.0)
        return np.array([float(champion_sizes @ outcome), float(sizes @ outcome)])

    def _gauge(self) -> None:
        """Live F1 and PnL per role over this replica's partitions."""
        if not self._counts:
            return
        counts = np.sum(list(self._counts.values()), axis=0)
        # The predecessor is the shadow in both roles' gauges: "shadow" is the slot.
        for role, value in zip(("champion", "shadow"), role_f1(counts), strict=True):
            self.metrics.live_f1.labels(role=role).set(value)
        if self.payoff_ratio is not None:
            pnl = np.sum(list(self._pnl.values()), axis=0)
            for role, value in zip(("champion", "shadow"), pnl.tolist(), strict=True):
                self.metrics.live_pnl.labels(role=role).set(value)

    def _due(self, partition: int, counts: np.ndarray, now: float) -> bool:
        """Whether ``partition``'s counts go out in this commit (module docstring)."""
        if partition in self._unread:
            return False
        published = self._published.get(partition)
        if published is None:
            return True
        new = int(counts.sum()) - int(published.sum())
        if new == 0 and np.array_equal(published, counts):
            return False
        if self.final:
            return True
        min_outcomes = self.options.evidence_min_outcomes
        if min_outcomes <= 0 or new >= min_outcomes:
            return True
        since = now - self._published_at.get(partition, -math.inf)
        return since >= self.options.evidence_interval_s

    def held(self) -> bool:
        """Whether some partition's counts are due but were not sent (the scorer commits them
        even when it has nothing else to commit: an idle scorer, a rebalance, a close)."""
        if self.champion is None or self.model is None:
            return False
        self.flush()
        now = self.clock()
        return any(self._due(p, counts, now) for p, counts in self._counts.items())

    def evidence(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` of each partition whose counts are due (changed since its last
        record, and enough of them or long enough ago): sent by the scorer just before it
        commits (module docstring)."""
        champion, shadow = self.champion, self.model
        if champion is None or shadow is None:
            return []
        self.flush()
        self._read_back()
        has_pnl = self.payoff_ratio is not None
        now = self.clock()
        out = []
        for partition, counts in sorted(self._counts.items()):
            if not self._due(partition, counts, now):
                continue
            self._sent[partition] = counts.copy()
            record = ShadowEvidence(
                schema_version=EVIDENCE_SCHEMA_VERSION,
                model=champion.name,
                champion=champion.version,
                shadow=shadow.version,
                partition=partition,
                counts=[int(c) for c in counts],
                pnl=[float(v) for v in self._pnl[partition]] if has_pnl else None,
                source=self.options.group_id,
                at=int(time.time() * 1000),
            )
            if self.signing_key is not None:
                record = sign_evidence(record, self.signing_key)
            key = evidence_key(champion.name, champion.version, shadow.version, partition)
            out.append((key, encode_shadow_evidence(record)))
        return out

    def committed(self) -> None:
        """The span committed: its counts are the ones a successor continues from (those
        sent with it, exactly-once; module docstring)."""
        for partition, counts in self._counts.items():
            self._committed[partition] = (counts.copy(), self._pnl[partition].copy())
        now = self.clock()
        for partition, sent in self._sent.items():  # sent just before this commit (evidence())
            if partition in self._counts:
                self._published[partition], self._published_at[partition] = sent, now
        self._sent = {}

    def rolled_back(self) -> None:
        """The span is read again: its counts are dropped (counted again then)."""
        self._batch = []
        self._sent = {}
        for partition in list(self._counts):
            if partition in self._committed:
                counts, pnl = self._committed[partition]
                self._counts[partition], self._pnl[partition] = counts.copy(), pnl.copy()
            else:
                del self._counts[partition]
                self._pnl.pop(partition, None)
        self._gauge()
