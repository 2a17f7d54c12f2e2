"""Wire messages: every DLQ reason, the member matrix, and the hand-rolled signal encoder."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metasignal.stream.messages import (
    MessageError,
    Vote,
    decode_outcome,
    decode_vote,
    encode_signal,
    vote_matrix,
)


def refusal(decode: Callable[..., object], raw: bytes | None, **limits: int) -> str:
    """The reason ``decode`` refuses ``raw`` with (it must refuse it)."""
    with pytest.raises(MessageError) as caught:
        decode(raw, **limits)
    return caught.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[1, 2]", "not_object"),
        (b'{"ts": 1, "votes": {"a": 0.1}}', "missing_id"),
        (b'{"id": "", "ts": 1, "votes": {"a": 0.1}}', "missing_id"),
        (b'{"id": 7, "ts": 1, "votes": {"a": 0.1}}', "missing_id"),
        (b'{"id": "e", "votes": {"a": 0.1}}', "missing_ts"),
        (b'{"id": "e", "ts": true, "votes": {"a": 0.1}}', "bad_ts"),
        (b'{"id": "e", "ts": 1.5, "votes": {"a": 0.1}}', "bad_ts"),
        (b'{"id": "e", "ts": "2024-01-01T00:00:00", "votes": {"a": 0.1}}', "bad_ts"),
        (b'{"id": "e", "ts": "yesterday", "votes": {"a": 0.1}}', "bad_ts"),
        (b'{"id": "e", "ts": 1}', "missing_votes"),
        (b'{"id": "e", "ts": 1, "votes": {}}', "bad_votes"),
        (b'{"id": "e", "ts": 1, "votes": [0.1]}', "bad_votes"),
        (b'{"id": "e", "ts": 1, "votes": {"a": "0.1"}}', "bad_votes"),
        (b'{"id": "e", "ts": 1, "votes": {"a": true}}', "bad_votes"),
        (b'{"id": "e", "ts": 1, "votes": {"a": 0.1, "b": NaN}}', "non_finite"),
        (b'{"id": "e", "ts": 1, "votes": {"a": Infinity}}', "non_finite"),
        (b'{"id": "e", "ts": 1, "votes": {"a": -Infinity}}', "non_finite"),
        (b'{"id": "e", "ts": 1, "votes": {"a": 1e999}}', "non_finite"),
        (b'{"id": "e", "ts": 1, "votes": {"a": Nonsense}}', "invalid_json"),
        (b'{"id": "e\xc3\x28", "ts": 1, "votes": {"a": 0.1}}', "invalid_json"),
        (b'{"id": "e", "ts": 1, "votes": {"a": 0.1, "b": -0.01}}', "out_of_range"),
        (b'{"id": "e", "ts": 1, "votes": {"a": 2}}', "out_of_range"),
    ],
)
def test_bad_votes_are_named(raw: bytes | None, reason: str) -> None:
    assert refusal(decode_vote, raw) == reason


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(MessageError, match="oversize"):
        decode_vote(b'{"id": "e", "ts": 1, "votes": {"a": 0.1}}', max_bytes=10)


def test_good_votes_decode_with_either_timestamp_form() -> None:
    a = decode_vote(b'{"id": "e", "ts": 1704067200000, "votes": {"a": 0, "b": 1.0}}')
    b = decode_vote(b'{"id": "e", "ts": "2024-01-01T00:00:00Z", "votes": {"a": 0, "b": 1.0}}')
    assert a == b == Vote(id="e", ts_ms=1_704_067_200_000, votes={"a": 0, "b": 1.0})


def test_raw_scores_may_leave_the_unit_interval_but_not_be_infinite() -> None:
    vote = decode_vote(b'{"id": "e", "ts": 1, "votes": {"a": -3.5}}', probabilities=False)
    assert vote.votes == {"a": -3.5}
    with pytest.raises(MessageError, match="non_finite"):
        decode_vote(b'{"id": "e", "ts": 1, "votes": {"a": -Infinity}}', probabilities=False)


def test_outcome_labels_are_zero_or_one() -> None:
    assert decode_outcome(b'{"id": "e", "ts": 5, "label": 1}').label == 1
    for label in (b"true", b"2", b'"1"'):
        with pytest.raises(MessageError, match="bad_label"):
            decode_outcome(b'{"id": "e", "ts": 5, "label": ' + label + b"}")


def votes(*mappings: dict[str, float]) -> list[Vote]:
    return [Vote(id=f"e{i}", ts_ms=i, votes=m) for i, m in enumerate(mappings)]


def test_vote_matrix_orders_members_and_marks_missing_ones() -> None:
    matrix, errors = vote_matrix(
        votes({"b": 0.2, "a": 0.1}, {"a": 0.3}, {"a": 0.4, "zz": 0.9}),
        ("a", "b"),
        reject_unknown=False,
        reject_missing=False,
    )
    assert errors == [None, None, None]
    np.testing.assert_array_equal(matrix, [[0.1, 0.2], [0.3, np.nan], [0.4, np.nan]])


def test_vote_matrix_rejects_unknown_and_missing_members_when_asked() -> None:
    batch = votes({"a": 0.1, "zz": 0.2, "b": 0.3}, {"a": 0.3}, {"a": 0.1, "b": 0.2})
    _, errors = vote_matrix(batch, ("a", "b"), reject_unknown=True, reject_missing=True)
    assert [e.reason if e else None for e in errors] == ["unknown_member", "missing_member", None]
    assert errors[0] is not None and "'zz'" in errors[0].detail
    assert errors[1] is not None and "missing member(s) b" in errors[1].detail


def test_empty_batch_has_the_model_width() -> None:
    matrix, errors = vote_matrix([], ("a", "b", "c"), reject_unknown=True, reject_missing=True)
    assert matrix.shape == (0, 3) and errors == []


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    event_id=st.text(max_size=30),
    model_name=st.text(min_size=1, max_size=10),
    ts_ms=st.integers(min_value=-(2**62), max_value=2**62),
    decision=st.sampled_from([0, 1]),
    score=finite,
    threshold=finite,
    size=st.floats(min_value=0.0, max_value=1.0),
    version=st.integers(min_value=1, max_value=10**9),
)
def test_signal_encoding_is_exactly_json_dumps(
    event_id: str,
    model_name: str,
    ts_ms: int,
    decision: int,
    score: float,
    threshold: float,
    size: float,
    version: int,
) -> None:
    encoded = encode_signal(
        event_id=event_id,
        ts_ms=ts_ms,
        decision=decision,
        score=np.float64(score),
        threshold=threshold,
        size=size,
        model_name=model_name,
        model_version=version,
        scored_at_ms=ts_ms + 1,
    )
    expected = {
        "id": event_id,
        "ts": ts_ms,
        "decision": decision,
        "score": score,
        "threshold": threshold,
        "size": size,
        "model": model_name,
        "model_version": version,
        "scored_at": ts_ms + 1,
    }
    assert encoded == json.dumps(expected, separators=(",", ":")).encode()
    assert json.loads(encoded) == expected


def test_signal_refuses_a_non_finite_score() -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_signal(
            event_id="e",
            ts_ms=1,
            decision=0,
            score=math.nan,
            threshold=0.5,
            size=0.0,
            model_name="meta",
            model_version=1,
            scored_at_ms=2,
        )


# --------------------------------------------------------------------------- every contract


def test_a_signal_has_exactly_the_typed_fields() -> None:
    from metasignal.stream.messages import Signal

    fields: dict[str, Any] = {
        "event_id": "e",
        "ts_ms": 1,
        "score": 0.7,
        "threshold": 0.5,
        "size": 0.0,
        "model_name": "meta",
        "model_version": 2,
        "scored_at_ms": 3,
    }
    raw = encode_signal(**fields, decision=1)
    # The annotations in order; 'stale' (NotRequired, last) only on stale votes' signals.
    assert list(json.loads(raw)) == list(Signal.__annotations__)[:-1]
    stale = encode_signal(**fields, decision=0, stale=True)
    assert list(json.loads(stale)) == list(Signal.__annotations__)
    assert json.loads(stale)["stale"] is True


def test_training_rows_round_trip_and_anything_else_is_refused() -> None:
    from metasignal.stream.messages import (
        TrainingRow,
        decode_training_row,
        encode_training_row,
    )

    row = TrainingRow(
        id="e", ts=5, votes={"m1": 0.2}, label=1, score=0.4, decision=0, model_version=3
    )
    assert decode_training_row(encode_training_row(row)) == row
    for raw, reason in [
        (b'{"id": "e", "ts": 5, "votes": {"m1": {"x": 1}}, "label": 1}', "bad_votes"),
        (b'{"m1": {"x": 1}}', "missing_id"),
        (b'{"id": "e", "ts": 5, "votes": {"m1": 0.1}, "label": 2}', "bad_label"),
        (b'{"id": "e", "ts": 1e300, "votes": {}, "label": 1}', "bad_ts"),
        (b'{"id": "e", "ts": 9223372036854775808, "votes": {}, "label": 1}', "bad_ts"),
        (b"[" * 100_000, "invalid_json"),
    ]:
        assert refusal(decode_training_row, raw, max_bytes=1 << 20) == reason, raw[:40]


def test_control_requests_round_trip_and_anything_else_is_refused() -> None:
    from metasignal.stream.messages import (
        ControlRequest,
        decode_control_request,
        encode_control_request,
    )

    request = ControlRequest(
        id="r1",
        kind="retune",
        reason="rate drift",
        model="meta",
        model_version=3,
        since_ts=None,
        at_event_ts=7,
        at=8,
        source="metasignal-scorer",
        stats={"outcomes": 10},
    )
    assert decode_control_request(encode_control_request(request)) == request
    for raw, reason in [
        (b'{"id": "r", "kind": "delete everything"}', "bad_request"),
        (b'{"id": "r", "kind": "retune", "model_version": "3"}', "bad_request"),
        (b'{"kind": "retune"}', "missing_id"),
        (b'{"a":' * 5000, "invalid_json"),
    ]:
        assert refusal(decode_control_request, raw, max_bytes=1 << 20) == reason, raw[:40]


def test_a_control_request_cannot_carry_force() -> None:
    from metasignal.stream.messages import decode_control_request

    request = decode_control_request(b'{"id": "r", "kind": "retrain", "force": true}')
    assert "force" not in request


def test_dead_letter_headers_are_the_documented_ones() -> None:
    from metasignal.stream.messages import DLQ_HEADERS, dead_letter_headers
    from metasignal.stream.transport.base import Record

    record = Record("t.votes", 2, 9, b"k", b"v", 0)
    headers = dead_letter_headers(record, MessageError("bad_ts", "x" * 1000))
    assert tuple(name for name, _ in headers) == DLQ_HEADERS
    assert dict(headers)["source_offset"] == b"9" and len(dict(headers)["detail"]) == 500
