"""No single record stops the service: each measured failure of issue 11, on the memory bus.

Every test here failed before its fix (the failure it reproduces is named in its docstring).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest

from metasignal.stream.artifact import dumps_artifact, sign_artifact
from metasignal.stream.messages import DLQ_MAX_PAYLOAD_BYTES, MAX_ID_CHARS, REASONS
from metasignal.stream.topics import Topics
from metasignal.stream.transport.memory import MemoryBus
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee
from tests.conftest import TEST_KEY
from tests.streaming import (
    decoded,
    drain,
    memory_bus,
    memory_scorer,
    publish_model,
    send_raw,
    send_training_rows,
    send_votes,
    versioned,
)

TOPICS = Topics(prefix="hostile.")

make_bus = partial(memory_bus, TOPICS)
scorer_for = partial(memory_scorer, topics=TOPICS)


def signal_ids(bus: MemoryBus) -> set[str]:
    return {s["id"] for s in decoded(bus, TOPICS.signals)}


def dead_reasons(bus: MemoryBus) -> dict[bytes | None, str]:
    return {r.key: dict(r.headers)["reason"].decode() for r in bus.records(TOPICS.dlq)}


def vote(event_id: str, ts: Any, committee: Committee) -> bytes:
    votes = dict(zip(committee.members, committee.votes[0].tolist(), strict=True))
    return json.dumps({"id": event_id, "ts": ts, "votes": votes}).encode()


def test_event_times_outside_a_sane_window_are_bad_ts_and_the_rest_is_scored(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: ts 1e300 or 2**63 raised OverflowError and crash-looped the scorer."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    hostile = [
        (b"t1", vote("t1", 1e300, committee)),
        (b"t2", vote("t2", 2**63, committee)),
        (b"t3", vote("t3", -1, committee)),
        (b"t4", vote("t4", "9999-12-31T23:59:59+00:00", committee)),
        (b"t5", vote("t5", "0001-01-01T00:00:00+00:00", committee)),
    ]
    send_raw(bus, TOPICS.votes, hostile)
    good = send_votes(bus, TOPICS, committee, 0, 200)
    scorer = scorer_for(bus)
    drain(scorer)
    assert signal_ids(bus) == set(good)
    assert dead_reasons(bus) == {key: "bad_ts" for key, _ in hostile}


def test_an_oversized_payload_is_truncated_in_the_dlq_with_a_header_saying_so(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: a 1 MB vote's DLQ copy was larger than the producer's request limit; the DLQ
    send failed and the scorer crash-looped. Now the copy is cut to a size any broker takes."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    huge = b'{"id": "big", "pad": "' + b"x" * 1_100_000 + b'"}'
    send_raw(bus, TOPICS.votes, [(b"big", huge)])
    good = send_votes(bus, TOPICS, committee, 0, 50)
    drain(scorer_for(bus))
    assert signal_ids(bus) == set(good)
    (dead,) = bus.records(TOPICS.dlq)
    headers = dict(dead.headers)
    assert headers["reason"] == b"oversize"
    assert dead.value == huge[:DLQ_MAX_PAYLOAD_BYTES]
    assert int(headers["truncated_value_bytes"]) == len(huge)


def test_ids_have_a_length_limit(committee: Committee, artifact_body: dict) -> None:
    """Before: any id up to the message size was scored and kept in the join cache."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    long_id = "i" * (MAX_ID_CHARS + 1)
    send_raw(bus, TOPICS.votes, [(b"long", vote(long_id, 1, committee))])
    send_raw(bus, TOPICS.votes, [(b"ok", vote("i" * MAX_ID_CHARS, 1, committee))])
    scorer = scorer_for(bus)
    drain(scorer)
    assert signal_ids(bus) == {"i" * MAX_ID_CHARS}
    assert dead_reasons(bus) == {b"long": "bad_id"}
    assert len(scorer.join) == 1


def test_a_failure_of_unknown_kind_sends_that_record_to_the_dlq_as_internal(
    committee: Committee, artifact_body: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: any exception but MessageError in the batch killed the scorer."""
    import metasignal.stream.step as step

    real_decode_batch = step.decode_vote_batch
    real_decode = step.decode_vote
    real_encode = step.encode_signals

    def boom(raw: bytes | None) -> bool:
        return raw is not None and b'"boom-decode"' in raw

    # Both decoders (the whole batch at once, and one record at a time) and the encoder fail.
    def decode_batch(values: list[bytes | None], *args: Any, **kwargs: Any) -> Any:
        if any(map(boom, values)):
            raise RuntimeError("a bug in decoding")
        return real_decode_batch(values, *args, **kwargs)

    def decode(raw: bytes | None, **kwargs: Any) -> Any:
        if boom(raw):
            raise RuntimeError("a bug in decoding")
        return real_decode(raw, **kwargs)

    def encode(**kwargs: Any) -> Any:
        if "boom-encode" in kwargs["event_ids"]:
            raise ValueError("a bug in encoding")
        return real_encode(**kwargs)

    monkeypatch.setattr(step, "decode_vote_batch", decode_batch)
    monkeypatch.setattr(step, "decode_vote", decode)
    monkeypatch.setattr(step, "encode_signals", encode)
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    good = send_votes(bus, TOPICS, committee, 0, 300)
    send_raw(
        bus,
        TOPICS.votes,
        [(b"d", vote("boom-decode", 1, committee)), (b"e", vote("boom-encode", 1, committee))],
    )
    good += send_votes(bus, TOPICS, committee, 300, 600)
    scorer = scorer_for(bus, batch_size=1000)
    drain(scorer)
    assert signal_ids(bus) == set(good)
    assert dead_reasons(bus) == {b"d": "internal", b"e": "internal"}
    assert scorer.stats.votes == 602 and scorer.stats.dlq == 2
    assert "internal" in REASONS


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def non_ascii_signature(body: dict) -> bytes:
    doc = json.loads(dumps_artifact(sign_artifact(body, TEST_KEY)))
    doc["model"]["version"] = 5
    doc["signature"]["value"] = "é" * 64
    return json.dumps(doc).encode()


def test_hostile_models_records_are_refused_and_the_current_model_keeps_serving(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: deeply nested JSON (RecursionError) or a non-ASCII signature (TypeError) on
    models killed every scorer and trainer at each start (the record stays, compacted)."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    publish_model(bus, TOPICS, nested(100_000))
    publish_model(bus, TOPICS, non_ascii_signature(artifact_body))
    publish_model(bus, TOPICS, b"\xff" * 10)
    good = send_votes(bus, TOPICS, committee, 0, 100)
    scorer = scorer_for(bus)
    drain(scorer)
    assert scorer.models.current is not None and scorer.models.current.version == 1
    assert signal_ids(bus) == set(good)
    refused = next(iter(scorer.metrics.refused.collect())).samples
    assert sum(s.value for s in refused if s.name.endswith("_total")) == 3
    trainer = TrainerService(transport=bus, options=TrainerOptions(topics=TOPICS), keys=[TEST_KEY])
    trainer.refresh()
    assert trainer.champion is not None and trainer.champion["model"]["version"] == 1
    assert refused_total(trainer, TOPICS.models) == 3


def refused_total(trainer: TrainerService, topic: str) -> float:
    samples = next(iter(trainer.metrics.refused.collect())).samples
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["topic"] == topic)


def test_hostile_control_and_training_records_are_refused_one_at_a_time(
    committee: Committee, artifact_body: dict
) -> None:
    """Before: nested JSON or a row like {"m1": {"x": 1}} on control/training crash-looped
    the trainer."""
    bus = make_bus()
    publish_model(bus, TOPICS, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(bus, TOPICS, committee, committee.labels[:3000])
    hostile_rows = [
        nested(100_000),
        b'{"m1": {"x": 1}}',
        json.dumps({"id": "r", "ts": 1, "votes": {"m1": {"x": 1}}, "label": 1}).encode(),
        json.dumps({"id": "r", "ts": 2**63, "votes": {}, "label": 1}).encode(),
        b"\x00\x01",
    ]
    send_raw(bus, TOPICS.training, [(b"r", raw) for raw in hostile_rows])
    hostile_requests = [nested(100_000), b'{"m1": {"x": 1}}', b"[]", b"\xff"]
    send_raw(bus, TOPICS.control, [(b"meta", raw) for raw in hostile_requests])
    trainer = TrainerService(transport=bus, options=TrainerOptions(topics=TOPICS), keys=[TEST_KEY])
    drain(trainer)
    assert [v.outcome for v in trainer.verdicts] == ["failed"] * len(hostile_requests)
    assert len(trainer.rows) == 3000
    assert refused_total(trainer, TOPICS.training) == len(hostile_rows)
    assert refused_total(trainer, TOPICS.control) == len(hostile_requests)
