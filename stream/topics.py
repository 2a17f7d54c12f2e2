"""Topic names (with a configurable prefix) and how each topic is created.

Examples
--------
>>> Topics(prefix="prod.").votes
'prod.votes'
>>> [spec.name for spec in topic_specs(Topics(), partitions=4)][:3]
['metasignal.votes', 'metasignal.signals', 'metasignal.outcomes']
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from metasignal.stream.transport.base import TopicSpec, Transport, TransportError

log = logging.getLogger("metasignal")

WEEK_MS = str(7 * 24 * 3600 * 1000)
MONTH_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class Topics:
    prefix: str = "metasignal."

    @property
    def votes(self) -> str:
        return f"{self.prefix}votes"

    @property
    def signals(self) -> str:
        return f"{self.prefix}signals"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}outcomes"

    @property
    def models(self) -> str:
        return f"{self.prefix}models"

    @property
    def control(self) -> str:
        return f"{self.prefix}control"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    @property
    def training(self) -> str:
        return f"{self.prefix}training"

    @property
    def evidence(self) -> str:
        return f"{self.prefix}evidence"


def topic_specs(topics: Topics, *, partitions: int = 4) -> list[TopicSpec]:
    """Votes, signals, outcomes and training share a partition count: co-partitioned by id.

    ``models`` is compacted (the latest artifact per model name survives forever);
    ``control`` has one partition so exactly one trainer handles requests in order.
    ``evidence`` (the shadow comparison's per-partition counts, :func:`evidence_key`) is
    compacted like ``models`` (the latest counts per key are all anyone reads, so it stays a
    few KB per pair) and has one partition: every scorer and the trainer read all of it.
    """
    keyed = {"retention.ms": WEEK_MS}
    return [
        TopicSpec(topics.votes, partitions, keyed),
        TopicSpec(topics.signals, partitions, keyed),
        TopicSpec(topics.outcomes, partitions, keyed),
        TopicSpec(topics.models, 1, {"cleanup.policy": "compact", "max.message.bytes": "4194304"}),
        TopicSpec(topics.control, 1, {"retention.ms": WEEK_MS}),
        TopicSpec(topics.dlq, partitions, {"retention.ms": MONTH_MS}),
        TopicSpec(topics.training, partitions, {"retention.ms": MONTH_MS}),
        TopicSpec(topics.evidence, 1, {"cleanup.policy": "compact"}),
    ]


class OwnedTopics:
    """Topics a run created for itself, deleted when it ends unless ``keep``.

    :meth:`delete` is called on the way out; an exit hook catches the ways out that skip it
    (Ctrl-C, an exception), so a demo on a shared broker never leaves its topics behind.

    >>> from metasignal.stream.transport.memory import MemoryBus
    >>> bus = MemoryBus()
    >>> owned = OwnedTopics(bus, bus.create_topics(topic_specs(Topics(prefix="t."))), keep=False)
    >>> len(owned.delete()), bus.partition_count("t.votes"), owned.delete()
    (8, None, [])
    """

    def __init__(self, transport: Transport, names: Sequence[str], *, keep: bool) -> None:
        self._transport = transport
        self.names = list(names)
        self._pending = bool(self.names) and not keep
        if self._pending:
            atexit.register(self.delete)

    def delete(self) -> list[str]:
        """Delete the topics (once); return the names deleted.

        A failure is a warning naming the topics, never an exception: this runs on the way
        out, where it must not hide why the run ended.
        """
        if not self._pending:
            return []
        self._pending = False
        atexit.unregister(self.delete)
        try:
            return self._transport.delete_topics(self.names)
        except TransportError as exc:
            log.warning("could not delete topics %s: %s", ", ".join(self.names), exc)
            return []


def model_key(name: str, version: int) -> bytes:
    """The ``models`` key of one version: ``name@version``.

    One key per version, so compaction keeps every version (artifacts are a few KB) and a
    scorer reading the topic serves the highest: an older version published later can no
    longer become, after compaction, the only one left and be served after a restart.

    >>> model_key("meta", 3)
    b'meta@3'
    """
    return f"{name}@{version}".encode()


def evidence_key(name: str, champion: int, shadow: int, partition: int) -> bytes:
    """The ``evidence`` key of one outcomes partition's counts for one champion/shadow pair.

    >>> evidence_key("meta", 1, 2, 3)
    b'meta@1:2:3'
    """
    return f"{name}@{champion}:{shadow}:{partition}".encode()
