"""Model hot-swap: the ``models`` topic read between batches, the newest valid version served.

A :class:`ModelFeed` owns the consumer of the compacted ``models`` topic (every
partition, from the beginning) and hands each record to the
:class:`~metasignal.stream.model_store.ModelStore`, which verifies it and decides
what serves. A swap updates the model gauges and calls ``on_swap``; a change of
the champion/shadow pair calls ``on_lineup``. New models are rare, so the loop
asks for them every ``check_interval_s`` only (:meth:`ModelFeed.due`): a poll of
the models consumer costs ~0.5 ms, at 1,000 votes/s per batch 6 % of a core.

Examples
--------
>>> from metasignal.stream.artifact import dumps_artifact, example_artifact, sign_artifact
>>> from metasignal.stream.transport.base import TopicSpec
>>> from metasignal.stream.transport.memory import MemoryBus
>>> bus = MemoryBus(); _ = bus.create_topics([TopicSpec("models")])
>>> raw = dumps_artifact(sign_artifact(example_artifact(), b"k")).encode()
>>> bus.producer().send("models", key=b"meta@1", value=raw)
>>> feed = ModelFeed(
...     consumer=bus.consumer(assign_all=["models"], from_beginning=True),
...     store=ModelStore(keys=[b"k"], model_name="meta"), metrics=ScorerMetrics(),
...     check_interval_s=5.0, on_swap=lambda model: print(f"serving v{model.version}"),
...     on_lineup=lambda champion, shadow, role: None)
>>> feed.due(now=0.0)  # no model yet: always due
True
>>> feed.load(timeout_s=5)
serving v1
>>> feed.due(now=1.0), feed.due(now=5.0)
(False, True)
>>> feed.metrics.registry.get_sample_value("metasignal_model_version")
1.0
"""

from __future__ import annotations

import time
from collections.abc import Callable

from metasignal.stream.lineup import Role
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.model_store import LiveMembers, ModelStore
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.transport.base import Consumer

__all__ = ["ModelFeed"]


class ModelFeed:
    """Applies the ``models`` topic to a :class:`ModelStore` (module docstring).

    Parameters
    ----------
    consumer
        Assigned every partition of the ``models`` topic, reading from the beginning.
    store
        Verifies each record and holds the champion and the shadow.
    metrics
        The model gauges (info, version, threshold, created, age) and the swap counter.
    check_interval_s
        Seconds between two polls of the topic while a model serves.
    on_swap
        Called with the new champion after each swap.
    on_lineup
        Called with ``(champion, shadow, role)`` whenever the champion or the shadow changed.
    """

    def __init__(
        self,
        *,
        consumer: Consumer,
        store: ModelStore,
        metrics: ScorerMetrics,
        check_interval_s: float,
        on_swap: Callable[[CompiledModel], None],
        on_lineup: Callable[[CompiledModel | None, CompiledModel | None, Role | None], None],
    ) -> None:
        self.consumer = consumer
        self.store = store
        self.metrics = metrics
        self.check_interval_s = check_interval_s
        self.on_swap = on_swap
        self.on_lineup = on_lineup
        # The members recent votes carried: a new model lacking one of them is refused.
        self.live_members = LiveMembers()
        self._next_check = 0.0

    def due(self, *, now: float) -> bool:
        """Whether to poll the topic now (always, while no model serves)."""
        if now < self._next_check and self.store.current is not None:
            return False
        self._next_check = now + self.check_interval_s
        return True

    def refresh(self, *, timeout_ms: int = 0) -> None:
        """Apply every pending record; the newest valid version wins."""
        while True:
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=100)
            if not records:
                return
            for record in records:
                store = self.store
                offered = store.offer(record.value, live_members=self.live_members.members())
                if offered == "swapped":
                    self._swapped()
                if offered in ("swapped", "shadow"):
                    self.on_lineup(store.current, store.shadow, store.shadow_role)
            timeout_ms = 0

    def load(self, *, timeout_s: float = 30.0) -> None:
        """Read the topic to its end (start-up), or until ``timeout_s`` has passed."""
        partitions = sorted(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.refresh(timeout_ms=100)
            if all(self.consumer.position(tp) >= end for tp, end in ends.items()):
                return

    def export_age(self) -> None:
        """Set ``metasignal_model_age_seconds`` for the model serving."""
        created = self.store.created_at
        if created:
            self.metrics.model_age.set(time.time() - created)

    def _swapped(self) -> None:
        model = self.store.current
        assert model is not None
        artifact = self.store.artifact
        strategy = artifact["strategy"]["name"] if artifact is not None else ""
        metrics = self.metrics
        metrics.model_info.clear()
        metrics.model_info.labels(
            name=model.name, version=str(model.version), strategy=strategy
        ).set(1)
        metrics.model_version.set(model.version)
        metrics.threshold.set(model.threshold)
        metrics.model_created.set(self.store.created_at or 0.0)
        metrics.swaps.inc()
        self.on_swap(model)

    def close(self) -> None:
        self.consumer.close()
