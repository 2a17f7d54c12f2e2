"""Topic layout of the streaming benchmark: shared inputs, per-run outputs."""

from __future__ import annotations

from dataclasses import dataclass

from metasignal.stream.topics import Topics


@dataclass(frozen=True)
class BenchTopics(Topics):
    """``prefix`` names this run's outputs (signals, DLQ); votes and models may be shared.

    Every throughput run reads the same pre-loaded vote topic in its own consumer group, so
    the scorer and the passthrough see byte-identical input.
    """

    shared_votes: str = ""
    shared_models: str = ""

    @property
    def votes(self) -> str:
        return self.shared_votes or f"{self.prefix}votes"

    @property
    def models(self) -> str:
        return self.shared_models or f"{self.prefix}models"
