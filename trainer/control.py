"""Operator requests: ``metasignal control retrain|retune [--force]``.

Anyone who can write to ``control`` can ask for a re-tune or a retrain; the champion gate
still decides what is published. Forcing a candidate past the gate is an operator's act:
``--force`` signs the request with the signing key (HMAC-SHA256 over the canonical request,
as for artifacts), and the trainer honours ``force`` only on a request that verifies against
one of its keys and has not expired (:data:`FORCE_TTL_S`). A ``force`` field without a valid
signature is ignored and counted (``metasignal_trainer_force_refused_total{reason}``).

A replayed signed request is harmless: its id is answered already (a duplicate) and its
``model_version`` is superseded once the forced model is out, and it expires.

Examples
--------
>>> key = b"operator-key-0123456789abcdef0123"
>>> request = operator_request("retrain", reason="desk asked", model_version=3, now_ms=1_000)
>>> signed = sign_force(request, key, now_ms=1_000)
>>> check_force(encode(signed), keys=[key], now_ms=2_000)
'signed'
>>> check_force(encode({**signed, "model_version": 2}), keys=[key], now_ms=2_000)
'bad_signature'
>>> check_force(encode({**request, "force": True}), keys=[key], now_ms=2_000)
'unsigned'
>>> check_force(encode(signed), keys=[key], now_ms=1_000 + FORCE_TTL_S * 1000 + 1)
'expired'
>>> check_force(encode(request), keys=[key], now_ms=2_000) is None
True
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metasignal.stream.artifact import canonical_bytes, key_id, resolve_signing_keys
from metasignal.stream.config import KAFKA_SETTINGS, add_settings, kafka_client_config
from metasignal.stream.errors import ArtifactError, MetasignalError
from metasignal.stream.topics import Topics
from metasignal.stream.transport.base import TransportError
from metasignal.stream.transport.kafka import KafkaTransport

FORCE_TTL_S = 900
"""A signed force request is honoured this long after it was signed (seconds)."""

SIGNATURE_ALGORITHM = "hmac-sha256"


def operator_request(
    kind: str, *, reason: str, model_version: int | None, now_ms: int, model: str = "meta"
) -> dict[str, Any]:
    """A control request as ``metasignal control`` writes it (unsigned)."""
    return {
        "id": f"operator-{uuid.uuid4().hex[:12]}",
        "kind": kind,
        "reason": reason,
        "model": model,
        "model_version": model_version,
        "at": now_ms,
        "source": "operator",
    }


def sign_force(request: dict[str, Any], key: bytes, *, now_ms: int) -> dict[str, Any]:
    """``request`` with ``force`` set, an expiry, and the operator's signature over all of it."""
    signed = {**request, "force": True, "force_expires_at": now_ms + FORCE_TTL_S * 1000}
    digest = hmac.new(key, canonical_bytes(signed), hashlib.sha256).hexdigest()
    signed["signature"] = {"algorithm": SIGNATURE_ALGORITHM, "key_id": key_id(key), "value": digest}
    return signed


def encode(request: dict[str, Any]) -> bytes:
    return json.dumps(request, separators=(",", ":")).encode()


def check_force(raw: bytes | None, *, keys: Sequence[bytes], now_ms: int) -> str | None:
    """Whether a request asks for ``force`` and may have it.

    ``None``: no force asked; ``"signed"``: honour it; otherwise why it is ignored
    (``unsigned``, ``bad_signature``, ``expired``). ``raw`` is a request that already
    decoded (:func:`~metasignal.stream.messages.decode_control_request`).
    """
    try:
        document = json.loads(raw or b"{}")
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("force") is not True:
        return None
    signature = document.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return "unsigned"
    try:
        payload = canonical_bytes(document)
    except (TypeError, ValueError):
        return "bad_signature"
    value = signature["value"]
    if not any(
        hmac.compare_digest(hmac.new(k, payload, hashlib.sha256).hexdigest(), value) for k in keys
    ):
        return "bad_signature"
    expires = document.get("force_expires_at")
    if type(expires) is not int or now_ms > expires:
        return "expired"
    return "signed"


def add_control_command(commands: Any) -> None:
    control = commands.add_parser(
        "control", help="ask the trainer for a re-tune or retrain (--force: signed, operator-only)"
    )
    control.add_argument("kind", choices=("retune", "retrain"), help="what to ask for")
    control.add_argument(
        "--force",
        action="store_true",
        help="publish the candidate even if the champion gate refuses it (signed with the key)",
    )
    control.add_argument("--reason", default="operator request", help="why (logged, in the model)")
    control.add_argument(
        "--model-version", type=int, help="the champion version this is about (else: current)"
    )
    control.add_argument("--model-name", default="meta", help="model name (meta)")
    control.add_argument("--key-file", type=Path, help="signing keys (first signs)")
    add_settings(control, KAFKA_SETTINGS)
    control.set_defaults(handler=command_control)


def command_control(args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    request = operator_request(
        args.kind,
        reason=args.reason,
        model_version=args.model_version,
        now_ms=now_ms,
        model=args.model_name,
    )
    if args.force:
        keys = resolve_signing_keys(key_file=args.key_file)
        if not keys:
            raise ArtifactError(
                "--force signs the request: set METASIGNAL_SIGNING_KEY or --key-file"
            )
        request = sign_force(request, keys[0], now_ms=now_ms)
    if not args.bootstrap:
        raise MetasignalError("--bootstrap (or METASIGNAL_BOOTSTRAP) is required")
    transport = KafkaTransport(bootstrap=args.bootstrap, client_config=kafka_client_config(args))
    try:
        producer = transport.producer()
        producer.send(
            Topics(prefix=args.topic_prefix).control,
            key=args.model_name.encode(),
            value=encode(request),
        )
        producer.flush()
        producer.close()
    except TransportError as exc:
        raise MetasignalError(str(exc)) from None
    finally:
        transport.close()
    print(json.dumps({"sent": request["id"], "kind": args.kind, "force": bool(args.force)}))
    return 0
