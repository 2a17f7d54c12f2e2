"""Consumer lag: how far each assigned partition is behind its end, as a gauge.

Checked every ``interval_s`` (an ``end_offsets`` call is a broker round trip), and a
partition's series is removed when it is revoked, so a replica never reports lag for
partitions another replica now owns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Set

from prometheus_client import Gauge

from metasignal.stream.transport.base import Consumer, TopicPartition, TransportError

log = logging.getLogger("metasignal.scorer")


class PartitionLag:
    """``metasignal_consumer_lag{topic, partition}`` for one consumer's assignment."""

    def __init__(self, *, gauge: Gauge, interval_s: float) -> None:
        self.gauge = gauge
        self.interval_s = interval_s
        self._last_check = 0.0
        self._series: set[TopicPartition] = set()
        self.total: int | None = None  # records behind over the assignment, once checked

    def update(self, consumer: Consumer) -> None:
        """Refresh the gauges if ``interval_s`` has passed; a failed check is skipped."""
        now = time.monotonic()
        if now - self._last_check < self.interval_s:
            return
        self._last_check = now
        assigned = sorted(consumer.assignment())
        if not assigned:
            return
        try:
            ends = consumer.end_offsets(assigned)
            total = 0
            for tp in assigned:
                lag = max(ends[tp] - consumer.position(tp), 0)
                self.gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
                self._series.add(tp)
                total += lag
            self.total = total
        except (TransportError, KeyError) as exc:
            log.debug("lag check skipped: %s", exc)

    def forget(self, partitions: Set[TopicPartition]) -> None:
        """Drop the series of revoked partitions."""
        for tp in partitions & self._series:
            self.gauge.remove(tp.topic, str(tp.partition))
        self._series -= partitions
