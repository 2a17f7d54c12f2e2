"""``metasignal``: the command line.

Every user error (bad file, bad flag, refused artifact) ends as one line on
stderr and exit code 2, never a traceback. ``fit`` exits with 3
(:data:`metasignal.trainer.skill.EXIT_NO_SKILL`) when the committee shows no
evidence of skill: the report is written, no model is.

The fitting modules (the meta-model, imbalanced-learn) are imported inside the
commands that fit, which keeps about 30 MB out of ``metasignal scorer``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from metasignal import version
from metasignal.stream.artifact import (
    Artifact,
    dumps_artifact,
    read_artifact,
    resolve_signing_keys,
    sign_artifact,
)
from metasignal.stream.cli import quiet_kafka_noise
from metasignal.stream.cli import register as register_stream_commands
from metasignal.stream.config import (
    KAFKA_CLIENT,
    KAFKA_SETTINGS,
    add_settings,
    kafka_client_config,
    options_from_args,
)
from metasignal.stream.errors import ArtifactError, MetasignalError
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.sizing import SIZING_METHODS, SizingRule
from metasignal.stream.transport.base import TransportError
from metasignal.trainer.control import add_control_command
from metasignal.trainer.report import render_html
from metasignal.trainer.settings import STRATEGY_CHOICES, TRAINER_SETTINGS, TrainerOptions
from metasignal.trainer.skill import EXIT_NO_SKILL, NoSkillError
from metasignal.trainer.thresholds import METRICS

if TYPE_CHECKING:
    from metasignal.trainer.fit import FitConfig
    from metasignal.trainer.synthetic import RateStep

log = logging.getLogger("metasignal")


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line naming it (and where to look), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(text: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _splits(text: str) -> int:
    value: int = _number(text, int)
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"must be at least 2, got {text}: each fold is graded at the threshold tuned on "
            "the others"
        )
    return value


def _fraction(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _positive_fraction(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def _open_fraction(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value: float = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timezone",
        default="UTC",
        help="IANA zone of times written without one, e.g. America/New_York (UTC)",
    )
    parser.add_argument(
        "--time-unit",
        choices=("s", "ms", "us", "ns"),
        default="ms",
        help="unit of epoch-number times (ms)",
    )


def _duration(text: str) -> int:
    from metasignal.trainer.purge import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        type=Path,
        help="signing key file (one key per line; the first signs). "
        "Default: METASIGNAL_SIGNING_KEY",
    )
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="local experiments only: write/accept unsigned artifacts (marked as such) when "
        "no key is configured; a configured key always signs and verifies",
    )


def _add_fit_parser(commands: Any) -> None:
    fit = commands.add_parser("fit", help="fit, tune and sign a meta-model from a vote table")
    fit.add_argument("--data", required=True, type=Path, help="CSV or Parquet vote table")
    fit.add_argument("--label", required=True, help="binary label column (1 = trade)")
    fit.add_argument("--time", required=True, help="event-time column (epoch or ISO-8601)")
    fit.add_argument("--out", required=True, type=Path, help="output directory")
    fit.add_argument("--members", help="comma-separated member columns (default: all numeric)")
    fit.add_argument("--entity", help="instrument column of a panel (never a member)")
    _add_table_options(fit)
    fit.add_argument("--strategy", default="auto", choices=STRATEGY_CHOICES, help="(auto)")
    fit.add_argument("--metric", default="f1", choices=METRICS, help="threshold metric (f1)")
    fit.add_argument("--beta", type=_positive_float, default=1.0, help="F-beta's beta (1)")
    fit.add_argument("--min-recall", type=_fraction, default=0.0, help="for --metric precision")
    fit.add_argument("--min-precision", type=_fraction, default=0.0, help="for --metric recall")
    fit.add_argument("--gain", type=_positive_float, default=1.0, help="profit per true trade")
    fit.add_argument("--cost", type=_positive_float, default=1.0, help="loss per false trade")
    fit.add_argument("--holdout", type=float, default=0.3, help="last fraction held out (0.3)")
    fit.add_argument("--splits", type=_splits, default=5, help="walk-forward folds, >= 2 (5)")
    fit.add_argument("--gap", type=int, default=0, help="purge gap in rows between folds (0)")
    horizon = fit.add_mutually_exclusive_group()
    horizon.add_argument(
        "--label-horizon",
        type=_duration,
        help="label window length (5d, 30min): training rows whose window reaches a "
        "validation block or the holdout are purged",
    )
    horizon.add_argument("--label-end", help="column with each row's label-window end time")
    fit.add_argument("--embargo", type=_duration, default=0, help="embargo after purge (0)")
    fit.add_argument("--payoff", help="column: realized payoff of trading each event")
    fit.add_argument(
        "--skill-alpha",
        type=_fraction,
        default=0.001,
        help="significance level of the skill gate's permutation test (0.001)",
    )
    fit.add_argument(
        "--allow-no-skill",
        action="store_true",
        help="publish even without evidence of skill (recorded in the artifact)",
    )
    fit.add_argument("--C", dest="C", type=_positive_float, default=0.1, help="inverse L2 (0.1)")
    fit.add_argument("--raw-scores", action="store_true", help="members emit unbounded scores")
    fit.add_argument("--strict", action="store_true", help="refuse unsorted time")
    fit.add_argument("--no-refit", action="store_true", help="publish the training-period model")
    fit.add_argument(
        "--missing-members",
        choices=("impute", "reject"),
        default="impute",
        help="what the scorer does with a vote missing a member (impute)",
    )
    fit.add_argument(
        "--sizing",
        choices=SIZING_METHODS,
        default="probability",
        help="position size of a trade: 2Φ(z)−1 of p vs the threshold, fractional Kelly, "
        "or all-or-nothing (probability)",
    )
    fit.add_argument("--size-cap", type=_positive_fraction, default=1.0, help="largest size (1)")
    fit.add_argument("--size-step", type=_fraction, default=0.0, help="size ladder step (0)")
    fit.add_argument("--kelly-fraction", type=_positive_fraction, default=0.5, help="(0.5)")
    fit.add_argument(
        "--payoff-ratio",
        type=_positive_float,
        help="Kelly: mean win / mean loss of a trade (default: from --gain/--cost)",
    )
    fit.add_argument("--model-name", default="meta", help="model name on the models topic")
    fit.add_argument("--model-version", type=_positive_int, default=1, help="version (1)")
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    _add_key_options(fit)


def _rate_step(text: str) -> RateStep:
    from metasignal.trainer.synthetic import RateStep

    at, sep, rate = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"must be AT:RATE such as 0.5:0.05, got {text!r}")
    return RateStep(at=_number(at, float), positive_rate=_open_fraction(rate))


def _add_synth_parser(commands: Any) -> None:
    synth = commands.add_parser("synth", help="write a synthetic committee vote table")
    synth.add_argument("--out", required=True, type=Path, help="CSV path")
    synth.add_argument("--events", type=_positive_int, default=50_000, help="(50000)")
    synth.add_argument("--members", type=_positive_int, default=8, help="(8)")
    synth.add_argument("--positive-rate", type=_open_fraction, default=0.02, help="(0.02)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; also in the ids (0)")
    synth.add_argument(
        "--start",
        default="2024-01-01T00:00:00Z",
        help="first event time, ISO-8601 (UTC without a zone) or epoch ms; also in the ids "
        "(2024-01-01T00:00:00Z)",
    )
    synth.add_argument(
        "--step-ms", type=_positive_int, default=60_000, help="mean spacing of events (60000)"
    )
    synth.add_argument(
        "--rate-step",
        type=_rate_step,
        action="append",
        default=[],
        metavar="AT:RATE",
        help="the base rate becomes RATE from fraction AT of the stream (repeatable), "
        "e.g. 0.6:0.04; members are not told",
    )
    synth.add_argument(
        "--decaying-member",
        help="member (name such as m8, or 1-based number) whose skill fades to none",
    )
    synth.add_argument(
        "--decay-start",
        type=_number_in_unit,
        default=0.5,
        help="fraction of the stream where the decay begins (0.5)",
    )
    synth.add_argument(
        "--label-shift",
        action="store_true",
        help="--rate-step moves the class mix only (each class's votes keep their "
        "distribution, so the votes shift with the rate), not the label threshold",
    )
    synth.add_argument("--time-format", choices=("ms", "iso"), default="ms", help="ts as (ms)")


def _number_in_unit(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="metasignal", description="Balanced meta-model trade signals from committee votes."
    )
    parser.add_argument("--version", action="version", version=f"metasignal {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit_parser(commands)

    evaluate = commands.add_parser("evaluate", help="score a labelled table with an artifact")
    evaluate.add_argument("--model", required=True, type=Path, help="model.json")
    evaluate.add_argument("--data", required=True, type=Path, help="CSV or Parquet vote table")
    evaluate.add_argument("--label", required=True, help="binary label column")
    evaluate.add_argument("--time", help="event-time column (rows are sorted by it)")
    _add_table_options(evaluate)
    _add_key_options(evaluate)

    inspect = commands.add_parser(
        "inspect", help="show an artifact's contents and whether its signature verifies"
    )
    inspect.add_argument("model", type=Path, help="model.json")
    inspect.add_argument("--json", action="store_true", help="print the whole artifact as JSON")
    _add_key_options(inspect)

    _add_synth_parser(commands)

    register_stream_commands(commands)

    add_control_command(commands)

    trainer = commands.add_parser("trainer", help="answer drift requests with gated models")
    add_settings(trainer, KAFKA_SETTINGS)
    add_settings(trainer, TRAINER_SETTINGS)
    trainer.set_defaults(handler=command_trainer)

    demo = commands.add_parser("demo", help="run the end-to-end demo on the embedded default")
    demo.add_argument("--events", type=_positive_int, default=100_000, help="(100000)")
    demo.add_argument("--positive-rate", type=_fraction, default=0.01, help="(0.01)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--bootstrap", help="run on a real Kafka broker instead of the memory bus")
    add_settings(demo, [KAFKA_CLIENT])
    demo.add_argument("--summary-json", type=Path, help="write the final figures as JSON")
    demo.add_argument(
        "--rate", type=float, default=4000.0, help="votes/s to stream (4000; 0 = max)"
    )
    demo.add_argument("--exactly-once", action="store_true", help="transactional scorer")
    demo.add_argument("--no-loop", action="store_true", help="baseline: first model only")
    demo.add_argument(
        "--keep-topics", action="store_true", help="with --bootstrap: keep the demo's topics"
    )
    return parser


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


def _load_model(args: argparse.Namespace) -> Artifact:
    # A configured key always verifies a signed artifact; --unsigned only admits unsigned ones.
    keys = resolve_signing_keys(key_file=args.key_file)
    return read_artifact(args.model, keys=keys, allow_unsigned=args.unsigned)


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


def command_evaluate(args: argparse.Namespace) -> int:
    from metasignal.trainer.data import load_table
    from metasignal.trainer.fit import holdout_metrics

    artifact = _load_model(args)
    scorer = CompiledModel.from_artifact(artifact)
    raw = artifact["preprocessing"]["transform"] == "identity"
    table = load_table(
        args.data,
        label=args.label,
        time=args.time,
        members=list(scorer.members),
        timezone=args.timezone,
        time_unit=args.time_unit,
        raw_scores=raw,
        expected_by=f"model {scorer.name} v{scorer.version}",
    )
    scores = scorer.predict_proba(table.votes)
    block = holdout_metrics(table.labels.astype(np.int64), scores, scorer.threshold)
    block["model"] = {"name": scorer.name, "version": scorer.version}
    print(json.dumps(block, indent=2))
    return 0


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


def _synth_start_ms(text: str) -> int:
    import pandas as pd

    from metasignal.trainer.data import DataError, parse_times

    try:
        ms, _, _ = parse_times(
            pd.Series([text.strip()]), "--start", timezone="UTC", unit="ms", rows=lambda _: "value"
        )
    except DataError as exc:
        raise MetasignalError(f"--start {text!r}: {str(exc).split(': ', 1)[-1]}") from None
    return int(ms[0])


def _member_index(text: str | None, n_members: int) -> int | None:
    if text is None:
        return None
    number = text[1:] if text.startswith("m") else text
    if not number.isdigit() or not 1 <= int(number) <= n_members:
        raise MetasignalError(
            f"--decaying-member {text!r}: name a member m1..m{n_members} (or its number)"
        )
    return int(number) - 1


def command_synth(args: argparse.Namespace) -> int:
    from metasignal.trainer.synthetic import generate_committee

    start_ms = _synth_start_ms(args.start)
    stamp = np.datetime_as_string(np.datetime64(start_ms, "ms"), unit="s").replace("-", "")
    try:
        committee = generate_committee(
            n_events=args.events,
            n_members=args.members,
            positive_rate=args.positive_rate,
            rate_steps=args.rate_step,
            decaying_member=_member_index(args.decaying_member, args.members),
            decay_start=args.decay_start,
            label_shift=args.label_shift,
            start_ms=start_ms,
            step_ms=args.step_ms,
            id_prefix=f"evt-{stamp.replace(':', '')}-s{args.seed}-",
            seed=args.seed,
        )
        committee.to_csv(args.out, time_format=args.time_format)
    except ValueError as exc:
        raise MetasignalError(f"synth: {exc}") from None
    except OSError as exc:
        raise MetasignalError(f"cannot write {args.out}: {exc.strerror}") from None
    end_ms = int(committee.time_ms[-1])
    print(
        json.dumps(
            {
                "out": str(args.out),
                "events": len(committee),
                "positives": int(committee.labels.sum()),
                "start": str(np.datetime64(int(committee.time_ms[0]), "ms")) + "Z",
                "end": str(np.datetime64(end_ms, "ms")) + "Z",
                "first_id": str(committee.ids[0]),
            }
        )
    )
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from metasignal.trainer.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            events=args.events,
            positive_rate=args.positive_rate,
            seed=args.seed,
            out=args.out,
            bootstrap=args.bootstrap,
            kafka_client=args.kafka_client,
            summary_json=args.summary_json,
            rate=args.rate,
            exactly_once=args.exactly_once,
            loop=not args.no_loop,
            keep_topics=args.keep_topics,
        )
    )
    return 0


def command_trainer(args: argparse.Namespace) -> int:
    from metasignal.stream.cli import serve
    from metasignal.stream.topics import Topics
    from metasignal.stream.transport import kafka_transport
    from metasignal.trainer.service import TrainerService

    if not args.bootstrap:
        raise MetasignalError("--bootstrap (or METASIGNAL_BOOTSTRAP) is required")
    transport = kafka_transport(
        args.bootstrap, client=args.kafka_client, client_config=kafka_client_config(args)
    )
    service = TrainerService(
        transport=transport,
        options=options_from_args(TrainerOptions, args, topics=Topics(prefix=args.topic_prefix)),
        keys=resolve_signing_keys(key_file=args.key_file),
    )
    log.info("trainer waiting for requests on %s", Topics(prefix=args.topic_prefix).control)
    serve(
        service.run,
        registry=service.metrics.registry,
        metrics_port=args.metrics_port,
        is_alive=service.heartbeat.alive,
        # An idle standby is ready: it takes over when the active trainer goes away.
        is_ready=lambda: service.ready,
    )
    transport.close()
    return 0


COMMANDS = {
    "fit": command_fit,
    "evaluate": command_evaluate,
    "inspect": command_inspect,
    "synth": command_synth,
    "demo": command_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The demo prints its own story; its logs would interleave with the live line.
    quiet = getattr(args, "quiet", False) or args.command == "demo"
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # kafka-python narrates every connection at INFO; operators need its warnings only
    # (and the demo's story only its errors).
    logging.getLogger("kafka").setLevel(
        logging.ERROR if args.command == "demo" else logging.WARNING
    )
    quiet_kafka_noise()
    handler = getattr(args, "handler", None) or COMMANDS[args.command]
    try:
        return int(handler(args))
    except (MetasignalError, TransportError) as exc:
        print(f"metasignal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stopped:
        # One line, no traceback; the demo says where it stopped and what it cleaned up.
        print(f"metasignal: interrupted{f' ({stopped})' if str(stopped) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
