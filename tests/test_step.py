"""The scoring step's whole-batch path against the record-by-record one.

A batch of regular votes is decoded and encoded whole (``decode_vote_batch``,
``encode_signals``); anything else goes record by record (``decode_vote``, ``vote_matrix``,
``encode_signal``: the path every earlier release took). Both must write the same bytes and
refuse the same records for the same reasons; a bad record never costs its neighbours.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metasignal.stream.messages as messages
from metasignal.stream.artifact import Artifact, example_artifact
from metasignal.stream.messages import decode_vote_batch, encode_signal, encode_signals
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.sizing import SizingRule
from metasignal.stream.step import ScoredBatch, ScoringStep
from metasignal.stream.transport.base import Record
from metasignal.trainer.synthetic import Committee

SCORED_AT = 1_767_225_600_000
MEMBERS = ("a", "b", "c")


def record(offset: int, value: bytes | None, timestamp_ms: int = SCORED_AT) -> Record:
    return Record("votes", 0, offset, b"k%d" % offset, value, timestamp_ms)


def records_of(values: list[bytes | None]) -> list[Record]:
    return [record(i, value) for i, value in enumerate(values)]


def regular(i: int, votes: dict[str, float]) -> bytes:
    return json.dumps({"id": f"e{i}", "ts": 1_700_000_000_000 + i, "votes": votes}).encode()


def signals_one_by_one(
    *,
    event_ids: Sequence[str],
    ts_ms: Sequence[int],
    decisions: np.ndarray,
    scores: np.ndarray,
    sizes: np.ndarray,
    threshold: float,
    model_name: str,
    model_version: int,
    scored_at_ms: int,
    stale: np.ndarray | None = None,
) -> list[tuple[bytes, bytes]]:
    """The reference for ``encode_signals``: ``encode_signal`` once per signal."""
    flags = [False] * len(event_ids) if stale is None else stale.tolist()
    return [
        (
            event_id.encode(),
            encode_signal(
                event_id=event_id,
                ts_ms=ts,
                decision=decision,
                score=score,
                threshold=threshold,
                size=size,
                model_name=model_name,
                model_version=model_version,
                scored_at_ms=scored_at_ms,
                stale=is_stale,
            ),
        )
        for event_id, ts, decision, score, size, is_stale in zip(
            event_ids,
            ts_ms,
            decisions.tolist(),
            scores.tolist(),
            sizes.tolist(),
            flags,
            strict=True,
        )
    ]


def per_record(step: ScoringStep, records: list[Record], model: CompiledModel) -> ScoredBatch:
    """What the step did before it had a whole-batch path: every record on its own."""
    batch = step.score(step.decode_each(records, model), model)
    if step.max_vote_age_ms:
        batch = step.mark_stale(batch, now_ms=SCORED_AT)
    signals = signals_one_by_one(
        event_ids=batch.ids,
        ts_ms=batch.ts_ms,
        decisions=batch.decisions,
        scores=batch.scores,
        sizes=batch.sizes,
        threshold=model.threshold,
        model_name=model.name,
        model_version=model.version,
        scored_at_ms=SCORED_AT,
        stale=batch.stale,
    )
    return dataclasses.replace(batch, signals=signals)


def outcome(batch: ScoredBatch) -> tuple[Any, ...]:
    return (
        batch.signals,
        [(r.offset, e.reason, e.detail) for r, e in batch.dead],
        [r.offset for r in batch.records],
        batch.decisions.tolist(),
        # Bit for bit (NaN marks a member to impute, and NaN != NaN in a list).
        [(a.shape, a.dtype.str, a.tobytes()) for a in (batch.matrix, batch.scores, batch.sizes)],
        [(v.id, v.ts_ms, dict(v.votes)) for v in batch.sample],
    )


def model_of(body: Artifact | None = None, **sizing: Any) -> CompiledModel:
    model = CompiledModel.from_artifact(body or example_artifact(MEMBERS))
    if sizing:
        model = CompiledModel(**{**model.__dict__, "sizing": SizingRule(**sizing)})
    return model


def test_a_committee_stream_takes_the_whole_batch_path_and_writes_the_same_bytes(
    committee: Committee, artifact_body: Artifact
) -> None:
    model = model_of(artifact_body)
    members = list(committee.members)
    values: list[bytes | None] = [
        regular(i, dict(zip(members, row, strict=True)))
        for i, row in enumerate(committee.votes[:2000].tolist())
    ]
    records = records_of(values)
    assert decode_vote_batch(values, model.members) is not None  # the whole-batch path
    step = ScoringStep()
    for start in range(0, len(records), 500):
        part = records[start : start + 500]
        assert outcome(step(part, model, scored_at_ms=SCORED_AT)) == outcome(
            per_record(step, part, model)
        )


HOSTILE: list[tuple[bytes | None, str]] = [
    (None, "invalid_json"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_object"),
    (b'{"ts": 1, "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', "missing_id"),
    (b'{"id": "x" , "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', "missing_ts"),
    (b'{"id": "x", "ts": true, "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', "bad_ts"),
    (b'{"id": "x", "ts": 1e300, "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', "bad_ts"),
    (b'{"id": "x", "ts": 1}', "missing_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": true, "b": 0.2, "c": 0.3}}', "bad_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": false, "b": 0.2, "c": 0.3}}', "bad_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": "0.5", "b": 0.2, "c": 0.3}}', "bad_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": null, "b": 0.2, "c": 0.3}}', "bad_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": [0.5], "b": 0.2, "c": 0.3}}', "bad_votes"),
    (b'{"id": "x", "ts": 1, "votes": {"a": NaN, "b": 0.2, "c": 0.3}}', "non_finite"),
    (b'{"id": "x", "ts": 1, "votes": {"a": 1.5, "b": 0.2, "c": 0.3}}', "out_of_range"),
    (b'{"id": "x", "ts": 1, "votes": {"a": 0.1, "b": 0.2, "zz": 0.3}}', ""),  # per policy
    (b'{"id": "x", "ts": 1, "votes": {"a": 0.1, "b": 0.2}}', ""),  # missing c: per policy
    (b'{"id": "x", "ts": 1, "votes": {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}}', ""),
    (b'{"id": "x", "ts": 1, "votes": {"zz": 0.1, "yy": 0.2, "xx": 0.3}}', "unknown_member"),
    (b'{"id": "x", "ts": "2024-01-01T00:00:00Z", "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', ""),
    (b'{"id": "x\\"q", "ts": 1, "votes": {"a": 0.1, "b": 0.2, "c": 0.3}}', ""),  # escaped id
    (b'{"id": "\xc3\xa9", "ts": 1, "votes": {"c": 0.3, "b": 0.2, "a": 1}}', ""),
    (b'{"id": "x", "ts": 1, "votes": {"a": 0, "b": 1, "c": 1}, "note": "n"}', ""),
]

vote_value = st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([0, 1, 1e-300, 5e-324])


@st.composite
def mixed_batches(draw: st.DrawFn) -> list[bytes | None]:
    """Regular votes with hostile records (or none) at random places."""
    n = draw(st.integers(min_value=1, max_value=40))
    values: list[bytes | None] = []
    for i in range(n):
        order = draw(st.permutations(MEMBERS))
        votes = {m: draw(vote_value) for m in order}
        values.append(regular(i, votes))
    inserts = draw(st.lists(st.sampled_from(HOSTILE), max_size=3))
    for raw, _ in inserts:
        values.insert(draw(st.integers(min_value=0, max_value=len(values))), raw)
    return values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=mixed_batches(),
    policy=st.sampled_from(["impute", "reject"]),
    strict=st.booleans(),
    sizing=st.sampled_from(["fixed", "probability"]),
    stdlib=st.booleans(),
)
def test_any_batch_scores_as_record_by_record(
    values: list[bytes | None], policy: str, strict: bool, sizing: str, stdlib: bool
) -> None:
    model = model_of(method=sizing)
    step = ScoringStep(missing_members=policy, strict_members=strict)
    records = records_of(values)
    original = messages._load_json
    # The stdlib decoder (the benchmark's baseline) lets NaN through: still refused.
    messages._load_json = json.loads if stdlib else original
    try:
        got = step(records, model, scored_at_ms=SCORED_AT)
        want = per_record(step, records, model)
    finally:
        messages._load_json = original
    assert outcome(got) == outcome(want)
    # No record is lost, and a bad one costs no neighbour.
    assert len(got.signals) + len(got.dead) == len(records)


@pytest.mark.parametrize(("raw", "reason"), [h for h in HOSTILE if h[1]])
def test_one_bad_record_is_refused_with_its_reason_and_its_neighbours_are_scored(
    raw: bytes | None, reason: str
) -> None:
    model = model_of()
    good = [regular(i, {"a": 0.2, "b": 0.7, "c": 0.9}) for i in range(20)]
    values: list[bytes | None] = [*good[:10], raw, *good[10:]]
    assert decode_vote_batch(values, model.members) is None  # back to record by record
    batch = ScoringStep()(records_of(values), model, scored_at_ms=SCORED_AT)
    assert [(r.offset, e.reason) for r, e in batch.dead] == [(10, reason)]
    assert len(batch.signals) == 20


def test_stale_votes_are_marked_as_record_by_record() -> None:
    model = model_of()
    values = [regular(i, {"a": 0.9, "b": 0.9, "c": 0.9}) for i in range(6)]
    records = [record(i, v, SCORED_AT - (5_000 if i % 2 else 0)) for i, v in enumerate(values)]
    step = ScoringStep(max_vote_age_ms=1_000)
    got = step(records, model, scored_at_ms=SCORED_AT)
    assert got.n_stale == 3 and got.decisions.tolist() == [1, 0, 1, 0, 1, 0]
    assert outcome(got) == outcome(per_record(step, records, model))


@settings(max_examples=300, deadline=None)
@given(
    ids=st.lists(st.text(max_size=12), min_size=1, max_size=20),
    scores=st.data(),
    threshold=st.floats(min_value=0.0, max_value=1.0),
    model_name=st.text(min_size=1, max_size=8),
    version=st.integers(min_value=1, max_value=10**9),
)
def test_signals_of_a_batch_are_encode_signal_byte_for_byte(
    ids: list[str], scores: st.DataObject, threshold: float, model_name: str, version: int
) -> None:
    n = len(ids)
    unit = st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([1e-5, 9.99e-5, 1e-4, 5e-324])
    score = np.array(scores.draw(st.lists(unit, min_size=n, max_size=n)))
    size = np.array(scores.draw(st.lists(unit, min_size=n, max_size=n)))
    ts = scores.draw(st.lists(st.integers(min_value=0, max_value=2**53), min_size=n, max_size=n))
    decisions = (score >= threshold).astype(np.int8)
    columns: dict[str, Any] = {
        "event_ids": ids,
        "ts_ms": ts,
        "decisions": decisions,
        "scores": score,
        "sizes": size,
        "threshold": threshold,
        "model_name": model_name,
        "model_version": version,
        "scored_at_ms": SCORED_AT,
    }
    assert encode_signals(**columns) == signals_one_by_one(**columns)


def test_a_score_that_encode_signal_refuses_is_refused_by_the_batch_too() -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_signals(
            event_ids=["a", "b"],
            ts_ms=[1, 2],
            decisions=np.array([0, 0]),
            scores=np.array([0.5, math.nan]),
            sizes=np.array([0.0, 0.0]),
            threshold=0.5,
            model_name="m",
            model_version=1,
            scored_at_ms=3,
        )


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=1.0), min_size=1, max_size=50))
def test_orjson_writes_unit_floats_as_repr_does(values: list[float]) -> None:
    """What the batch encoder relies on in [1e-4, 1] (it asks repr() for anything else)."""
    texts = orjson.dumps(np.array(values), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")
    assert texts == [repr(v).encode() for v in values]


def test_a_one_member_committee_takes_the_whole_batch_path_too() -> None:
    model = CompiledModel.from_artifact(example_artifact(("solo",)))
    values: list[bytes | None] = [regular(i, {"solo": i / 10}) for i in range(11)]
    whole = decode_vote_batch(values, model.members)
    assert whole is not None and whole.matrix.shape == (11, 1)
    step = ScoringStep()
    records = records_of(values)
    assert outcome(step(records, model, scored_at_ms=SCORED_AT)) == outcome(
        per_record(step, records, model)
    )
