"""What the ``models`` topic says: the lineup and the requests already answered.

The trainer learns its champion, any shadow and which requests were answered (by
id) from the topic it publishes to, so a standby that takes over knows as much as
the replica it replaced. Artifacts are verified before use; decision records
(promote/retire/rollback) are verified and applied to the :class:`Lineup`. Any
record that does not verify is refused, one at a time, with a reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from metasignal.stream.artifact import Artifact, load_artifact
from metasignal.stream.decisions import DecisionError, is_decision, load_decision
from metasignal.stream.errors import ArtifactError
from metasignal.stream.lineup import Lineup, Refused
from metasignal.stream.messages import ShadowDecision
from metasignal.stream.model_store import refusal_reason
from metasignal.stream.transport.base import Consumer, Record

__all__ = ["OnRefused", "PublishedModels", "read_to_end"]

log = logging.getLogger("metasignal.trainer")

OnRefused = Callable[[Record, str, str], None]
"""Told of a record that cannot be used: ``(record, reason, detail)``."""


def read_to_end(consumer: Consumer, *, timeout_s: float = 30.0) -> list[Record]:
    """Everything up to the current end of the consumer's partitions (at most ``timeout_s``)."""
    out: list[Record] = []
    ends = consumer.end_offsets(sorted(consumer.assignment()))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out.extend(consumer.poll(timeout_ms=100, max_records=5000))
        if all(consumer.position(tp) >= end for tp, end in ends.items()):
            break
    return out


class PublishedModels:
    """The lineup of ``model_name`` and the answered request ids, as ``models`` says."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        model_name: str,
        keys: Sequence[bytes],
        on_refused: OnRefused,
    ) -> None:
        self.consumer = consumer
        self.model_name = model_name
        self.keys = list(keys)
        self.lineup = Lineup(model_name=model_name)
        self.handled: set[str] = set()
        self._on_refused = on_refused

    def catch_up(self) -> None:
        """Read the topic to its current end: artifacts and decisions, in topic order."""
        for record in read_to_end(self.consumer):
            raw = record.value
            if raw is None:
                continue  # a compaction tombstone
            try:
                document = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                document = None  # load_artifact says why
            if is_decision(document):
                self._read_decision(record, document)
            else:
                self._read_artifact(record, raw)

    def _read_artifact(self, record: Record, raw: bytes) -> None:
        try:
            artifact = load_artifact(raw, keys=self.keys)
        except Exception as exc:
            reason = refusal_reason(exc) if isinstance(exc, ArtifactError) else "invalid_artifact"
            self._on_refused(record, reason, str(exc))
            return
        if artifact["model"]["name"] != self.model_name:
            return
        request = artifact.get("request") or {}
        if request.get("id"):
            self.handled.add(str(request["id"]))
        try:
            self.lineup.offer_artifact(artifact)
        except Refused as refused:  # the scorers refuse and count it too
            log.info("models record at offset %d not applied: %s", record.offset, refused)

    def _read_decision(self, record: Record, document: dict[str, Any]) -> None:
        """A decision record: verified, then applied to the lineup."""
        try:
            decision = load_decision(document, keys=self.keys)
            self.handled.add(decision["request_id"])
            self.lineup.offer_decision(decision)
        except (DecisionError, Refused) as refused:
            self._on_refused(record, refused.reason, refused.detail)

    def published(
        self, request_id: str, artifact: Artifact | None, decision: ShadowDecision | None
    ) -> None:
        """What the trainer just published applies now (the next catch-up reads it again)."""
        self.handled.add(request_id)
        try:
            if artifact is not None:
                self.lineup.offer_artifact(artifact)
            if decision is not None:
                self.lineup.offer_decision(decision)
        except Refused as refused:
            log.warning("published %s does not apply: %s", request_id, refused)

    def serve_alone(self, artifact: Artifact | None) -> None:
        """Serve ``artifact`` as if the topic held it alone (benchmarks answer requests so)."""
        self.lineup = Lineup(model_name=self.model_name)
        if artifact is not None:
            self.lineup.offer_artifact(artifact)
