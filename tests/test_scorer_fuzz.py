"""Fuzz: arbitrary bytes at every decoder, and at the scorer and the trainer on the memory bus.

Whatever arrives, each decoder raises only its own refusal (MessageError, ArtifactError),
and the services neither raise nor lose a vote: each one becomes a signal or a dead letter.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metasignal.stream.artifact import load_artifact
from metasignal.stream.errors import ArtifactError
from metasignal.stream.messages import (
    MessageError,
    decode_control_request,
    decode_outcome,
    decode_training_row,
    decode_vote,
)
from metasignal.stream.model_store import ModelStore
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics
from metasignal.trainer.service import TrainerOptions, TrainerService
from tests.conftest import TEST_KEY
from tests.streaming import memory_bus, publish_model, send_raw, versioned

MEMBERS = ["m1", "m2", "m3"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# Objects with the fields the decoders look at, holding anything: they get past the
# JSON parser and probe the validation behind it.
shaped = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "ts": json_values | st.integers(min_value=-(2**70), max_value=2**70),
        "votes": st.dictionaries(st.sampled_from(MEMBERS) | st.text(max_size=4), json_values)
        | json_values,
        "label": json_values,
        "kind": st.sampled_from(["retune", "retrain"]) | json_values,
        "model_version": json_values,
        "since_ts": json_values,
        "score": json_values,
        "decision": json_values,
    },
).map(lambda doc: json.dumps(doc).encode())

hostile_bytes = (
    st.binary(max_size=300)
    | shaped
    | st.integers(min_value=1, max_value=200_000).map(lambda n: b"[" * n)
    | json_values.map(lambda v: json.dumps(v).encode())
)

DECODERS: list[Callable[[bytes | None], object]] = [
    decode_vote,
    decode_outcome,
    decode_training_row,
    decode_control_request,
]


@settings(max_examples=400, deadline=None)
@given(raw=hostile_bytes | st.none())
def test_every_message_decoder_only_ever_refuses(raw: bytes | None) -> None:
    for decode in DECODERS:
        with contextlib.suppress(MessageError):
            decode(raw)


@settings(max_examples=200, deadline=None)
@given(raw=hostile_bytes)
def test_the_artifact_loader_and_the_model_store_only_ever_refuse(raw: bytes) -> None:
    with contextlib.suppress(ArtifactError):
        load_artifact(raw, keys=[TEST_KEY])
    assert ModelStore(keys=[TEST_KEY], model_name="meta").offer(raw) in ("refused", "other")


TOPICS = Topics(prefix="fuzz.")


@pytest.fixture(scope="module")
def model_bytes(artifact_body: dict) -> bytes:
    return versioned(artifact_body, 1, TEST_KEY)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    votes=st.lists(hostile_bytes, max_size=30),
    outcomes=st.lists(hostile_bytes, max_size=10),
    others=st.lists(st.tuples(st.sampled_from(["models", "control", "training"]), hostile_bytes)),
)
def test_the_scorer_and_the_trainer_survive_any_records(
    model_bytes: bytes,
    votes: list[bytes],
    outcomes: list[bytes],
    others: list[tuple[str, bytes]],
) -> None:
    bus = memory_bus(TOPICS)
    publish_model(bus, TOPICS, model_bytes)
    send_raw(bus, TOPICS.votes, [(b"k%d" % i, raw) for i, raw in enumerate(votes)])
    send_raw(bus, TOPICS.outcomes, [(b"k%d" % i, raw) for i, raw in enumerate(outcomes)])
    for kind, raw in others:
        send_raw(bus, getattr(TOPICS, kind), [(b"meta", raw)])
    scorer = Scorer(
        transport=bus,
        options=ScorerOptions(topics=TOPICS, poll_timeout_ms=1, model_check_interval_s=0.0),
        keys=[TEST_KEY],
    )
    trainer = TrainerService(
        transport=bus, options=TrainerOptions(topics=TOPICS, poll_timeout_ms=1), keys=[TEST_KEY]
    )
    services: list[Any] = [scorer, trainer]
    idle = 0
    for _ in range(100):
        idle = idle + 1 if sum(service.step() for service in services) == 0 else 0
        if idle >= 3:
            break
    assert scorer.models.current is not None and scorer.models.current.version == 1
    votes_out = len(bus.records(TOPICS.signals)) + sum(
        1
        for r in bus.records(TOPICS.dlq)
        if dict(r.headers)["source_topic"] == TOPICS.votes.encode()
    )
    assert votes_out == len(votes)
    assert len(trainer.verdicts) == sum(1 for kind, _ in others if kind == "control")
    scorer.close()
    trainer.close()
