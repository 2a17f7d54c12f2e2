"""In-process throughput: the work of ``Scorer.process`` without a broker, on one thread.

Two measurements over the same pre-built batches of 500 vote records:

* **components** re-runs the hot path of :meth:`metasignal.stream.scorer.Scorer.process` step
  by step (decode -> vote matrix + predict + decide -> encode) with a timer between steps, which
  gives the split;
* **scorer step** drives the real :meth:`metasignal.stream.scorer.Scorer.step` on a null transport
  (sends and commits are no-ops), so everything else the loop does per batch (metrics,
  latency bookkeeping, model refresh) is included.

A JSON decoder is swapped by replacing ``metasignal.stream.messages._load_json`` for the duration of
one measurement, so the decoders are compared on the project's own code. (Signals are
written by a format string, not a JSON library, so there is no encoder to compare.)
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

import metasignal.stream.messages
from bench.stream_data import SIGNING_KEY, Inputs, encoded_votes
from metasignal.stream.messages import MessageError, Vote, decode_vote, encode_signal, vote_matrix
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.topics import Topics
from metasignal.stream.transport.base import (
    Consumer,
    Producer,
    RebalanceListener,
    Record,
    TopicPartition,
    TopicSpec,
)

log = logging.getLogger("bench.stream")

BATCH_SIZE = 500
STDLIB = "stdlib json"
ORJSON = f"orjson {orjson.__version__} (shipped)"


# --------------------------------------------------------------------------- JSON variants


@contextlib.contextmanager
def json_backend(loads: Callable[[bytes], Any] | None) -> Iterator[None]:
    """Swap the JSON decoder used by ``decode_vote`` (``None``: the stdlib's)."""
    if loads is None:
        yield
        return
    original = metasignal.stream.messages._load_json
    metasignal.stream.messages._load_json = loads
    try:
        yield
    finally:
        metasignal.stream.messages._load_json = original


def stdlib_loads(raw: bytes) -> Any:
    """The standard library's decoder, as the scorer used it before orjson."""
    return json.loads(raw)


# --------------------------------------------------------------------------- null transport


class _ModelsConsumer:
    """Hands out the artifact once, then nothing: the scorer's ``models`` reader."""

    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        records, self._records = self._records, []
        return records

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("models", 0)}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        pass

    def position(self, partition: TopicPartition) -> int:
        return 1

    def committed(self, partition: TopicPartition) -> int | None:
        return None

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 1)

    def close(self) -> None:
        pass


class _CyclingConsumer(_ModelsConsumer):
    """Returns the prepared batches round and round: a vote reader with zero transport cost."""

    def __init__(self, batches: list[list[Record]]) -> None:
        super().__init__([])
        self._batches = batches
        self._next = 0

    def poll(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        batch = self._batches[self._next % len(self._batches)]
        self._next += 1
        return batch


class _NullProducer:
    def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        pass

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, offsets: Mapping[TopicPartition, int], consumer: Consumer) -> None:
        pass

    def abort_transaction(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullTransport:
    """A :class:`metasignal.stream.transport.base.Transport` whose I/O costs nothing."""

    def __init__(self, artifact: bytes, batches: list[list[Record]]) -> None:
        self._artifact = artifact
        self._batches = batches

    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        return []

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        return []

    def partition_count(self, topic: str) -> int | None:
        return 1

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> Consumer:
        if assign_all:
            model = Record(
                topic=assign_all[0], partition=0, offset=0, key=b"meta", value=self._artifact,
                timestamp_ms=int(time.time() * 1000),
            )  # fmt: skip
            return _ModelsConsumer([model])
        return _CyclingConsumer(self._batches)

    def producer(self, *, transactional_id: str | None = None) -> Producer:
        return _NullProducer()

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- measurements


@dataclass
class Split:
    """Seconds spent per stage over one pass."""

    decode: float = 0.0
    score: float = 0.0
    encode: float = 0.0
    votes: int = 0

    @property
    def total(self) -> float:
        return self.decode + self.score + self.encode


def make_batches(inputs: Inputs, n_votes: int) -> list[list[Record]]:
    """Vote records as the transport would hand them over, ``BATCH_SIZE`` per batch."""
    now = int(time.time() * 1000)
    records = [
        Record(topic="votes", partition=0, offset=i, key=key, value=value, timestamp_ms=now)
        for i, (key, value) in enumerate(encoded_votes(inputs.committee, 0, n_votes))
    ]
    return [records[i : i + BATCH_SIZE] for i in range(0, len(records), BATCH_SIZE)]


def components_pass(batches: Sequence[Sequence[Record]], model: CompiledModel) -> Split:
    """The body of ``Scorer.process`` up to the sends, timed per stage."""
    split = Split()
    probabilities = model.transform == "logit"
    reject_missing = model.missing_policy == "reject"
    clock = time.perf_counter
    for records in batches:
        t0 = clock()
        good: list[tuple[Record, Vote]] = []
        dead: list[tuple[Record, MessageError]] = []
        for record in records:
            try:
                vote = decode_vote(record.value, probabilities=probabilities)
            except MessageError as bad:
                dead.append((record, bad))
            else:
                good.append((record, vote))
        t1 = clock()
        matrix, errors = vote_matrix(
            [vote for _, vote in good],
            model.members,
            reject_unknown=False,
            reject_missing=reject_missing,
        )
        keep = np.array([e is None for e in errors], dtype=bool)
        scored = [pair for pair, ok in zip(good, keep, strict=True) if ok]
        scores = model.predict_proba(matrix[keep]) if scored else np.empty(0)
        decisions = model.decide(scores)
        sizes = model.size(scores)
        t2 = clock()
        scored_at = int(time.time() * 1000)
        out = [
            encode_signal(
                event_id=vote.id,
                ts_ms=vote.ts_ms,
                decision=int(decision),
                score=float(score),
                threshold=model.threshold,
                size=float(size),
                model_name=model.name,
                model_version=model.version,
                scored_at_ms=scored_at,
            )
            for (_, vote), score, decision, size in zip(
                scored, scores, decisions, sizes, strict=True
            )
        ]
        t3 = clock()
        if len(out) + len(dead) != len(records):
            raise AssertionError("every vote must yield a signal or a dead letter")
        split.decode += t1 - t0
        split.score += t2 - t1
        split.encode += t3 - t2
        split.votes += len(records)
    return split


def new_scorer(
    inputs: Inputs, batches: list[list[Record]], extra: Mapping[str, Any] | None = None
) -> Scorer:
    options = ScorerOptions(topics=Topics(prefix="bench."), batch_size=BATCH_SIZE, **(extra or {}))
    scorer = Scorer(
        transport=NullTransport(inputs.artifact, batches), options=options, keys=[SIGNING_KEY]
    )
    scorer.load_models()
    if scorer.models.current is None:
        raise RuntimeError("the null transport did not deliver the artifact")
    return scorer


def step_pass(scorer: Scorer, n_batches: int) -> tuple[float, int]:
    """``n_batches`` real loop iterations; returns (seconds, votes)."""
    votes = 0
    started = time.perf_counter()
    for _ in range(n_batches):
        votes += scorer.step()
    return time.perf_counter() - started, votes


@dataclass
class VariantResult:
    """Per-repeat figures of one JSON variant (the report takes medians)."""

    name: str
    pipeline_rate: list[float] = field(default_factory=list)
    step_rate: list[float] = field(default_factory=list)
    decode_us: list[float] = field(default_factory=list)
    score_us: list[float] = field(default_factory=list)
    encode_us: list[float] = field(default_factory=list)

    def best_us(self, attr: str) -> float:
        """Fastest pass of a per-vote cost: other tenants can only slow a pass down."""
        values: list[float] = getattr(self, attr)
        return min(values) if values else float("nan")


@dataclass
class InprocResult:
    variants: list[VariantResult]
    n_votes: int
    repeats: int
    ratios: dict[str, dict[str, float]]  # variant -> {"pipeline": x, "step": y}: best vs best
    output_equal: bool
    # Scorer.step (stdlib) with these ScorerOptions, per repeat, e.g. outcome tracking off
    step_with: dict[str, list[float]] = field(default_factory=dict)


def same_votes(inputs: Inputs, loads: Callable[[bytes], Any], batches: list[list[Record]]) -> bool:
    """The shipped decoder and ``loads`` must decode the same votes."""
    model = CompiledModel.from_artifact(json.loads(inputs.artifact))
    sample = batches[:2]
    outputs = []
    for backend in (None, loads):
        with json_backend(backend):
            votes = [decode_vote(r.value) for batch in sample for r in batch]
        matrix, _ = vote_matrix(votes, model.members, reject_unknown=False, reject_missing=False)
        outputs.append([(v.id, v.ts_ms, dict(v.votes)) for v in votes])
        outputs.append(matrix.tolist())
    return outputs[0] == outputs[2] and outputs[1] == outputs[3]


def run_inproc(
    inputs: Inputs,
    *,
    n_votes: int,
    repeats: int,
    step_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> InprocResult:
    """Every variant, interleaved per repeat so machine noise hits them alike."""
    from threadpoolctl import threadpool_limits

    batches = make_batches(inputs, n_votes)
    model = CompiledModel.from_artifact(json.loads(inputs.artifact))
    # The stdlib first: the ratios are against it. None = the decoder the scorer ships with.
    variants: list[tuple[VariantResult, Callable[[bytes], Any] | None]] = [
        (VariantResult(STDLIB), stdlib_loads),
        (VariantResult(ORJSON), None),
    ]
    step_with: dict[str, list[float]] = {}
    equal = same_votes(inputs, stdlib_loads, batches)
    # The benchmark process holds the trainer's and scikit-learn's objects, which a scorer
    # does not; freeze them out of the cyclic GC so its full collections cost what a
    # scorer's would (objects made during the passes are still collected).
    gc.collect()
    gc.freeze()
    # One core: the matrix products are tiny, but keep BLAS from spawning threads anyway.
    with contextlib.ExitStack() as stack:
        stack.callback(gc.unfreeze)
        stack.enter_context(threadpool_limits(limits=1))
        for _, shim in variants:  # warm-up: imports, numpy dispatch, allocator
            with json_backend(shim):
                components_pass(batches[:4], model)
        for _ in range(repeats):
            for result, shim in variants:
                with json_backend(shim):
                    split = components_pass(batches, model)
                    scorer = new_scorer(inputs, batches)
                    step_s, step_votes = step_pass(scorer, len(batches))
                    scorer.close()
                result.pipeline_rate.append(split.votes / split.total)
                result.step_rate.append(step_votes / step_s)
                result.decode_us.append(1e6 * split.decode / split.votes)
                result.score_us.append(1e6 * split.score / split.votes)
                result.encode_us.append(1e6 * split.encode / split.votes)
            for label, extra in (step_options or {}).items():
                scorer = new_scorer(inputs, batches, extra)
                step_s, step_votes = step_pass(scorer, len(batches))
                scorer.close()
                step_with.setdefault(label, []).append(step_votes / step_s)
    base = variants[0][0]
    ratios = {
        r.name: {
            "pipeline": max(r.pipeline_rate) / max(base.pipeline_rate),
            "step": max(r.step_rate) / max(base.step_rate),
        }
        for r, _ in variants
    }
    return InprocResult(
        variants=[r for r, _ in variants],
        n_votes=sum(len(b) for b in batches),
        repeats=repeats,
        ratios=ratios,
        output_equal=equal,
        step_with=step_with,
    )
