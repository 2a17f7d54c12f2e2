"""The shadow's evidence on the broker, as the scorer wires it: read back, and sent at commit.

The counts themselves are the shadow slot's (:mod:`~metasignal.stream.shadow`) and
the topic's format is :mod:`~metasignal.stream.evidence`'s. An :class:`EvidenceChannel`
connects them to one scorer: with outcome tracking on it opens the
:class:`~metasignal.stream.evidence.EvidenceLog` the shadow reads its published
counts back from on each assignment (refused records counted and logged), and it
sends the changed counts as the last outputs of each span, just before it commits
(:class:`~metasignal.stream.checkpoint.Checkpoint` ``before_commit``), so the
published counts agree with the committed offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from metasignal.stream.evidence import EvidenceLog
from metasignal.stream.feedback import FeedbackLoop
from metasignal.stream.messages import MessageError
from metasignal.stream.metrics import ScorerMetrics
from metasignal.stream.transport.base import Consumer, Producer, Record

__all__ = ["EvidenceChannel"]

log = logging.getLogger("metasignal.scorer")


class EvidenceChannel:
    """Reads the ``evidence`` topic back for the shadow and sends its counts (module docstring).

    Parameters
    ----------
    feedback
        Whose shadow slot counts the evidence.
    metrics
        ``metasignal_shadow_evidence_total`` and ``..._refused_total{reason}``.
    consumer
        Assigned the whole ``evidence`` topic from the beginning (``read_committed``);
        ``None`` when outcomes are not tracked (nothing to read back).
    keys
        Verify the records read back; the first signs those sent. Empty: unsigned.
    """

    def __init__(
        self,
        *,
        feedback: FeedbackLoop,
        metrics: ScorerMetrics,
        consumer: Consumer | None,
        keys: Sequence[bytes],
    ) -> None:
        self.feedback = feedback
        self.metrics = metrics
        self.log: EvidenceLog | None = None
        if consumer is not None:
            self.log = EvidenceLog(
                consumer,
                keys=list(keys) or None,  # --unsigned without a key: nothing to check
                on_refused=self._refused,
            )
            feedback.shadow.log = self.log
            feedback.shadow.signing_key = keys[0] if keys else None

    def send(self, producer: Producer) -> None:
        """Send the shadow's changed counts: the span's last outputs."""
        for message in self.feedback.evidence():
            producer.send(message.topic, key=message.key, value=message.value)
            self.metrics.shadow_evidence.inc()

    def _refused(self, record: Record, error: MessageError) -> None:
        self.metrics.shadow_evidence_refused.labels(reason=error.reason).inc()
        log.warning(
            "evidence record %s[%d]@%d refused (%s): %.200s",
            record.topic,
            record.partition,
            record.offset,
            error.reason,
            error.detail,
        )

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
