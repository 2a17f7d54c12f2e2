"""Partition ownership: what a scorer replica does when a rebalance moves its partitions.

Rebalances only happen inside ``poll``, and the scorer finishes each batch before
the next ``poll``, so a revoked partition never has a batch in flight; only the
open span (:mod:`~metasignal.stream.settlement`) is. :class:`Ownership` commits it
before partitions are revoked (if that fails it is dropped: the next owner reads
from the committed offsets), drops it when they were lost (another replica owns
them already), and tells the shadow's counts and the lag gauges which partitions
are this replica's. :func:`check_co_partitioning` refuses to start a join over
topics whose keys would land on different replicas.

Examples
--------
>>> from metasignal.stream.transport.base import TopicSpec
>>> from metasignal.stream.transport.memory import MemoryBus
>>> bus = MemoryBus()
>>> _ = bus.create_topics([TopicSpec("votes", 4), TopicSpec("outcomes", 4), TopicSpec("o2", 2)])
>>> check_co_partitioning(bus, votes="votes", outcomes="outcomes")  # same count: fine
>>> check_co_partitioning(bus, votes="votes", outcomes="o2")
Traceback (most recent call last):
...
metasignal.stream.errors.MetasignalError: topics votes (4 partitions) and o2 (2) are not \
co-partitioned: give them the same partition count
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from metasignal.stream.errors import MetasignalError
from metasignal.stream.lag import PartitionLag
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.settlement import Settlement
from metasignal.stream.transport.base import (
    RebalanceListener,
    TopicPartition,
    Transport,
    TransportError,
)

__all__ = ["Ownership", "check_co_partitioning"]

log = logging.getLogger("metasignal.scorer")


def check_co_partitioning(transport: Transport, *, votes: str, outcomes: str) -> None:
    """Votes and outcomes must share partitioning so each scorer joins its own keys.

    Raises :class:`MetasignalError` (one line) when their partition counts differ.
    """
    n_votes = transport.partition_count(votes)
    n_outcomes = transport.partition_count(outcomes)
    if n_votes is not None and n_outcomes is not None and n_votes != n_outcomes:
        raise MetasignalError(
            f"topics {votes} ({n_votes} partitions) and {outcomes} ({n_outcomes}) are not "
            "co-partitioned: give them the same partition count"
        )


class Ownership:
    """The rebalance callbacks of one scorer's votes consumer (module docstring).

    Parameters
    ----------
    outcomes_topic
        The outcomes topic; its partitions carry the shadow's counts.
    metrics
        ``metasignal_rebalances_total{kind}``.
    lag
        Forgets the series of revoked or lost partitions.
    on_outcomes_assigned, on_outcomes_revoked
        Called with the outcome partition numbers gained or given up (revoked or lost).

    ``settlement`` is set once the consumer (which needs these callbacks) exists.
    """

    def __init__(
        self,
        *,
        outcomes_topic: str,
        metrics: ScorerMetrics,
        lag: PartitionLag,
        on_outcomes_assigned: Callable[[list[int]], None],
        on_outcomes_revoked: Callable[[list[int]], None],
    ) -> None:
        self.outcomes_topic = outcomes_topic
        self.metrics = metrics
        self.lag = lag
        self.on_outcomes_assigned = on_outcomes_assigned
        self.on_outcomes_revoked = on_outcomes_revoked
        self.settlement: Settlement | None = None

    def listener(self) -> RebalanceListener:
        return RebalanceListener(
            on_revoked=self.revoked, on_assigned=self.assigned, on_lost=self.lost
        )

    def _outcome_partitions(self, partitions: set[TopicPartition]) -> list[int]:
        return [tp.partition for tp in partitions if tp.topic == self.outcomes_topic]

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """Commit the open span, so the next owner of ``partitions`` starts after it, from
        the shadow's counts (every held-back count goes out)."""
        settlement = self.settlement
        if settlement is not None:
            try:
                settlement.commit_all()  # the shadow's counts go with the span
            except TransportError as exc:
                settlement.drop(f"commit before a rebalance failed: {exc}")
        self.metrics.rebalances.labels(kind="revoked").inc()
        self.on_outcomes_revoked(self._outcome_partitions(partitions))
        self.lag.forget(partitions)
        log.info("partitions revoked: %s", sorted(partitions))

    def lost(self, partitions: set[TopicPartition]) -> None:
        """Another replica owns them already: the open span cannot be committed any more."""
        if self.settlement is not None:
            self.settlement.drop("partitions lost")
        self.on_outcomes_revoked(self._outcome_partitions(partitions))
        self.lag.forget(partitions)  # another replica reports their lag now
        self.metrics.rebalances.labels(kind="lost").inc()
        log.warning("partitions lost (session expired): %s", sorted(partitions))

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self.metrics.rebalances.labels(kind="assigned").inc()
        self.on_outcomes_assigned(self._outcome_partitions(partitions))
        log.info("partitions assigned: %s", sorted(partitions))
