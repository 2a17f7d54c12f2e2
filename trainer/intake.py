"""What the trainer reads, one record at a time: refused with a reason, or a request.

No single record stops the trainer: any bytes on ``models``, ``training``,
``evidence`` or ``control`` that cannot be used are refused, counted by topic and
reason (``metasignal_trainer_refused_records_total``) and logged. A control request
that decodes may ask for ``force``; only an operator-signed one is honoured
(:func:`metasignal.trainer.control.check_force`), any other is counted and ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from prometheus_client import Counter

from metasignal.stream.messages import ControlRequest, MessageError, decode_control_request
from metasignal.stream.transport.base import Record
from metasignal.trainer.control import check_force

__all__ = ["Intake"]

log = logging.getLogger("metasignal.trainer")


class Intake:
    """Refuses unusable records and decodes control requests, checking their force."""

    def __init__(self, *, keys: Sequence[bytes], refused: Counter, force_refused: Counter) -> None:
        self.keys = list(keys)
        self.refused = refused
        self.force_refused = force_refused

    def refuse(self, record: Record, reason: str, detail: str) -> None:
        """Count and log one record that cannot be used; the trainer carries on."""
        self.refused.labels(topic=record.topic, reason=reason).inc()
        log.warning(
            "refused record %s[%d]@%d (%s): %.200s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail,
        )

    def request(self, record: Record) -> ControlRequest | None:
        """The request on ``record``; ``None`` (refused, counted) when it does not decode.
        A bad request is answered as failed and committed: refused once, not re-read."""
        try:
            return decode_control_request(record.value)
        except MessageError as bad:
            self.refuse(record, bad.reason, bad.detail)
        except Exception as exc:
            self.refuse(record, "internal", repr(exc))
        return None

    def operator_force(self, record: Record) -> bool:
        """Whether the request carries a valid operator-signed force (trainer/control.py)."""
        verdict = check_force(record.value, keys=self.keys, now_ms=int(time.time() * 1000))
        if verdict is None or verdict == "signed":
            return verdict == "signed"
        self.force_refused.labels(reason=verdict).inc()
        log.warning(
            "control[%d]@%d asks for force without a valid operator signature (%s): "
            "the champion gate decides",
            record.partition,
            record.offset,
            verdict,
        )
        return False
