"""``metasignal inspect``: an artifact's contents and whether its signature verifies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from metasignal.stream.artifact import resolve_signing_keys
from metasignal.stream.errors import ArtifactError
from metasignal.stream.sizing import SizingRule


def _signature_status(document: dict[str, Any], keys: list[bytes]) -> tuple[str, bool]:
    """What ``inspect`` says about the signature, and whether it is a failure."""
    from metasignal.stream.artifact import load_artifact

    signature = document.get("signature")
    if not isinstance(signature, dict):
        return "MISSING (no signature block)", True
    if signature.get("algorithm") == "none":
        return "UNSIGNED (local experiment)", False
    described = f"{signature.get('algorithm')} key_id {signature.get('key_id')}"
    if not keys:
        return f"{described}, not verified (no key)", False
    try:
        load_artifact(document, keys=keys)
    except ArtifactError as exc:
        if str(exc) != _schema_problem(document):  # else the signature held; the schema did not
            return f"{described}, DOES NOT VERIFY: {exc}", True
    return f"{described} (verified)", False


def _schema_problem(document: dict[str, Any]) -> str | None:
    from metasignal.stream.artifact import validate_artifact

    try:
        validate_artifact(document)
    except ArtifactError as exc:
        return str(exc)
    return None


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact {path}: {exc.strerror}") from None
    except ValueError:
        raise ArtifactError(f"{path.name} is not a metasignal artifact (not JSON)") from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise ArtifactError(
            f"{path.name} is not a metasignal artifact (no schema_version); "
            "inspect reads the model.json that fit writes"
        )
    return document


def command_inspect(args: argparse.Namespace) -> int:
    document = _read_document(args.model)
    status, bad_signature = _signature_status(
        document, resolve_signing_keys(key_file=args.key_file)
    )
    problem = _schema_problem(document)
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print("\n".join(_describe(document, status, problem)))
    if bad_signature or problem:
        raise ArtifactError(
            f"{args.model.name}: signature {status}"
            if bad_signature
            else f"{args.model.name}: {problem}"
        )
    return 0


def _describe(doc: dict[str, Any], signature: str, problem: str | None) -> list[str]:
    def get(path: str, default: Any = "?") -> Any:
        value: Any = doc
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return default if value is None else value

    def num(path: str, digits: int = 6) -> str:
        value = get(path, None)
        return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"

    lines = [
        f"model       {get('model.name')} v{get('model.version')}  created {get('created_at')}"
        f"  schema {get('schema_version')}",
        f"signature   {signature}",
    ]
    if problem:
        lines.append(f"schema      INVALID: {problem}")
    lines += [
        f"strategy    {get('strategy.name')}: {get('strategy.reason', '')}",
        f"threshold   {num('threshold.value')} (metric {get('threshold.metric')})",
        f"calibration {get('calibration.method')} slope {num('calibration.slope', 4)} "
        f"intercept {num('calibration.intercept', 4)}",
        f"input       {get('preprocessing.transform')} transform, missing members: "
        f"{get('preprocessing.missing_policy')}",
        f"training    {get('training.window.start')} .. {get('training.window.end')}, "
        f"{get('training.rows')} rows, positive rate {num('training.positive_rate', 4)}",
    ]
    try:
        lines.append(f"sizing      {SizingRule.from_dict(get('sizing', None)).describe()}")
    except (TypeError, ValueError) as exc:
        lines.append(f"sizing      INVALID: {exc}")
    lines += [f"fallback    {fallback}" for fallback in get("strategy.fallbacks", [])]
    holdout = get("metrics.holdout", None)
    if isinstance(holdout, dict):
        lines.append(
            f"holdout     f1 {num('metrics.holdout.f1', 4)} precision "
            f"{num('metrics.holdout.precision', 4)} recall {num('metrics.holdout.recall', 4)} "
            f"brier {num('metrics.holdout.brier', 5)} (n {holdout.get('n')}, "
            f"positives {holdout.get('positives')})"
        )
    lines.append("member weights (standardised logits):")
    coefs = get("linear.coef", [])
    for name, weight in sorted(
        zip(get("members", []), coefs, strict=False), key=lambda item: -abs(item[1])
    ):
        lines.append(f"  {name:<16} {weight:+.4f} {'#' * min(40, round(abs(weight) * 20))}")
    versions = get("libraries", {})
    if isinstance(versions, dict) and versions:
        lines.append("libraries   " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines
