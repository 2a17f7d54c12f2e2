"""``metasignal fit``: read a vote table, fit, write the signed artifact and the reports.

Exit code 3 (:data:`metasignal.trainer.skill.EXIT_NO_SKILL`) when the committee shows no
evidence of skill: the report is written, no model is. The fitting modules are imported
inside the command, which keeps them out of the other commands' start-up.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metasignal.stream.artifact import (
    Artifact,
    dumps_artifact,
    resolve_signing_keys,
    sign_artifact,
)
from metasignal.stream.errors import ArtifactError, MetasignalError
from metasignal.trainer.report import render_html
from metasignal.trainer.skill import EXIT_NO_SKILL, NoSkillError

if TYPE_CHECKING:
    from metasignal.trainer.fit import FitConfig

log = logging.getLogger("metasignal")


def _signing_key(args: argparse.Namespace) -> bytes | None:
    keys = resolve_signing_keys(key_file=args.key_file)
    if keys:
        if args.unsigned:
            log.warning(
                "a signing key is configured, so the artifact is signed with it; "
                "--unsigned applies only when no key is configured"
            )
        return keys[0]
    if args.unsigned:
        log.warning("writing an UNSIGNED artifact: for local experiments only")
        return None
    raise ArtifactError(
        "no signing key: set METASIGNAL_SIGNING_KEY or pass --key-file "
        "(or --unsigned for local experiments)"
    )


def command_fit(args: argparse.Namespace) -> int:
    from metasignal.trainer.data import load_table
    from metasignal.trainer.fit import fit_meta_model

    key = _signing_key(args)
    members = [m.strip() for m in args.members.split(",")] if args.members else None
    table = load_table(
        args.data,
        label=args.label,
        time=args.time,
        members=members,
        entity=args.entity,
        timezone=args.timezone,
        time_unit=args.time_unit,
        payoff=args.payoff,
        label_end=args.label_end,
        raw_scores=args.raw_scores,
        strict=args.strict,
    )
    assert table.source is not None
    left_out = table.source.left_out
    log.info(
        "members (%d): %s; left out: %s",
        len(table.members),
        ", ".join(table.members),
        "; ".join(f"{name} ({why})" for name, why in left_out.items()) or "none",
    )
    log.info("time: %s", table.source.time_statement)
    try:
        outcome = fit_meta_model(table, _fit_config(args))
    except NoSkillError as exc:
        write_outputs(args.out, None, exc.report or {})
        print(f"metasignal: error: {exc}", file=sys.stderr)
        return EXIT_NO_SKILL
    write_outputs(args.out, sign_artifact(outcome.artifact, key), outcome.report)
    holdout = outcome.report["holdout"]
    summary = {
        "strategy": outcome.report["strategy"],
        "skill": outcome.report["skill"]["verdict"],
        "threshold": round(outcome.report["threshold"], 6),
        "holdout_f1": None if holdout is None else round(holdout["f1"], 4),
        "fit_seconds": round(outcome.report["fit_seconds"], 2),
        "members": list(table.members),
        "left_out": left_out,
        "time": table.source.time_statement,
        "out": str(args.out),
    }
    print(json.dumps(summary))
    for warning in outcome.report.get("warnings") or []:
        print(f"metasignal: warning: {warning} (see report.html)", file=sys.stderr)
    return 0


def _fit_config(args: argparse.Namespace) -> FitConfig:
    from metasignal.trainer.fit import FitConfig

    return FitConfig(
        holdout=args.holdout,
        refit_all=not args.no_refit,
        model_name=args.model_name,
        model_version=args.model_version,
        missing_policy=args.missing_members,
        sizing={
            "method": args.sizing,
            "cap": args.size_cap,
            "step": args.size_step,
            "fraction": args.kelly_fraction,
            "payoff_ratio": args.payoff_ratio,
        },
        allow_no_skill=args.allow_no_skill,
        estimator={
            "strategy": args.strategy,
            "metric": args.metric,
            "beta": args.beta,
            "min_recall": args.min_recall,
            "min_precision": args.min_precision,
            "gain": args.gain,
            "cost": args.cost,
            "n_splits": args.splits,
            "gap": args.gap,
            "label_horizon": args.label_horizon,
            "embargo": args.embargo,
            "skill_alpha": args.skill_alpha,
            "C": args.C,
            "kind": "raw" if args.raw_scores else "probability",
        },
    )


def write_outputs(out: Path, artifact: Artifact | None, report: dict[str, Any]) -> None:
    """The report, and the artifact unless none is published (a stale one is removed)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if artifact is None:
            (out / "model.json").unlink(missing_ok=True)
        else:
            (out / "model.json").write_text(dumps_artifact(artifact), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (out / "report.html").write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise MetasignalError(f"cannot write to {out}: {exc.strerror}") from None
