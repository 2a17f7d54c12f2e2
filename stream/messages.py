"""Wire messages: one typed home for every contract on the topics.

* votes in (:class:`Vote`, :func:`decode_vote`) and outcomes in
  (:class:`Outcome`, :func:`decode_outcome`);
* a whole batch of votes at once, when every vote is regular (:func:`decode_vote_batch`), and
  its signals (:func:`encode_signals`): the scorer's hot path;
* signals out (:class:`Signal`, :func:`encode_signal`);
* training rows (:class:`TrainingRow`: the scorer writes them, the trainer reads them);
* control requests (:class:`ControlRequest`: the scorer asks, the trainer answers);
* dead-letter headers (:data:`DLQ_HEADERS`, :func:`dead_letter_headers`).

Every message is a JSON object keyed by its event id. ``ts`` is the event time:
epoch milliseconds (integer) or an ISO-8601 string with a timezone. A message
that cannot be used raises :class:`MessageError` whose ``reason`` is a short,
fixed label (it becomes a Prometheus label and a DLQ header).

Examples
--------
>>> vote = decode_vote(b'{"id": "e1", "ts": 1700000000000, "votes": {"a": 0.2, "b": 0.9}}')
>>> vote.id, vote.ts_ms, vote.votes["b"]
('e1', 1700000000000, 0.9)
>>> decode_vote(b'{"id": "e1", "ts": "2024-01-01T00:00:00Z", "votes": {"a": 1.5}}')
Traceback (most recent call last):
...
metasignal.stream.messages.MessageError: out_of_range: member 'a' vote 1.5 is outside [0, 1]
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, cast

import numpy as np
import orjson

from metasignal.stream.transport.base import Record

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
MAX_ID_CHARS = 256
DLQ_MAX_PAYLOAD_BYTES = 256 * 1024
DLQ_MAX_KEY_BYTES = 1024

REASONS = (
    "oversize",
    "invalid_json",
    "not_object",
    "missing_id",
    "bad_id",
    "missing_ts",
    "bad_ts",
    "missing_votes",
    "bad_votes",
    "non_finite",
    "out_of_range",
    "unknown_member",
    "missing_member",
    "bad_label",
    "bad_row",
    "bad_request",
    "bad_evidence",
    "evidence_unsigned",
    "evidence_bad_signature",
    "internal",
)


class MessageError(ValueError):
    """A message that must go to the dead-letter topic, with why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Vote(NamedTuple):
    """A decoded vote (a named tuple: one is built per message)."""

    id: str
    ts_ms: int
    votes: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Outcome:
    id: str
    ts_ms: int
    label: int


def parse_ts(value: Any) -> int:
    """Event time as epoch milliseconds from an integer or an ISO-8601 string."""
    kind = type(value)
    if kind is int:
        return _check_ts(value)
    if kind is float and math.isfinite(value) and value.is_integer():
        return _check_ts(int(value))
    if kind is str:
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MessageError("bad_ts", f"ts {value[:40]!r} is not ISO-8601") from None
        if stamp.tzinfo is None:
            raise MessageError("bad_ts", f"ts {value[:40]!r} has no timezone")
        try:
            return _check_ts(round(stamp.timestamp() * 1000))
        except (OverflowError, ValueError, OSError):
            raise MessageError("bad_ts", f"ts {value[:40]!r} is outside 1970..2100") from None
    raise MessageError("bad_ts", f"ts must be epoch milliseconds or ISO-8601, got {value!r:.40}")


# Event times the service accepts: 1970-01-01 up to 2100-01-01 (epoch ms). Outside that a
# time is garbage (1e300, 2**63: once an OverflowError that crash-looped the scorer).
MIN_TS_MS = 0
MAX_TS_MS = 4_102_444_800_000


def _check_ts(ts_ms: int) -> int:
    if not MIN_TS_MS <= ts_ms < MAX_TS_MS:
        raise MessageError("bad_ts", f"ts {ts_ms:.3g} ms is outside 1970..2100")
    return ts_ms


# orjson: strict RFC 8259 (UTF-8 only; NaN, Infinity and numbers beyond a double refused),
# 2.5x the stdlib's speed on votes (docs/benchmarks.md). bench/stream_inproc.py swaps this
# name for the stdlib decoder to keep measuring that.
_load_json: Callable[[bytes], Any] = orjson.loads

_NON_FINITE_TOKENS = (b"NaN", b"Infinity", b"-Infinity")


def _is_non_finite(raw: bytes, error: json.JSONDecodeError) -> bool:
    """Whether the parser stopped at a NaN/Infinity token or an overflowing number."""
    return "infinity" in error.msg or raw[error.pos :].startswith(_NON_FINITE_TOKENS)


def _load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if raw is None:
        raise MessageError("invalid_json", "empty message (tombstone)")
    if len(raw) > max_bytes:
        raise MessageError("oversize", f"{len(raw)} bytes > limit {max_bytes}")
    try:
        document = _load_json(raw)
    except json.JSONDecodeError as exc:
        # A member emitting NaN is a different fault from a garbled message: name it.
        reason = "non_finite" if _is_non_finite(raw, exc) else "invalid_json"
        raise MessageError(reason, str(exc)[:200]) from None
    if type(document) is not dict:
        raise MessageError("not_object", f"expected a JSON object, got {type(document).__name__}")
    return document


def _event_id(document: Mapping[str, Any]) -> str:
    event_id = document.get("id")
    if type(event_id) is not str or not event_id:
        raise MessageError("missing_id", "id must be a non-empty string")
    if len(event_id) > MAX_ID_CHARS:
        # Ids are keys, cache entries and label-free log text: bound them.
        raise MessageError("bad_id", f"id of {len(event_id)} characters > limit {MAX_ID_CHARS}")
    return event_id


def _event_ts(document: Mapping[str, Any]) -> int:
    if "ts" not in document:
        raise MessageError("missing_ts", "ts is missing")
    return parse_ts(document["ts"])


def _vote_error(member: str, value: Any) -> MessageError:
    """Why a vote that failed the check in :func:`decode_vote` is unusable."""
    if type(value) is not float and type(value) is not int:
        return MessageError("bad_votes", f"member {member!r} vote is not a number")
    return MessageError("out_of_range", f"member {member!r} vote {value} is outside [0, 1]")


def decode_vote(
    raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, probabilities: bool = True
) -> Vote:
    """Parse and validate one vote message (member names are checked per model later)."""
    document = _load_object(raw, max_bytes)
    event_id = _event_id(document)
    ts_ms = _event_ts(document)
    votes = document.get("votes")
    if votes is None:
        raise MessageError("missing_votes", "votes is missing")
    if type(votes) is not dict or not votes:
        raise MessageError("bad_votes", "votes must be a non-empty object {member: probability}")
    # Exact types, so `true` is no vote; no NaN or infinity gets past the parser (non_finite),
    # so only the range is left to check.
    low, high = (0.0, 1.0) if probabilities else (-math.inf, math.inf)
    for member, value in votes.items():
        if not ((type(value) is float or type(value) is int) and low <= value <= high):
            raise _vote_error(member, value)
    return Vote(id=event_id, ts_ms=ts_ms, votes=votes)


class VoteBatch(NamedTuple):
    """A batch of votes decoded at once: one entry per record, rows of ``matrix`` in the
    model's member order (see :func:`decode_vote_batch`)."""

    ids: list[str]
    ts_ms: list[int]
    votes: list[dict[str, float]]
    matrix: np.ndarray


_get_id = itemgetter("id")
_get_ts = itemgetter("ts")
_get_votes = itemgetter("votes")


def decode_vote_batch(
    values: Sequence[bytes | None],
    members: Sequence[str],
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    probabilities: bool = True,
) -> VoteBatch | None:
    """Every vote of a batch at once, or ``None`` when any record is irregular.

    Regular: what :func:`decode_vote` accepts with an integer ``ts``, and what
    :func:`vote_matrix` accepts with neither an unknown nor a missing member (so no member
    policy refuses it). The checks run over the whole batch, C loops instead of one
    Python call per record; one record that is not regular (bad, an ISO ``ts``, another
    committee) sends the whole batch back to the per-record path (``None``), which names
    each bad record's reason: this function never refuses a record itself.

    >>> raw = [b'{"id":"e1","ts":1,"votes":{"a":0.25,"b":0.5}}',
    ...        b'{"id":"e2","ts":2,"votes":{"b":1,"a":0.75}}']
    >>> decode_vote_batch(raw, ("a", "b")).matrix.tolist()
    [[0.25, 0.5], [0.75, 1.0]]
    >>> decode_vote_batch([*raw, b'{"id":"e3","ts":3,"votes":{"a":2,"b":0}}'], ("a", "b"))
    """
    n, k = len(values), len(members)
    if n == 0 or k == 0:
        return None
    try:
        raw = cast(Sequence[bytes], values)  # a None (tombstone) fails len(): TypeError
        if max(map(len, raw)) > max_bytes:
            return None
        docs = list(map(_load_json, raw))
        if set(map(type, docs)) != {dict}:
            return None
        ids: list[str] = list(map(_get_id, docs))
        ts_ms: list[int] = list(map(_get_ts, docs))
        votes: list[dict[str, float]] = list(map(_get_votes, docs))
        if (
            set(map(type, ids)) != {str}
            or min(map(len, ids)) == 0
            or max(map(len, ids)) > MAX_ID_CHARS
            or set(map(type, ts_ms)) != {int}
            or min(ts_ms) < MIN_TS_MS
            or max(ts_ms) >= MAX_TS_MS
            or set(map(type, votes)) != {dict}
            or set(map(len, votes)) != {k}
        ):
            return None
        # Each vote has k entries and every one of the k members: exactly the model's members.
        rows: Iterable[Any] = map(itemgetter(*members), votes)
        if k > 1:
            rows = chain.from_iterable(rows)
        # np.fromiter takes any number, and also True (1.0), None (NaN) and a numeric string
        # ("0.5"): those are looked for below. A list or an object raises.
        matrix = np.fromiter(rows, dtype=np.float64, count=n * k).reshape(n, k)
    except (ValueError, TypeError, KeyError, OverflowError):
        return None  # orjson's and the stdlib's JSONDecodeError are ValueErrors
    # A string anywhere but the id adds quotes: the keys id, ts, votes, the id and the k
    # member names make exactly 2 (4 + k) per record, the fewest a regular vote can have.
    if b"".join(raw).count(b'"') != 2 * (4 + k) * n and not _all_numbers(votes):
        return None
    if np.isnan(matrix).any():  # None, or NaN (the stdlib decoder lets it through)
        return None
    # true and false become 1.0 and 0.0: only then is the exact type of every vote asked.
    if ((matrix == 0.0) | (matrix == 1.0)).any() and not _all_numbers(votes):
        return None
    if probabilities and (matrix.min() < 0.0 or matrix.max() > 1.0):
        return None
    if not probabilities and not np.isfinite(matrix).all():
        return None
    return VoteBatch(ids=ids, ts_ms=ts_ms, votes=votes, matrix=matrix)


def _all_numbers(votes: list[dict[str, float]]) -> bool:
    """Every vote is a JSON number (``true`` is no vote)."""
    return set(map(type, chain.from_iterable(v.values() for v in votes))) <= {float, int}


def decode_outcome(raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Outcome:
    """Parse and validate one outcome message ``{"id", "ts", "label": 0|1}``."""
    document = _load_object(raw, max_bytes)
    label = document.get("label")
    if isinstance(label, bool) or label not in (0, 1):
        raise MessageError("bad_label", "label must be 0 or 1")
    return Outcome(id=_event_id(document), ts_ms=_event_ts(document), label=int(label))


def vote_matrix(
    votes: Sequence[Vote], members: Sequence[str], *, reject_unknown: bool, reject_missing: bool
) -> tuple[np.ndarray, list[MessageError | None]]:
    """Rows in model member order; NaN marks a missing member (imputed by the scorer).

    Returns the matrix and, per vote, ``None`` or the error that sends it to the DLQ.
    """
    n_members = len(members)
    errors: list[MessageError | None] = [None] * len(votes)
    rows: list[list[float]] = []
    for i, vote in enumerate(votes):
        get = vote.votes.get
        row = [get(m, _MISSING) for m in members]
        # Decoded votes are finite, so the only NaNs in a row are the _MISSING sentinel.
        found = n_members - row.count(_MISSING)
        if found == 0:
            # Not one member the model knows: every vote would get one constant score.
            errors[i] = MessageError("unknown_member", "no member of the vote is in the model")
        elif found < len(vote.votes) and reject_unknown:
            unknown = next(m for m in vote.votes if m not in members)
            errors[i] = MessageError("unknown_member", f"member {unknown!r} is not in model")
        elif found < n_members and reject_missing:
            missing = [m for m in members if m not in vote.votes]
            errors[i] = MessageError("missing_member", f"missing member(s) {', '.join(missing)}")
        rows.append(row)
    matrix = np.array(rows, dtype=np.float64).reshape(len(votes), n_members)
    return matrix, errors


_MISSING = float("nan")

_SIGNAL = (
    '{"id":%s,"ts":%d,"decision":%d,"score":%r,"threshold":%r,"size":%r,'
    '"model":%s,"model_version":%d,"scored_at":%d}'
)
_STALE_SIGNAL = _SIGNAL[:-1] + ',"stale":true}'
_json_string = json.encoder.encode_basestring_ascii


def encode_signal(
    *,
    event_id: str,
    ts_ms: int,
    decision: int,
    score: float,
    threshold: float,
    size: float,
    model_name: str,
    model_version: int,
    scored_at_ms: int,
    stale: bool = False,
) -> bytes:
    """A signal message; ``ts`` echoes the vote's event time in epoch ms.

    ``size`` is the position size in ``[0, 1]`` (0: no trade; see
    :mod:`metasignal.stream.sizing`).

    Byte for byte what ``json.dumps(..., separators=(",", ":"))`` writes for finite
    scores, at a third of the cost (``tests/test_messages.py`` holds it to that). A stale
    vote's signal (a no-trade) ends with ``"stale":true``.
    """
    if not (math.isfinite(score) and math.isfinite(threshold) and 0.0 <= size <= 1.0):
        raise ValueError(f"signal {event_id!r}: score and threshold finite, size in [0, 1]")
    return (
        (_STALE_SIGNAL if stale else _SIGNAL)
        % (
            _json_string(event_id),
            ts_ms,
            decision,
            float(score),
            float(threshold),
            float(size),
            _json_string(model_name),
            model_version,
            scored_at_ms,
        )
    ).encode()


def _plain_ids(ids: list[str]) -> bool:
    """Every id is printable ASCII without a quote or backslash: its JSON string is the id in
    quotes, and its UTF-8 bytes are its characters."""
    text = "".join(ids)
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


# orjson writes a float as repr() does (shortest round trip) in this range; outside it repr()
# switches to an exponent (1e-05) where orjson does not. tests/test_messages.py holds it so.
_SHORTEST_LOW, _SHORTEST_HIGH = 1e-4, 1.0


def _texts(values: Any) -> list[bytes]:
    """JSON text of each number of a sequence or array, by one orjson pass."""
    return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")


def _float_texts(values: np.ndarray) -> list[bytes]:
    """``repr(float(v)).encode()`` for each value, by one orjson pass over the array."""
    texts = _texts(values)
    odd = (values != 0.0) & ~((values >= _SHORTEST_LOW) & (values <= _SHORTEST_HIGH))
    for i in np.flatnonzero(odd).tolist():
        texts[i] = repr(float(values[i])).encode()
    return texts


def encode_signals(
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
    """``(key, value)`` of one signal per vote, keyed by event id: byte for byte what
    :func:`encode_signal` writes for each, in one format pass over the batch.

    Batches with a stale vote or an id that JSON must escape take :func:`encode_signal`
    per signal (a rare backlog; a rare id), as does a score or size it would refuse,
    which then raises as it does.

    >>> encode_signals(event_ids=["e1"], ts_ms=[5], decisions=np.array([1]),
    ...     scores=np.array([0.75]), sizes=np.array([1.0]), threshold=0.5, model_name="m",
    ...     model_version=2, scored_at_ms=6)[0][1]
    b'{"id":"e1","ts":5,"decision":1,"score":0.75,"threshold":0.5,"size":1.0,"model":"m","model_version":2,"scored_at":6}'
    """
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if (
        len(event_ids) > 0
        and (stale is None or not stale.any())
        and math.isfinite(threshold)
        and bool(np.isfinite(scores).all())
        and bool(((sizes >= 0.0) & (sizes <= 1.0)).all())
        and set(map(type, ts_ms)) == {int}
        and _plain_ids(list(event_ids))
    ):
        return _encode_whole(
            event_ids, ts_ms, decisions, scores, sizes, threshold, model_name, model_version,
            scored_at_ms,
        )  # fmt: skip
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


def _encode_whole(
    event_ids: Sequence[str],
    ts_ms: Sequence[int],
    decisions: np.ndarray,
    scores: np.ndarray,
    sizes: np.ndarray,
    threshold: float,
    model_name: str,
    model_version: int,
    scored_at_ms: int,
) -> list[tuple[bytes, bytes]]:
    """:func:`encode_signals` of a regular batch (plain ids, finite scores, no stale vote)."""
    # The batch's constants are written once; a '%' in the model name stays a character.
    model = _json_string(model_name).encode().replace(b"%", b"%%")
    one = (
        b'{"id":"%b","ts":%b,"decision":%b,"score":%b,"threshold":'
        + repr(float(threshold)).encode()
        + b',"size":%b,"model":'
        + model
        + b',"model_version":%d,"scored_at":%d}' % (model_version, scored_at_ms)
    )
    keys = list(map(str.encode, event_ids))
    fields = zip(
        keys,
        _texts(list(ts_ms)),
        _texts(np.asarray(decisions, dtype=np.int64)),
        _float_texts(scores),
        _float_texts(sizes),
        strict=True,
    )
    # No signal holds a newline (ids are plain, the model name is JSON-escaped): one format
    # over the batch, split where the signals meet. Every field is JSON text already (%b).
    values = (b"\n".join([one] * len(keys)) % tuple(chain.from_iterable(fields))).split(b"\n")
    return list(zip(keys, values, strict=True))


def encode_vote(event_id: str, ts_ms: int, votes: Mapping[str, float]) -> bytes:
    return json.dumps({"id": event_id, "ts": ts_ms, "votes": dict(votes)}).encode()


# --------------------------------------------------------------------------- signals


class Signal(TypedDict):
    """What :func:`encode_signal` writes on ``signals`` (one per valid vote)."""

    id: str
    ts: int
    decision: int
    score: float
    threshold: float
    size: float  # position size in [0, 1]: 0 for no trade (metasignal.stream.sizing)
    model: str
    model_version: int
    scored_at: int
    stale: NotRequired[bool]  # only on stale votes' signals (always a no-trade)


# --------------------------------------------------------------------------- training rows


class TrainingRow(TypedDict):
    """An outcome joined to what was decided: written on ``training``, read by the trainer."""

    id: str
    ts: int
    votes: dict[str, float]
    label: int
    score: float
    decision: int
    model_version: int


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def encode_training_row(row: TrainingRow) -> bytes:
    return _dumps(row)


def _finite(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and math.isfinite(value)


def decode_training_row(
    raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> TrainingRow:
    """Parse and validate one training row (any other bytes raise :class:`MessageError`)."""
    document = _load_object(raw, max_bytes)
    event_id = _event_id(document)
    ts = document.get("ts")
    if type(ts) is not int:
        raise MessageError("bad_ts", "ts must be epoch milliseconds (an integer)")
    _check_ts(ts)
    votes = document.get("votes")
    if type(votes) is not dict or not all(_finite(v) for v in votes.values()):
        raise MessageError("bad_votes", "votes must be an object {member: finite number}")
    label = document.get("label")
    if type(label) is not int or label not in (0, 1):
        raise MessageError("bad_label", "label must be 0 or 1")
    score = document.get("score", math.nan)
    decision = document.get("decision", 0)
    version = document.get("model_version", 0)
    if not (_finite(score) or score is None) or type(decision) is not int:
        raise MessageError("bad_row", "score must be a number and decision an integer")
    if type(version) is not int:
        raise MessageError("bad_row", "model_version must be an integer")
    return TrainingRow(
        id=event_id,
        ts=ts,
        votes=votes,
        label=label,
        score=math.nan if score is None else float(score),
        decision=decision,
        model_version=version,
    )


# --------------------------------------------------------------------------- control requests

RequestKind = Literal["retune", "retrain", "label_shift", "promote", "retire", "rollback"]
REQUEST_KINDS: tuple[RequestKind, ...] = (
    "retune",
    "retrain",
    "label_shift",
    "promote",
    "retire",
    "rollback",
)
# Requests about the shadow slot (metasignal.stream.shadow): the trainer answers them with a
# signed decision record (ShadowDecision) instead of a model.
DecisionKind = Literal["promote", "retire", "rollback"]
DECISION_KINDS: tuple[DecisionKind, ...] = ("promote", "retire", "rollback")
EvidenceSource = Literal["outcomes", "label_free"]
EVIDENCE_SOURCES: tuple[EvidenceSource, ...] = ("outcomes", "label_free")


class ControlRequest(TypedDict):
    """A re-tune or retrain request on ``control`` (the scorer's drift policy asks)."""

    id: str
    kind: RequestKind
    reason: str
    model: str
    model_version: int | None
    since_ts: int | None
    at_event_ts: int | None
    at: int
    source: str
    stats: dict[str, object]
    # What the decision rests on: joined outcomes, or the scores alone (label_shift).
    evidence: NotRequired[EvidenceSource]
    # label_shift only: the rate the model is calibrated to and the rate estimated live.
    prior: NotRequired[dict[str, float]]
    # promote, retire, rollback: the version in the shadow slot the verdict is about.
    shadow_version: NotRequired[int]


def encode_control_request(request: ControlRequest) -> bytes:
    return _dumps(request)


def _optional_int(document: Mapping[str, Any], key: str) -> int | None:
    value = document.get(key)
    if value is not None and type(value) is not int:
        raise MessageError("bad_request", f"{key} must be an integer or null")
    return value


def decode_control_request(
    raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> ControlRequest:
    """Parse and validate one control request (any other bytes raise :class:`MessageError`)."""
    document = _load_object(raw, max_bytes)
    request_id = _event_id(document)
    kind = document.get("kind")
    if kind not in REQUEST_KINDS:
        raise MessageError("bad_request", f"kind must be one of {', '.join(REQUEST_KINDS)}")
    stats = document.get("stats")
    reason, model, source = (document.get(k, "") for k in ("reason", "model", "source"))
    if not all(type(text) is str for text in (reason, model, source)):
        raise MessageError("bad_request", "reason, model and source must be strings")
    request = ControlRequest(
        id=request_id,
        kind=kind,
        reason=reason,
        model=model,
        model_version=_optional_int(document, "model_version"),
        since_ts=_optional_int(document, "since_ts"),
        at_event_ts=_optional_int(document, "at_event_ts"),
        at=_optional_int(document, "at") or 0,
        source=source,
        stats=stats if type(stats) is dict else {},
    )
    evidence = document.get("evidence")
    if evidence is not None:
        if evidence not in EVIDENCE_SOURCES:
            raise MessageError(
                "bad_request", f"evidence must be one of {', '.join(EVIDENCE_SOURCES)}"
            )
        request["evidence"] = evidence
    prior = document.get("prior")
    if prior is not None:
        if type(prior) is not dict or not all(
            type(k) is str and _finite(v) for k, v in prior.items()
        ):
            raise MessageError("bad_request", "prior must map names to finite numbers")
        request["prior"] = {k: float(v) for k, v in prior.items()}
    shadow_version = _optional_int(document, "shadow_version")
    if shadow_version is not None:
        request["shadow_version"] = shadow_version
    return request


# --------------------------------------------------------------------------- shadow decisions


class ShadowDecision(TypedDict):
    """A signed decision about the shadow slot, on ``models`` (the trainer publishes it).

    ``champion`` and ``shadow`` are the versions in the slots when it was decided: a record
    applies only to that state (:class:`metasignal.stream.lineup.Lineup`). ``promote`` makes
    the shadow the champion and keeps the old champion in shadow (the rollback watch);
    ``retire`` empties the shadow slot; ``rollback`` serves the shadow (the predecessor) again.
    """

    schema_version: int
    decision: DecisionKind
    model: str
    champion: int
    shadow: int
    evidence: dict[str, object]
    request_id: str
    source: str
    decided_at: str
    signature: NotRequired[dict[str, str]]


# --------------------------------------------------------------------------- shadow evidence

EVIDENCE_SCHEMA_VERSION = 1
# Far above any real count (a comparison stops at its horizon), far below float precision.
MAX_EVIDENCE_COUNT = 10**12


class ShadowEvidence(TypedDict):
    """One partition's paired evidence for one champion/shadow pair (the ``evidence`` topic).

    Cumulative since the pair started: ``counts`` are the eight paired confusion counts of
    :func:`metasignal.stream.drift.promotion.paired_counts` (index ``4 y + 2 b + c``, ``b`` the
    champion's decision, ``c`` the shadow's) over the joined outcomes of ``partition`` of the
    outcomes topic; ``pnl`` the ``[champion, shadow]`` PnL sums, ``None`` without a payoff
    ratio. Keyed :func:`metasignal.stream.topics.evidence_key`: compaction keeps the latest.
    Signed like an artifact by the scorer (:func:`metasignal.stream.evidence.sign_evidence`).
    """

    schema_version: int
    model: str
    champion: int
    shadow: int
    partition: int
    counts: list[int]
    pnl: list[float] | None
    source: str
    at: int
    signature: NotRequired[dict[str, str]]


def encode_shadow_evidence(evidence: ShadowEvidence) -> bytes:
    return _dumps(evidence)


def _natural(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_EVIDENCE_COUNT


def decode_shadow_evidence(
    raw: bytes | None, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> ShadowEvidence:
    """Parse and validate one evidence record (any other bytes raise :class:`MessageError`).

    >>> decode_shadow_evidence(b'{"model": "meta", "champion": 1, "shadow": 2, "partition": 0,'
    ...     b' "counts": [5, 0, 0, 0, 0, 0, 0, 1]}')["counts"]
    [5, 0, 0, 0, 0, 0, 0, 1]
    >>> decode_shadow_evidence(b'{"model": "meta", "champion": 1, "shadow": 2, "partition": 0,'
    ...     b' "counts": [-5, 0]}')
    Traceback (most recent call last):
    ...
    metasignal.stream.messages.MessageError: bad_evidence: counts must be 8 integers in [0, 10**12]
    """
    document = _load_object(raw, max_bytes)
    model = document.get("model")
    if type(model) is not str or not model or len(model) > MAX_ID_CHARS:
        raise MessageError("bad_evidence", "model must be a non-empty string")
    champion: Any = document.get("champion")
    shadow: Any = document.get("shadow")
    partition: Any = document.get("partition")
    if not (_natural(champion) and _natural(shadow) and _natural(partition)):
        raise MessageError(
            "bad_evidence", "champion, shadow and partition must be non-negative integers"
        )
    counts = document.get("counts")
    if type(counts) is not list or len(counts) != 8 or not all(_natural(c) for c in counts):
        raise MessageError("bad_evidence", "counts must be 8 integers in [0, 10**12]")
    pnl = document.get("pnl")
    if pnl is not None and (type(pnl) is not list or len(pnl) != 2 or not all(map(_finite, pnl))):
        raise MessageError("bad_evidence", "pnl must be null or two finite numbers")
    source, at = document.get("source", ""), document.get("at", 0)
    if type(source) is not str or type(at) is not int:
        raise MessageError("bad_evidence", "source must be a string and at an integer")
    return ShadowEvidence(
        schema_version=EVIDENCE_SCHEMA_VERSION,
        model=model,
        champion=champion,
        shadow=shadow,
        partition=partition,
        counts=counts,
        pnl=None if pnl is None else [float(v) for v in pnl],
        source=source[:MAX_ID_CHARS],
        at=at,
    )


# --------------------------------------------------------------------------- dead letters

DLQ_HEADERS = ("reason", "detail", "source_topic", "source_partition", "source_offset")
"""Headers of every dead letter; its key and value are the refused record's, byte for byte."""


def dead_letter_headers(record: Record, error: MessageError) -> list[tuple[str, bytes]]:
    """Why a record was refused and where it came from (the DLQ's headers)."""
    return [
        ("reason", error.reason.encode()),
        ("detail", error.detail[:500].encode(errors="replace")),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


class DeadLetter(NamedTuple):
    """A refused record as it goes to the DLQ."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(record: Record, error: MessageError) -> DeadLetter:
    """The record's key and value (byte for byte up to :data:`DLQ_MAX_PAYLOAD_BYTES` and
    :data:`DLQ_MAX_KEY_BYTES`) and :data:`DLQ_HEADERS`.

    A larger payload is cut, with a ``truncated_value_bytes`` (``truncated_key_bytes``)
    header giving its original size: a copy of a near-1 MB vote plus headers would exceed
    the producer's request limit, the send would fail and the batch with it, for ever.

    >>> letter = dead_letter(Record("v", 0, 3, b"k", b"x" * (DLQ_MAX_PAYLOAD_BYTES + 1), 0),
    ...                      MessageError("oversize", "too big"))
    >>> len(letter.value) == DLQ_MAX_PAYLOAD_BYTES, dict(letter.headers)["truncated_value_bytes"]
    (True, b'262145')
    """
    headers = dead_letter_headers(record, error)
    key, value = record.key, record.value
    if key is not None and len(key) > DLQ_MAX_KEY_BYTES:
        headers.append(("truncated_key_bytes", str(len(key)).encode()))
        key = key[:DLQ_MAX_KEY_BYTES]
    if value is not None and len(value) > DLQ_MAX_PAYLOAD_BYTES:
        headers.append(("truncated_value_bytes", str(len(value)).encode()))
        value = value[:DLQ_MAX_PAYLOAD_BYTES]
    return DeadLetter(key, value, headers)
