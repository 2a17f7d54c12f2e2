"""The model artifact: a signed, versioned JSON document, never a pickle.

The trainer writes it, the scorer loads it. Everything the scorer needs to
reproduce the meta-model's calibrated probability is in the document:
member order, preprocessing, linear weights, calibration map, threshold and
position-sizing rule.

The signature is HMAC-SHA256 over the canonical JSON of every field except
``signature`` itself (keys sorted, no whitespace, ASCII), so any change to a
coefficient, the threshold or even the report figures invalidates it.

Examples
--------
>>> doc = example_artifact()
>>> signed = sign_artifact(doc, b"secret")
>>> load_artifact(dumps_artifact(signed), keys=[b"secret"])["model"]["name"]
'meta'
>>> load_artifact(dumps_artifact(signed), keys=[b"other"])
Traceback (most recent call last):
...
metasignal.stream.errors.ArtifactError: artifact signature does not match any configured ...
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Required, TypedDict, cast

from metasignal.stream.errors import ArtifactError
from metasignal.stream.sizing import SizingBlock, SizingRule

SCHEMA_VERSION = 1
SIGNATURE_ALGORITHM = "HMAC-SHA256"
SIGNING_KEY_ENV = "METASIGNAL_SIGNING_KEY"
TRANSFORMS = ("logit", "identity")
MISSING_POLICIES = ("impute", "reject")
STAGES = ("champion", "shadow")


class ModelId(TypedDict):
    name: str
    version: int


class StrategyInfo(TypedDict, total=False):
    name: Required[str]
    reason: str
    fallbacks: list[Any]
    params: dict[str, Any]


class Preprocessing(TypedDict):
    transform: str  # one of TRANSFORMS
    clip_eps: float
    missing_policy: str  # one of MISSING_POLICIES
    impute: list[float]
    mean: list[float]
    scale: list[float]


class Linear(TypedDict):
    coef: list[float]
    intercept: float


class CalibrationMap(TypedDict):
    method: str  # platt or identity
    slope: float
    intercept: float


class ScoreRecalibration(TypedDict):
    """What the published scores mean, for the label-free expected quality only.

    Written by trainers before the map was composed into the served calibration (newer
    artifacts omit it); still accepted and read so those artifacts keep loading.

    A Platt map of the linear model's decision values (``slope``, ``intercept``) fitted by
    the trainer on the training period (:func:`metasignal.trainer.calibration.fit_transfer`),
    valid beside the ``calibration`` map it was fitted with. Decisions never read it.
    """

    method: str  # platt
    slope: float
    intercept: float
    calibration: CalibrationMap


class ThresholdInfo(TypedDict, total=False):
    value: Required[float]
    metric: Required[str]
    objective: dict[str, Any]
    fold_thresholds: list[float]


class Signature(TypedDict, total=False):
    algorithm: Required[str]
    value: str
    key_id: str


class Artifact(TypedDict, total=False):
    """A model artifact; the required fields are the ones :func:`validate_artifact` checks.

    The others are provenance (training window, metrics, libraries, the request and gate
    that produced it) for people and reports, never read on the hot path.
    """

    schema_version: Required[int]
    model: Required[ModelId]
    created_at: Required[str]
    strategy: Required[StrategyInfo]
    members: Required[list[str]]
    preprocessing: Required[Preprocessing]
    linear: Required[Linear]
    calibration: Required[CalibrationMap]
    threshold: Required[ThresholdInfo]
    sizing: SizingBlock  # absent in artifacts written before sizing: all-or-nothing
    # Absent in artifacts written before it: the label-free estimates take the scores as
    # calibrated.
    score_recalibration: ScoreRecalibration
    signature: Signature
    training: dict[str, Any]
    metrics: dict[str, Any]
    libraries: dict[str, str]
    request: dict[str, Any]
    gate: dict[str, Any]
    skill: dict[str, Any]  # the skill gate's evidence, and whether it was overridden
    rollback: dict[str, int]  # {"to": N, "from": M}: version N re-published as M + 1
    # "shadow": scored beside the champion, never trading, until a signed decision promotes
    # or retires it (metasignal.stream.lineup); absent: a champion.
    stage: str


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Serialise everything but the signature deterministically: the signed payload."""
    body = {key: value for key, value in document.items() if key != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key, so a verifier can tell which key signed."""
    return hashlib.sha256(key).hexdigest()[:12]


def sign_artifact(document: Mapping[str, Any], key: bytes | None) -> Artifact:
    """Return a copy of ``document`` signed with ``key``; ``None`` marks it unsigned.

    An unsigned artifact says so in its ``signature`` block, so nobody can
    mistake a local experiment for a published model.
    """
    signed = copy.deepcopy(dict(document))
    if key is None:
        signed["signature"] = {"algorithm": "none", "unsigned": True}
        return cast(Artifact, signed)
    if not key:
        raise ArtifactError("signing key is empty")
    digest = hmac.new(key, canonical_bytes(signed), hashlib.sha256).hexdigest()
    signed["signature"] = {"algorithm": SIGNATURE_ALGORITHM, "key_id": key_id(key), "value": digest}
    return cast(Artifact, signed)


def dumps_artifact(document: Mapping[str, Any]) -> str:
    """Pretty JSON for files and the wire; ``json`` round-trips floats exactly."""
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"


MIN_KEY_BYTES = 32
# Placeholders shipped in deploy/ (and the compose file's former fallback): a key anyone can
# read in this repository signs nothing. Any key containing one of the markers is refused too.
PLACEHOLDER_KEYS = frozenset({b"insecure-local-compose-key", b"REPLACE-ME-with-a-long-random-key"})
PLACEHOLDER_MARKERS = (b"replace-me", b"change-me", b"changeme", b"placeholder")


def resolve_signing_keys(
    *, key_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> list[bytes]:
    """Keys from ``--key-file`` (one per line) or ``METASIGNAL_SIGNING_KEY`` (comma-separated).

    Several keys let a verifier accept the old and the new key during a rotation;
    the first one is the key that signs. A key shorter than 32 bytes or a known
    placeholder is refused with a one-line error that never shows the key.

    >>> resolve_signing_keys(environ={SIGNING_KEY_ENV: "REPLACE-ME-with-a-long-random-key"})
    Traceback (most recent call last):
    ...
    metasignal.stream.errors.ArtifactError: signing key 1 in METASIGNAL_SIGNING_KEY is a \
placeholder: use at least 32 random bytes, e.g. $(openssl rand -hex 32)
    """
    env = os.environ if environ is None else environ
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArtifactError(f"cannot read key file {path}: {exc.strerror}") from None
        keys = [line.strip().encode() for line in text.splitlines() if line.strip()]
        if not keys:
            raise ArtifactError(f"key file {path} holds no key")
        where = f"key file {path}"
    else:
        raw = env.get(SIGNING_KEY_ENV, "")
        keys = [part.strip().encode() for part in raw.split(",") if part.strip()]
        where = SIGNING_KEY_ENV
    for number, key in enumerate(keys, start=1):
        if key in PLACEHOLDER_KEYS or any(m in key.lower() for m in PLACEHOLDER_MARKERS):
            problem = "is a placeholder"
        elif len(key) < MIN_KEY_BYTES:
            problem = f"is {len(key)} bytes long"
        else:
            continue
        raise ArtifactError(
            f"signing key {number} in {where} {problem}: use at least {MIN_KEY_BYTES} random "
            "bytes, e.g. $(openssl rand -hex 32)"
        )
    return keys


def load_artifact(
    source: str | bytes | Mapping[str, Any],
    *,
    keys: Iterable[bytes],
    allow_unsigned: bool = False,
) -> Artifact:
    """Parse, verify the signature, then validate the schema; refuse anything else.

    Raises
    ------
    ArtifactError
        With a one-line reason: not JSON, unsigned, tampered, unknown schema
        version or inconsistent fields.
    """
    if isinstance(source, Mapping):
        document: Any = copy.deepcopy(dict(source))
    else:
        try:
            document = json.loads(source)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nesting deeper than the parser's stack (a hostile record).
            raise ArtifactError(f"artifact is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise ArtifactError("artifact must be a JSON object")
    _verify_signature(document, list(keys), allow_unsigned=allow_unsigned)
    validate_artifact(document)
    return cast(Artifact, document)  # validate_artifact checked every required field


def read_artifact(
    path: str | Path, *, keys: Iterable[bytes], allow_unsigned: bool = False
) -> Artifact:
    """:func:`load_artifact` from a file, with a one-line error if it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc.strerror}") from None
    return load_artifact(data, keys=keys, allow_unsigned=allow_unsigned)


def verify_signature(document: Mapping[str, Any], keys: Iterable[bytes]) -> None:
    """Refuse a signed document (an artifact, a decision record) unsigned or not signed with
    one of ``keys`` (:class:`ArtifactError`); unsigned is never allowed here."""
    _verify_signature(dict(document), list(keys), allow_unsigned=False)


def _verify_signature(document: dict[str, Any], keys: list[bytes], *, allow_unsigned: bool) -> None:
    signature = document.get("signature")
    if not isinstance(signature, dict):
        raise ArtifactError("artifact has no signature block")
    if signature.get("algorithm") == "none":
        if allow_unsigned:
            return
        raise ArtifactError(
            "artifact is unsigned; refusing it (use --unsigned for local experiments)"
        )
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        raise ArtifactError(f"unsupported signature algorithm {signature.get('algorithm')!r}")
    value = signature.get("value")
    if not isinstance(value, str) or not value.isascii():
        # compare_digest raises TypeError on non-ASCII text: refuse it here instead.
        raise ArtifactError("artifact signature value is missing or not hexadecimal")
    if not keys:
        raise ArtifactError(
            f"no signing key configured to verify the artifact (set {SIGNING_KEY_ENV})"
        )
    payload = canonical_bytes(document)
    for key in keys:
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, value):
            return
    raise ArtifactError(
        "artifact signature does not match any configured signing key "
        f"(key_id {signature.get('key_id')!r}): tampered or signed with another key"
    )


def _require(document: Mapping[str, Any], path: str, kind: type | tuple[type, ...]) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ArtifactError(f"artifact field {path!r} is missing")
        node = node[part]
    if not isinstance(node, kind) or (isinstance(node, bool) and bool not in _as_tuple(kind)):
        raise ArtifactError(f"artifact field {path!r} has the wrong type")
    return node


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _finite_vector(document: Mapping[str, Any], path: str, length: int) -> list[float]:
    values = _require(document, path, list)
    if len(values) != length:
        raise ArtifactError(f"artifact field {path!r} has {len(values)} values, expected {length}")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ArtifactError(f"artifact field {path!r} holds a non-finite or non-numeric value")
    return [float(v) for v in values]


def _finite_number(document: Mapping[str, Any], path: str) -> float:
    value = _require(document, path, (int, float))
    if not math.isfinite(value):
        raise ArtifactError(f"artifact field {path!r} is not finite")
    return float(value)


def validate_artifact(document: Mapping[str, Any]) -> None:
    """Check the fields the scorer relies on; the report figures are informational."""
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"unsupported artifact schema_version {version!r} (this build reads {SCHEMA_VERSION})"
        )
    name = _require(document, "model.name", str)
    if not name:
        raise ArtifactError("artifact field 'model.name' is empty")
    model_version = _require(document, "model.version", int)
    if model_version < 1:
        raise ArtifactError("artifact field 'model.version' must be a positive integer")
    _require(document, "created_at", str)
    _require(document, "strategy.name", str)
    members = _require(document, "members", list)
    if not members or not all(isinstance(m, str) and m for m in members):
        raise ArtifactError("artifact field 'members' must be a non-empty list of names")
    if len(set(members)) != len(members):
        raise ArtifactError("artifact field 'members' has duplicate names")
    n = len(members)
    transform = _require(document, "preprocessing.transform", str)
    if transform not in TRANSFORMS:
        raise ArtifactError(f"unknown preprocessing transform {transform!r}")
    clip = _finite_number(document, "preprocessing.clip_eps")
    if transform == "logit" and not 0.0 < clip < 0.5:
        raise ArtifactError("artifact field 'preprocessing.clip_eps' must lie in (0, 0.5)")
    policy = _require(document, "preprocessing.missing_policy", str)
    if policy not in MISSING_POLICIES:
        raise ArtifactError(f"unknown missing-member policy {policy!r}")
    _finite_vector(document, "preprocessing.impute", n)
    _finite_vector(document, "preprocessing.mean", n)
    scale = _finite_vector(document, "preprocessing.scale", n)
    if any(s <= 0 for s in scale):
        raise ArtifactError("artifact field 'preprocessing.scale' must be positive")
    _finite_vector(document, "linear.coef", n)
    _finite_number(document, "linear.intercept")
    method = _require(document, "calibration.method", str)
    if method not in ("platt", "identity"):
        raise ArtifactError(f"unknown calibration method {method!r}")
    _finite_number(document, "calibration.slope")
    _finite_number(document, "calibration.intercept")
    threshold = _finite_number(document, "threshold.value")
    if not 0.0 <= threshold <= 1.0:
        raise ArtifactError("artifact field 'threshold.value' must lie in [0, 1]")
    _require(document, "threshold.metric", str)
    if document.get("stage", "champion") not in STAGES:
        raise ArtifactError(f"artifact field 'stage' must be one of {', '.join(STAGES)}")
    if "score_recalibration" in document:
        _validate_recalibration(document)
    try:
        SizingRule.from_dict(document.get("sizing"))
    except ValueError as exc:
        raise ArtifactError(f"artifact field 'sizing': {exc}") from None


def _validate_recalibration(document: Mapping[str, Any]) -> None:
    if _require(document, "score_recalibration.method", str) != "platt":
        raise ArtifactError("artifact field 'score_recalibration.method' must be 'platt'")
    if _finite_number(document, "score_recalibration.slope") <= 0.0:
        raise ArtifactError("artifact field 'score_recalibration.slope' must be positive")
    _finite_number(document, "score_recalibration.intercept")
    if _finite_number(document, "score_recalibration.calibration.slope") <= 0.0:
        raise ArtifactError(
            "artifact field 'score_recalibration.calibration.slope' must be positive"
        )
    _finite_number(document, "score_recalibration.calibration.intercept")


def model_identity(document: Mapping[str, Any]) -> tuple[str, int]:
    """``(name, version)``: the scorer keeps the highest version per name."""
    return str(document["model"]["name"]), int(document["model"]["version"])


def example_artifact(members: Sequence[str] = ("a", "b")) -> Artifact:
    """A small valid unsigned-body artifact, for documentation and tests."""
    n = len(members)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": "meta", "version": 1},
        "created_at": "2026-01-01T00:00:00Z",
        "strategy": {"name": "optimal_threshold", "reason": "example", "fallbacks": []},
        "members": list(members),
        "preprocessing": {
            "transform": "logit",
            "clip_eps": 1e-6,
            "missing_policy": "impute",
            "impute": [0.5] * n,
            "mean": [0.0] * n,
            "scale": [1.0] * n,
        },
        "linear": {"coef": [1.0] * n, "intercept": 0.0},
        "calibration": {"method": "identity", "slope": 1.0, "intercept": 0.0},
        "threshold": {"value": 0.5, "metric": "f1"},
    }
