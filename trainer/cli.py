"""``metasignal``: the command line.

Every user error (bad file, bad flag, refused artifact) ends as one line on
stderr and exit code 2, never a traceback.

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
from typing import Any

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
from metasignal.trainer.data import DataError, load_table
from metasignal.trainer.report import render_html
from metasignal.trainer.settings import STRATEGY_CHOICES, TRAINER_SETTINGS, TrainerOptions
from metasignal.trainer.thresholds import METRICS

log = logging.getLogger("metasignal")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _positive_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


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
        help="local experiments only: write/accept unsigned artifacts (marked as such)",
    )


def _add_fit_parser(commands: Any) -> None:
    fit = commands.add_parser("fit", help="fit, tune and sign a meta-model from a vote table")
    fit.add_argument("--data", required=True, type=Path, help="CSV or Parquet vote table")
    fit.add_argument("--label", required=True, help="binary label column (1 = trade)")
    fit.add_argument("--time", required=True, help="event-time column (epoch ms or ISO-8601)")
    fit.add_argument("--out", required=True, type=Path, help="output directory")
    fit.add_argument("--members", help="comma-separated member columns (default: all numeric)")
    fit.add_argument("--strategy", default="auto", choices=STRATEGY_CHOICES, help="(auto)")
    fit.add_argument("--metric", default="f1", choices=METRICS, help="threshold metric (f1)")
    fit.add_argument("--beta", type=_positive_float, default=1.0, help="F-beta's beta (1)")
    fit.add_argument("--min-recall", type=_fraction, default=0.0, help="for --metric precision")
    fit.add_argument("--min-precision", type=_fraction, default=0.0, help="for --metric recall")
    fit.add_argument("--gain", type=_positive_float, default=1.0, help="profit per true trade")
    fit.add_argument("--cost", type=_positive_float, default=1.0, help="loss per false trade")
    fit.add_argument("--holdout", type=float, default=0.3, help="last fraction held out (0.3)")
    fit.add_argument("--splits", type=_positive_int, default=5, help="walk-forward folds (5)")
    fit.add_argument("--gap", type=int, default=0, help="purge gap in rows between folds (0)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    _add_key_options(evaluate)

    inspect = commands.add_parser("inspect", help="summarise an artifact")
    inspect.add_argument("model", type=Path, help="model.json")
    _add_key_options(inspect)

    synth = commands.add_parser("synth", help="write a synthetic committee vote table")
    synth.add_argument("--out", required=True, type=Path, help="CSV path")
    synth.add_argument("--events", type=_positive_int, default=50_000)
    synth.add_argument("--members", type=_positive_int, default=8)
    synth.add_argument("--positive-rate", type=_fraction, default=0.02)
    synth.add_argument("--seed", type=int, default=0)

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
    if args.unsigned:
        log.warning("writing an UNSIGNED artifact: for local experiments only")
        return None
    keys = resolve_signing_keys(key_file=args.key_file)
    if not keys:
        raise ArtifactError(
            "no signing key: set METASIGNAL_SIGNING_KEY or pass --key-file "
            "(or --unsigned for local experiments)"
        )
    return keys[0]


def _load_model(args: argparse.Namespace) -> Artifact:
    keys = (
        []
        if args.unsigned and args.key_file is None
        else resolve_signing_keys(key_file=args.key_file)
    )
    return read_artifact(args.model, keys=keys, allow_unsigned=args.unsigned)


def command_fit(args: argparse.Namespace) -> int:
    from metasignal.trainer.fit import FitConfig, fit_meta_model

    key = _signing_key(args)
    members = [m.strip() for m in args.members.split(",")] if args.members else None
    table = load_table(
        args.data,
        label=args.label,
        time=args.time,
        members=members,
        raw_scores=args.raw_scores,
        strict=args.strict,
    )
    config = FitConfig(
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
            "C": args.C,
            "kind": "raw" if args.raw_scores else "probability",
        },
    )
    outcome = fit_meta_model(table, config)
    write_outputs(args.out, sign_artifact(outcome.artifact, key), outcome.report)
    holdout = outcome.report["holdout"]
    summary = {
        "strategy": outcome.report["strategy"],
        "threshold": round(outcome.report["threshold"], 6),
        "holdout_f1": None if holdout is None else round(holdout["f1"], 4),
        "fit_seconds": round(outcome.report["fit_seconds"], 2),
        "out": str(args.out),
    }
    print(json.dumps(summary))
    for warning in outcome.report.get("warnings") or []:
        print(f"metasignal: warning: {warning} (see report.html)", file=sys.stderr)
    return 0


def write_outputs(out: Path, artifact: Artifact, report: dict[str, Any]) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text(dumps_artifact(artifact), encoding="utf-8")
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (out / "report.html").write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise MetasignalError(f"cannot write to {out}: {exc.strerror}") from None


def command_evaluate(args: argparse.Namespace) -> int:
    from metasignal.trainer.fit import holdout_metrics

    artifact = _load_model(args)
    scorer = CompiledModel.from_artifact(artifact)
    table = load_table(
        args.data,
        label=args.label,
        time=args.time,
        members=list(scorer.members),
        raw_scores=artifact["preprocessing"]["transform"] == "identity",
    )
    scores = scorer.predict_proba(table.votes)
    block = holdout_metrics(table.labels.astype(np.int64), scores, scorer.threshold)
    block["model"] = {"name": scorer.name, "version": scorer.version}
    print(json.dumps(block, indent=2))
    return 0


def command_inspect(args: argparse.Namespace) -> int:
    artifact = _load_model(args)
    signature = artifact["signature"]
    signed = (
        "UNSIGNED (local experiment)"
        if signature.get("algorithm") == "none"
        else f"{signature['algorithm']} key_id {signature['key_id']} (verified)"
    )
    strategy = artifact["strategy"]
    threshold = artifact["threshold"]
    lines = [
        f"model      {artifact['model']['name']} v{artifact['model']['version']}"
        f"  created {artifact['created_at']}",
        f"signature  {signed}",
        f"strategy   {strategy['name']}: {strategy.get('reason', '')}",
        f"threshold  {threshold['value']:.6f} (metric {threshold['metric']})",
        f"calibration {artifact['calibration']['method']} slope "
        f"{artifact['calibration']['slope']:.4f} intercept "
        f"{artifact['calibration']['intercept']:.4f}",
    ]
    lines.append(f"sizing     {SizingRule.from_dict(artifact.get('sizing')).describe()}")
    for fallback in strategy.get("fallbacks", []):
        lines.append(f"fallback   {fallback}")
    holdout = (artifact.get("metrics") or {}).get("holdout")
    if holdout:
        lines.append(
            f"holdout    f1 {holdout['f1']:.4f} precision {holdout['precision']:.4f} "
            f"recall {holdout['recall']:.4f} brier {holdout['brier']:.5f} "
            f"(n {holdout['n']}, positives {holdout['positives']})"
        )
    lines.append("member weights (standardised logits):")
    weights = zip(artifact["members"], artifact["linear"]["coef"], strict=True)
    for name, weight in sorted(weights, key=lambda item: -abs(item[1])):
        bar = "#" * min(40, round(abs(weight) * 20))
        lines.append(f"  {name:<16} {weight:+.4f} {bar}")
    print("\n".join(lines))
    return 0


def command_synth(args: argparse.Namespace) -> int:
    from metasignal.trainer.synthetic import generate_committee

    committee = generate_committee(
        n_events=args.events,
        n_members=args.members,
        positive_rate=args.positive_rate,
        seed=args.seed,
    )
    committee.to_csv(args.out)
    print(json.dumps({"out": str(args.out), "events": len(committee)}))
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
    from metasignal.stream.transport.kafka import KafkaTransport
    from metasignal.trainer.service import TrainerService

    if not args.bootstrap:
        raise MetasignalError("--bootstrap (or METASIGNAL_BOOTSTRAP) is required")
    transport = KafkaTransport(bootstrap=args.bootstrap, client_config=kafka_client_config(args))
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
    except (MetasignalError, DataError, TransportError) as exc:
        print(f"metasignal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
