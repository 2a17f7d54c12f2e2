"""Finish consumer-group rebalances that kafka-python 3.0 abandons.

kafka-python 3.0.x runs a group's JoinGroup/SyncGroup round trip as a task and stops waiting for
it when ``poll``'s timeout expires. On the next ``poll`` it loses that work in two ways:

- a rebalance that the *metadata* asked for (partitions appeared after the first join, or were
  added later) is forgotten: the leader updates its metadata snapshot while it assigns, so
  ``need_rejoin()`` turns false before the assignment is applied (Java fixed the same bug in
  KAFKA-9815 by also asking to rejoin);
- a round trip that finished between two polls is thrown away and sent again, so with short
  polls a member can rejoin for ever without applying an assignment.

Either way the consumer keeps its old assignment (often none) while the group moves on: a scorer
that consumes nothing and says it is healthy. Both were seen on the real broker (the scorer polls
every 100 ms; under load the round trip outlives the poll). :func:`finish_interrupted_rebalances`
patches one consumer: a started rebalance counts as "rejoin needed" until it completes, and a
round trip that already succeeded is applied instead of being re-sent. Regression test on the
broker: ``test_partitions_added_later_are_assigned_under_short_polls``
(``tests/test_transport_kafka.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import MemberState

from metasignal.stream.transport.base import TransportError

log = logging.getLogger("metasignal.transport")

# The private coordinator members the patch relies on; if a kafka-python upgrade renames them,
# the consumer is refused (tested) rather than left with the bug.
_COORDINATOR_MEMBERS = (
    "_join_task",
    "_lock",
    "_generation",
    "_enable_heartbeat",
    "_on_join_complete_async",
    "join_group_async",
    "need_rejoin",
    "rejoining",
    "rejoin_needed",
    "state",
)


def finish_interrupted_rebalances(consumer: KafkaConsumer) -> None:
    """Make ``consumer`` complete every rebalance it starts (see the module docstring).

    Raises :class:`TransportError` if this kafka-python lacks the internals the fix patches.
    """
    coordinator = consumer._coordinator
    missing = [name for name in _COORDINATOR_MEMBERS if not hasattr(coordinator, name)]
    if missing:
        raise TransportError(
            "this kafka-python's group coordinator lacks "
            + ", ".join(missing)
            + "; metasignal supports the versions in requirements.lock"
        )
    library_need_rejoin = coordinator.need_rejoin
    library_join_group = coordinator.join_group_async

    def need_rejoin() -> bool:
        return bool(coordinator.rejoining) or bool(library_need_rejoin())

    async def join_group_async(timeout_ms: Any = None) -> bool:
        task = coordinator._join_task
        if task is not None and task.is_done and task.succeeded():
            # The library would discard this finished round trip and send a new one; apply it
            # exactly as its own success path does.
            coordinator._join_task = None
            with coordinator._lock:
                coordinator.rejoining = False
                coordinator.rejoin_needed = False
                coordinator.state = MemberState.STABLE
                coordinator._enable_heartbeat()
            generation = coordinator._generation
            log.debug("applying a finished rebalance (generation %s)", generation.generation_id)
            await coordinator._on_join_complete_async(
                generation.generation_id, generation.member_id, generation.protocol, task.value
            )
        # Returns at once if nothing is left to do; rejoins if the group moved on meanwhile.
        joined: bool = await library_join_group(timeout_ms=timeout_ms)
        return joined

    coordinator.need_rejoin = need_rejoin
    coordinator.join_group_async = join_group_async
