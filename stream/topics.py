"""Topic names (with a configurable prefix) and how each topic is created.

Examples
--------
>>> Topics(prefix="prod.").votes
'prod.votes'
>>> [spec.name for spec in topic_specs(Topics(), partitions=4)][:3]
['metasignal.votes', 'metasignal.signals', 'metasignal.outcomes']
"""

from __future__ import annotations

from dataclasses import dataclass

from metasignal.stream.transport.base import TopicSpec

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


def topic_specs(topics: Topics, *, partitions: int = 4) -> list[TopicSpec]:
    """Votes, signals, outcomes and training share a partition count: co-partitioned by id.

    ``models`` is compacted (the latest artifact per model name survives forever);
    ``control`` has one partition so exactly one trainer handles requests in order.
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
    ]


def model_key(name: str, version: int) -> bytes:
    """The ``models`` key of one version: ``name@version``.

    One key per version, so compaction keeps every version (artifacts are a few KB) and a
    scorer reading the topic serves the highest: an older version published later can no
    longer become, after compaction, the only one left and be served after a restart.

    >>> model_key("meta", 3)
    b'meta@3'
    """
    return f"{name}@{version}".encode()
