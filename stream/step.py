"""The scoring step: a batch of vote records in, a scored batch out, no I/O.

:class:`ScoringStep` decodes and validates each record, lays the valid votes
out in the model's member order, scores and decides them in one vectorised
pass, and keeps every refused record with the reason it goes to the DLQ.
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
>>> [vote.id for _, vote in batch.good], batch.decisions.tolist()
(['e1'], [1])
>>> [(record.offset, error.reason) for record, error in batch.dead]
[(1, 'out_of_range')]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from metasignal.stream.messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MessageError,
    Vote,
    decode_vote,
    encode_signal,
    vote_matrix,
)
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.transport.base import Record

log = logging.getLogger("metasignal.scorer")

SAMPLE_EVERY = 10

Good = list[tuple[Record, Vote]]
Dead = list[tuple[Record, MessageError]]


def internal_error(exc: Exception) -> MessageError:
    """A per-record failure of no known kind: the record goes to the DLQ as ``internal``."""
    return MessageError("internal", f"{type(exc).__name__}: {exc}"[:500])


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """One batch after scoring: rows of ``matrix``, ``scores``, ``decisions`` and ``sizes``
    follow ``good``."""

    good: Good
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
        return [vote.id for _, vote in self.good]

    @classmethod
    def concat(cls, parts: Sequence[ScoredBatch], n_members: int) -> ScoredBatch:
        stale = None
        if any(part.stale is not None for part in parts):
            stale = np.concatenate(
                [
                    np.zeros(len(part.good), dtype=bool) if part.stale is None else part.stale
                    for part in parts
                ]
            )
        return cls(
            good=[pair for part in parts for pair in part.good],
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
    """Split records into decoded votes and dead letters (member names are checked later)."""
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
            good, dead = decode_votes(
                records, max_bytes=self.max_message_bytes, probabilities=model.transform == "logit"
            )
            batch = self.score(good, dead, model)
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
            good=[],
            dead=dead,
            matrix=np.empty((0, len(model.members))),
            scores=np.empty(0),
            decisions=np.empty(0, dtype=np.int8),
            sizes=np.empty(0),
        )

    def score(self, good: Good, dead: Dead, model: CompiledModel) -> ScoredBatch:
        """Member checks, then one vectorised predict and decide over the valid votes."""
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
        scores = model.predict_proba(matrix) if good else np.empty(0)
        decisions = model.decide(scores)
        return ScoredBatch(
            good=good,
            dead=dead,
            matrix=matrix,
            scores=scores,
            decisions=decisions,
            sizes=model.size(scores),
            sample=sample,
        )

    def mark_stale(self, batch: ScoredBatch, *, now_ms: int) -> ScoredBatch:
        """Votes older than ``max_vote_age_ms`` (by their Kafka timestamp) decide no-trade."""
        written = np.fromiter(
            (record.timestamp_ms for record, _ in batch.good), dtype=np.int64, count=len(batch.good)
        )
        stale = now_ms - written > self.max_vote_age_ms
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
        # Python scalars: iterating numpy arrays would box each element.
        stale = [False] * len(batch.good) if batch.stale is None else batch.stale.tolist()
        return [
            (
                vote.id.encode(),
                encode_signal(
                    event_id=vote.id,
                    ts_ms=vote.ts_ms,
                    decision=decision,
                    score=score,
                    threshold=model.threshold,
                    size=size,
                    model_name=model.name,
                    model_version=model.version,
                    scored_at_ms=scored_at_ms,
                    stale=is_stale,
                ),
            )
            for (_, vote), score, decision, size, is_stale in zip(
                batch.good,
                batch.scores.tolist(),
                batch.decisions.tolist(),
                batch.sizes.tolist(),
                stale,
                strict=True,
            )
        ]
