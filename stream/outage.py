"""Broker outages: how long the broker has been away, why, and how long to wait.

One :class:`Outage` per service loop. ``down(reason, detail)`` marks the broker
away (logged once per outage, the reachability gauge goes to 0); ``up()`` marks it
back (logged with the outage's length). ``backoff()`` gives the next wait: it
doubles from ``initial_s`` up to ``max_s``, so a long outage costs no CPU and work
resumes at most ``max_s`` after the broker returns. With ``max_outage_s`` > 0, an
outage longer than that raises :class:`OutageError` (the command exits with one line).

Examples
--------
>>> outage = Outage(initial_s=0.5, max_s=2.0)
>>> outage.ok
True
>>> outage.down("broker_unreachable", "commit timed out")
>>> outage.ok, outage.reason, [outage.backoff() for _ in range(4)]
(False, 'broker_unreachable', [0.5, 1.0, 2.0, 2.0])
>>> outage.up()
>>> outage.ok, outage.backoff()
(True, 0.5)

With ``max_outage_s`` set, a longer outage ends the service with one line:

>>> import time
>>> strict = Outage(max_outage_s=0.001)
>>> strict.down("broker_unreachable", "commit timed out")
>>> time.sleep(0.01)
>>> try:
...     strict.down("broker_unreachable", "commit timed out")
... except OutageError as exc:
...     print(exc)
broker unreachable for 0 s, longer than --max-outage-s 0.001 (broker_unreachable: commit ...)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from metasignal.stream.errors import MetasignalError

log = logging.getLogger("metasignal.outage")

# Why a service is not ready (the reason label and the log line).
BROKER_UNREACHABLE = "broker_unreachable"
PRODUCER_RECREATING = "producer_recreating"


class OutageError(MetasignalError):
    """The broker stayed away longer than the operator allows (``--max-outage-s``)."""


class Outage:
    """The state of the connection to the broker, for readiness and backoff."""

    def __init__(
        self,
        *,
        initial_s: float = 0.2,
        max_s: float = 2.0,
        max_outage_s: float = 0.0,
        probe_grace_s: float = 5.0,
        on_change: Callable[[str | None], None] | None = None,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.max_outage_s = max_outage_s
        self.probe_grace_s = probe_grace_s
        self.on_change = on_change
        self._probe_failing_since: float | None = None
        self.reason: str | None = None
        self.since: float | None = None
        self._delay = initial_s

    @property
    def ok(self) -> bool:
        return self.reason is None

    def down(self, reason: str, detail: str) -> None:
        """The broker is away (or the producer is being re-created); see the module docstring."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            log.warning("not ready (%s): %s; work resumes when the broker answers", reason, detail)
        elif reason != self.reason:
            log.warning("not ready (%s): %s", reason, detail)
        if reason != self.reason:
            self.reason = reason
            if self.on_change is not None:
                self.on_change(reason)
        if self.max_outage_s > 0 and now - self.since > self.max_outage_s:
            raise OutageError(
                f"broker unreachable for {now - self.since:.0f} s, longer than "
                f"--max-outage-s {self.max_outage_s:g} ({reason}: {detail})"
            )

    def up(self) -> None:
        """The broker answers again: ready, and the backoff starts over."""
        self._delay = self.initial_s
        if self.since is None:
            return
        log.warning("ready again after %.1f s (%s)", time.monotonic() - self.since, self.reason)
        self.since = None
        self.reason = None
        if self.on_change is not None:
            self.on_change(None)

    def probed(self, reachable: bool) -> None:
        """A live connection probe: up at once, down once it has failed for ``probe_grace_s``.

        A client that has just started, or sits between two fetches, may hold no broker
        connection for a moment; only a probe that keeps failing is an outage.
        """
        if reachable:
            self._probe_failing_since = None
            self.up()
            return
        now = time.monotonic()
        if self._probe_failing_since is None:
            self._probe_failing_since = now
        if now - self._probe_failing_since >= self.probe_grace_s:
            self.down(BROKER_UNREACHABLE, "no connection to any broker")

    def backoff(self) -> float:
        """The next wait before retrying (doubling, at most ``max_s``)."""
        delay = self._delay
        self._delay = min(self._delay * 2, self.max_s)
        return delay
