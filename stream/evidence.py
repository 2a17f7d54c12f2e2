"""The shadow comparison's evidence on the compacted ``evidence`` topic, read back.

Each scorer replica publishes, per partition of the outcomes topic it owns, the cumulative
paired counts of the current champion/shadow pair
(:class:`~metasignal.stream.messages.ShadowEvidence`, keyed
:func:`~metasignal.stream.topics.evidence_key`). :class:`EvidenceLog` keeps the latest record
per key: a scorer assigned a partition continues from its counts, and the trainer sums every
partition's to run one sequential test (:mod:`metasignal.trainer.shadow`).

Records are signed by the scorer like artifacts (HMAC-SHA256 over the canonical JSON,
:func:`sign_evidence`): given ``keys``, an unsigned or forged record is refused, so nobody
without the key can steer a promotion by writing counts. Any bytes are refused one record at
a time (``on_refused``, with a reason); a record whose key is not the one its contents name is
refused too (a key with another partition's counts would be summed twice after compaction).
A tombstone (no value) deletes its key: the trainer tombstones a pair's keys once the pair
is over (decided, in the decision's transaction; or replaced), so neither the topic nor a
log keeps finished pairs (:meth:`EvidenceLog.keys_where`, :meth:`EvidenceLog.forget`).

Examples
--------
>>> from metasignal.stream.messages import encode_shadow_evidence
>>> from metasignal.stream.topics import Topics, evidence_key, topic_specs
>>> from metasignal.stream.transport.memory import MemoryBus
>>> bus = MemoryBus(); topics = Topics(prefix="doc."); _ = bus.create_topics(topic_specs(topics))
>>> def evidence(partition, counts):
...     return encode_shadow_evidence({"schema_version": 1, "model": "meta", "champion": 1,
...         "shadow": 2, "partition": partition, "counts": counts, "pnl": None, "source": "s",
...         "at": 0})
>>> producer = bus.producer()
>>> producer.send(topics.evidence, key=evidence_key("meta", 1, 2, 0), value=evidence(0, [9] * 8))
>>> producer.send(topics.evidence, key=evidence_key("meta", 1, 2, 0), value=evidence(0, [10] * 8))
>>> producer.send(topics.evidence, key=evidence_key("meta", 1, 2, 1), value=evidence(1, [1] * 8))
>>> producer.send(topics.evidence, key=b"meta@1:2:7", value=evidence(1, [1] * 8))  # wrong key
>>> log = EvidenceLog(bus.consumer(assign_all=[topics.evidence]), keys=None,
...                   on_refused=lambda record, error: print(error.reason))
>>> log.catch_up()  # to the end of the topic; one record refused
bad_evidence
True
>>> summed = log.summed("meta", 1, 2)
>>> summed.counts.tolist(), summed.partitions
([11, 11, 11, 11, 11, 11, 11, 11], [0, 1])
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from metasignal.stream.artifact import sign_artifact, verify_signature
from metasignal.stream.errors import ArtifactError
from metasignal.stream.messages import MessageError, ShadowEvidence, decode_shadow_evidence
from metasignal.stream.topics import evidence_key
from metasignal.stream.transport.base import Consumer, Record

Pair = tuple[str, int, int]  # model name, champion version, shadow version


def sign_evidence(record: ShadowEvidence, key: bytes) -> ShadowEvidence:
    """``record`` signed with ``key`` (HMAC-SHA256 over its canonical JSON, as artifacts)."""
    return cast(ShadowEvidence, sign_artifact(record, key))


@dataclass(frozen=True)
class SummedEvidence:
    """Every partition's latest counts for one pair, added up."""

    counts: np.ndarray  # the eight paired counts
    pnl: np.ndarray | None  # [champion, shadow] PnL sums; None unless every partition has one
    partitions: list[int]


class EvidenceLog:
    """The latest :class:`ShadowEvidence` per ``(model, champion, shadow, partition)``.

    Parameters
    ----------
    consumer
        A group-less reader of every partition of the ``evidence`` topic, from the
        beginning (``read_committed``: exactly-once scorers' aborted counts are never read).
    keys
        Keys a record must be signed with (``evidence_unsigned``, ``evidence_bad_signature``
        otherwise); ``None``: signatures are not checked.
    on_refused
        Called with each record that is not valid evidence and why.
    """

    def __init__(
        self,
        consumer: Consumer,
        *,
        keys: Sequence[bytes] | None,
        on_refused: Callable[[Record, MessageError], None],
    ) -> None:
        self.consumer = consumer
        self.keys = None if keys is None else list(keys)
        self.on_refused = on_refused
        self._latest: dict[Pair, dict[int, ShadowEvidence]] = {}

    def poll(self, *, timeout_ms: int = 0) -> int:
        """Apply the records that have arrived; return how many were read."""
        records = self.consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        for record in records:
            self._apply(record)
        return len(records)

    def catch_up(self, *, timeout_s: float = 10.0) -> bool:
        """Read to the topic's current end (an assignment, a start-up); False if that end
        was not reached within ``timeout_s``. Raises ``TransportError`` in an outage."""
        partitions = sorted(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll(timeout_ms=50)
            if all(self.consumer.position(tp) >= end for tp, end in ends.items()):
                return True
            if time.monotonic() >= deadline:
                return False

    def _apply(self, record: Record) -> None:
        if record.value is None:  # a tombstone: that key's counts are gone
            self._forget(record.key)
            return
        try:
            evidence = decode_shadow_evidence(record.value)
        except MessageError as bad:
            self.on_refused(record, bad)
            return
        except Exception as exc:  # any bytes: refused with a reason, never raised
            self.on_refused(record, MessageError("internal", repr(exc)))
            return
        pair = (evidence["model"], evidence["champion"], evidence["shadow"])
        key = evidence_key(*pair, evidence["partition"])
        if record.key != key:
            detail = f"key {record.key!r} does not name its contents ({key.decode()})"
            self.on_refused(record, MessageError("bad_evidence", detail))
            return
        if self.keys is not None:
            try:
                verify_signature(json.loads(record.value), self.keys)
            except ArtifactError as exc:
                text = str(exc)
                unsigned = "unsigned" in text or "no signature" in text
                reason = "evidence_unsigned" if unsigned else "evidence_bad_signature"
                self.on_refused(record, MessageError(reason, text))
                return
        self._latest.setdefault(pair, {})[evidence["partition"]] = evidence

    def _forget(self, key: bytes | None) -> None:
        """Drop ``key``'s counts (a tombstone); a key held by nobody changes nothing."""
        for pair, partitions in list(self._latest.items()):
            for partition in list(partitions):
                if key == evidence_key(*pair, partition):
                    del partitions[partition]
            if not partitions:
                del self._latest[pair]

    @property
    def pairs(self) -> list[Pair]:
        """The pairs some partition's counts are held for."""
        return sorted(self._latest)

    def keys_where(self, over: Callable[[Pair], bool]) -> list[bytes]:
        """The keys of every held partition's counts whose pair is ``over`` (to tombstone).

        >>> log = EvidenceLog(None, keys=None, on_refused=print)  # type: ignore[arg-type]
        >>> log._latest = {("meta", 1, 2): {0: None, 3: None}, ("meta", 2, 3): {0: None}}
        >>> log.keys_where(lambda pair: pair[2] == 2)
        [b'meta@1:2:0', b'meta@1:2:3']
        >>> log.forget(_); log.pairs
        [('meta', 2, 3)]
        """
        return [
            evidence_key(*pair, partition)
            for pair in self.pairs
            if over(pair)
            for partition in sorted(self._latest[pair])
        ]

    def forget(self, keys: Sequence[bytes]) -> None:
        """Drop ``keys``' counts now (their tombstones are committed; read back later)."""
        for key in keys:
            self._forget(key)

    def partition(self, pair: Pair, partition: int) -> ShadowEvidence | None:
        """The latest counts of one partition for ``pair``, if any were published."""
        return self._latest.get(pair, {}).get(partition)

    def summed(self, model: str, champion: int, shadow: int) -> SummedEvidence:
        """Every partition's latest counts for the pair, added up (zeros if none)."""
        records = self._latest.get((model, champion, shadow), {})
        counts = np.zeros(8, dtype=np.int64)
        pnl: np.ndarray | None = np.zeros(2) if records else None
        for evidence in records.values():
            counts += np.asarray(evidence["counts"], dtype=np.int64)
            sums = evidence["pnl"]
            pnl = None if pnl is None or sums is None else pnl + np.asarray(sums)
        return SummedEvidence(counts=counts, pnl=pnl, partitions=sorted(records))

    def close(self) -> None:
        self.consumer.close()
