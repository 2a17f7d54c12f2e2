"""The scoring step: a batch of vote records in, a scored batch out, no I/O.

:class:`ScoringStep` decodes and validates each record, lays the valid votes
out in the model's member order, scores and decides them in one vectorised
pass, and keeps every refused record with the reason it goes to the DLQ.
A batch whose votes are all regular (the usual case: one committee, integer
times) is decoded and encoded whole (:func:`~metasignal.stream.messages.decode_vote_batch`,
:func:`~metasignal.stream.messages.encode_signals`); any other batch one record
at a time, with the same outcome.
Sending, committing and joining are the loop's business
(:mod:`metasignal.stream.scorer`), so this is what the in-process benchmark
times and what tests can call without a transport.

Examples
--------
>>> from metasignal.stream.artifact import example_artifact
>>> from metasignal.stream.scoring import CompiledModel
>>> from metasignal.stream.transport.base import Record
>>> model = CompiledModel.from_artifact(example_artifact())
>>> records = [
...     Record("votes", 0, 0, b"e1", b'{"id":"e1","ts":1,"votes":{"a":0.9,"b":0.9}}', 0),
...     Record("votes", 0, 1, b"e2", b'{"id":"e2","ts":1,"votes":{"a":2}}', 0),
... ]
>>> batch = ScoringStep()(records, model, scored_at_ms=2)
>>> batch.ids, batch.decisions.tolist()
(['e1'], [1])
>>> [(record.offset, error.reason) for record, error in batch.dead]
[(1, 'out_of_range')]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from metasignal.stream.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MessageError,
    Vote,
    decode_vote,
    decode_vote_batch,
    encode_signals,
    vote_matrix,
)
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.transport.base import Record

log = logging.getLogger("metasignal.scorer")

SAMPLE_EVERY = 10

Good = list[tuple[Record, Vote]]
Dead = list[tuple[Record, MessageError]]

_value = itemgetter(4)  # Record.value
_timestamp = itemgetter(5)  # Record.timestamp_ms


def internal_error(exc: Exception) -> MessageError:
    """A per-record failure of no known kind: the record goes to the DLQ as ``internal``."""
    return MessageError("internal", f"{type(exc).__name__}: {exc}"[:500])


class DecodedBatch(NamedTuple):
    """Valid votes as columns (one entry per vote, rows of ``matrix`` in model member order),
    the refused records, and the sample of decoded votes (:attr:`ScoredBatch.sample`)."""

    records: list[Record]
    ids: list[str]
    ts_ms: list[int]
    votes: list[Mapping[str, float]]
    matrix: np.ndarray
    dead: Dead
    sample: list[Vote]


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """One batch after scoring: ``records``, ``ids``, ``ts_ms``, ``votes``, rows of ``matrix``,
    ``scores``, ``decisions`` and ``sizes`` follow the scored votes, in record order."""

    records: list[Record]
    ids: list[str]
    ts_ms: list[int]
    votes: list[Mapping[str, float]]
    dead: Dead
    matrix: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray
    sizes: np.ndarray  # position size in [0, 1] per good vote (0 where the decision is 0)
    signals: list[tuple[bytes, bytes]] = field(default_factory=list)
    stale: np.ndarray | None = None  # per good vote, when any is stale (then decision 0)
    # Every SAMPLE_EVERY-th decoded vote, before the member checks: which members live votes
    # carry, including votes the serving model refuses (a committee change in progress).
    sample: list[Vote] = field(default_factory=list)

    @property
    def n_stale(self) -> int:
        return 0 if self.stale is None else int(self.stale.sum())

    @property
    def event_ids(self) -> list[str]:
        return self.ids

    @property
    def good(self) -> Good:
        """``(record, vote)`` per scored vote (built on demand: the loop reads the columns)."""
        votes = map(Vote, self.ids, self.ts_ms, self.votes)
        return list(zip(self.records, votes, strict=True))

    def written_ms(self) -> np.ndarray:
        """Kafka timestamps (epoch ms) of the scored votes' records."""
        return np.fromiter(map(_timestamp, self.records), dtype=np.int64, count=len(self.records))

    @classmethod
    def concat(cls, parts: Sequence[ScoredBatch], n_members: int) -> ScoredBatch:
        stale = None
        if any(part.stale is not None for part in parts):
            stale = np.concatenate(
                [
                    np.zeros(len(part.ids), dtype=bool) if part.stale is None else part.stale
                    for part in parts
                ]
            )
        return cls(
            records=[r for part in parts for r in part.records],
            ids=[i for part in parts for i in part.ids],
            ts_ms=[t for part in parts for t in part.ts_ms],
            votes=[v for part in parts for v in part.votes],
            dead=[pair for part in parts for pair in part.dead],
            matrix=np.concatenate([np.empty((0, n_members)), *(part.matrix for part in parts)]),
            scores=np.concatenate([np.empty(0), *(part.scores for part in parts)]),
            decisions=np.concatenate(
                [np.empty(0, dtype=np.int8), *(part.decisions for part in parts)]
            ),
            sizes=np.concatenate([np.empty(0), *(part.sizes for part in parts)]),
            signals=[signal for part in parts for signal in part.signals],
            stale=stale,
            sample=[vote for part in parts for vote in part.sample],
        )


def decode_votes(
    records: Sequence[Record], *, max_bytes: int, probabilities: bool
) -> tuple[Good, Dead]:
    """Split records into decoded votes and dead letters, one record at a time (member names
    are checked later)."""
    good: Good = []
    dead: Dead = []
    for record in records:
        try:
            vote = decode_vote(record.value, max_bytes=max_bytes, probabilities=probabilities)
        except MessageError as bad:
            dead.append((record, bad))
        except Exception as exc:
            log.warning("vote at %s[%d]@%d: %r", record.topic, record.partition, record.offset, exc)
            dead.append((record, internal_error(exc)))
        else:
            good.append((record, vote))
    return good, dead


@dataclass(frozen=True, kw_only=True)
class ScoringStep:
    """How votes are validated against the model being served.

    Parameters
    ----------
    max_message_bytes
        Larger vote payloads are dead letters (``oversize``).
    missing_members
        ``artifact`` (the artifact's own policy), ``impute`` or ``reject``.
    strict_members
        Unknown and missing members both send the vote to the DLQ.
    max_vote_age_ms
        A vote written to Kafka longer ago than this when scored is ``stale``: its signal
        is a no-trade, marked so (a backlog never trades as live). 0 disables.
    """

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    missing_members: str = "artifact"
    strict_members: bool = False
    max_vote_age_ms: int = 0

    def member_policies(self, model: CompiledModel) -> tuple[bool, bool]:
        """``(reject_unknown, reject_missing)`` for this model."""
        if self.strict_members:
            return True, True
        policy = self.missing_members
        if policy == "artifact":
            policy = model.missing_policy
        return False, policy == "reject"

    def __call__(
        self, records: Sequence[Record], model: CompiledModel, *, scored_at_ms: int = 0
    ) -> ScoredBatch:
        """Decode, validate, score and encode ``records`` (all from the votes topic).

        A failure of no known kind does not fail the batch: the batch is scored again one
        record at a time, and the record that fails goes to the DLQ as ``internal``.
        """
        try:
            batch = self.score(self.decode(records, model), model)
            if self.max_vote_age_ms:
                batch = self.mark_stale(batch, now_ms=scored_at_ms)
            return replace(batch, signals=self.signals(batch, model, scored_at_ms=scored_at_ms))
        except Exception as exc:
            if len(records) > 1:
                parts = [
                    self(records[i : i + 1], model, scored_at_ms=scored_at_ms)
                    for i in range(len(records))
                ]
                return ScoredBatch.concat(parts, len(model.members))
            if not records:
                raise
            record = records[0]
            log.warning("vote at %s[%d]@%d: %r", record.topic, record.partition, record.offset, exc)
            return ScoredBatch.concat(
                [self._empty(model, dead=[(record, internal_error(exc))])], len(model.members)
            )

    @staticmethod
    def _empty(model: CompiledModel, *, dead: Dead) -> ScoredBatch:
        return ScoredBatch(
            records=[],
            ids=[],
            ts_ms=[],
            votes=[],
            dead=dead,
            matrix=np.empty((0, len(model.members))),
            scores=np.empty(0),
            decisions=np.empty(0, dtype=np.int8),
            sizes=np.empty(0),
        )

    def decode(self, records: Sequence[Record], model: CompiledModel) -> DecodedBatch:
        """Decode the votes and lay them out in the model's member order, refusing bad ones.

        The whole batch at once when every record is regular; otherwise one record at a
        time (:meth:`decode_each`), which names each refused record's reason.
        """
        probabilities = model.transform == "logit"
        whole = decode_vote_batch(
            list(map(_value, records)),
            model.members,
            max_bytes=self.max_message_bytes,
            probabilities=probabilities,
        )
        if whole is None:
            return self.decode_each(records, model)
        ids, ts_ms, votes, matrix = whole
        sample = list(map(Vote, ids[::SAMPLE_EVERY], ts_ms[::SAMPLE_EVERY], votes[::SAMPLE_EVERY]))
        return DecodedBatch(list(records), ids, ts_ms, list(votes), matrix, [], sample)

    def decode_each(self, records: Sequence[Record], model: CompiledModel) -> DecodedBatch:
        """Record by record: :func:`decode_votes`, then the member checks of
        :func:`~metasignal.stream.messages.vote_matrix`."""
        good, dead = decode_votes(
            records, max_bytes=self.max_message_bytes, probabilities=model.transform == "logit"
        )
        sample = [vote for _, vote in good[::SAMPLE_EVERY]]
        reject_unknown, reject_missing = self.member_policies(model)
        matrix, errors = vote_matrix(
            [vote for _, vote in good],
            model.members,
            reject_unknown=reject_unknown,
            reject_missing=reject_missing,
        )
        if any(e is not None for e in errors):
            dead = dead + [(good[i][0], e) for i, e in enumerate(errors) if e is not None]
            keep = [i for i, e in enumerate(errors) if e is None]
            good, matrix = [good[i] for i in keep], matrix[keep]
        return DecodedBatch(
            records=[record for record, _ in good],
            ids=[vote.id for _, vote in good],
            ts_ms=[vote.ts_ms for _, vote in good],
            votes=[vote.votes for _, vote in good],
            matrix=matrix,
            dead=dead,
            sample=sample,
        )

    def score(self, decoded: DecodedBatch, model: CompiledModel) -> ScoredBatch:
        """One vectorised predict, decide and size over the valid votes."""
        matrix = decoded.matrix
        scores = model.predict_proba(matrix) if decoded.ids else np.empty(0)
        return ScoredBatch(
            records=decoded.records,
            ids=decoded.ids,
            ts_ms=decoded.ts_ms,
            votes=decoded.votes,
            dead=decoded.dead,
            matrix=matrix,
            scores=scores,
            decisions=model.decide(scores),
            sizes=model.size(scores),
            sample=decoded.sample,
        )

    def mark_stale(self, batch: ScoredBatch, *, now_ms: int) -> ScoredBatch:
        """Votes older than ``max_vote_age_ms`` (by their Kafka timestamp) decide no-trade."""
        stale = now_ms - batch.written_ms() > self.max_vote_age_ms
        if not stale.any():
            return batch
        decisions = np.where(stale, 0, batch.decisions).astype(np.int8)
        sizes = np.where(stale, 0.0, batch.sizes)
        return replace(batch, decisions=decisions, sizes=sizes, stale=stale)

    @staticmethod
    def signals(
        batch: ScoredBatch, model: CompiledModel, *, scored_at_ms: int
    ) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` of one signal per scored vote, keyed by event id."""
        return encode_signals(
            event_ids=batch.ids,
            ts_ms=batch.ts_ms,
            decisions=batch.decisions,
            scores=batch.scores,
            sizes=batch.sizes,
            threshold=model.threshold,
            model_name=model.name,
            model_version=model.version,
            scored_at_ms=scored_at_ms,
            stale=batch.stale,
        )
