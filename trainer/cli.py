"""``metasignal``: the command line.

Every user error (bad file, bad flag, refused artifact) ends as one line on
stderr and exit code 2, never a traceback. ``fit`` exits with 3
(:data:`metasignal.trainer.skill.EXIT_NO_SKILL`) when the committee shows no
evidence of skill: the report is written, no model is.

This module wires the parser; each command lives in its own module of
:mod:`metasignal.trainer.commands`. The fitting modules (the meta-model,
imbalanced-learn) are imported inside the commands that fit, which keeps about
30 MB out of ``metasignal scorer``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from metasignal import version
from metasignal.stream.cli import quiet_kafka_noise
from metasignal.stream.cli import register as register_stream_commands
from metasignal.stream.config import KAFKA_CLIENT, KAFKA_SETTINGS, add_settings
from metasignal.stream.errors import MetasignalError
from metasignal.stream.sizing import SIZING_METHODS
from metasignal.stream.transport.base import TransportError
from metasignal.trainer.commands.demo import command_demo
from metasignal.trainer.commands.evaluate import command_evaluate
from metasignal.trainer.commands.fit import command_fit
from metasignal.trainer.commands.inspect import command_inspect
from metasignal.trainer.commands.service import command_trainer
from metasignal.trainer.commands.synth import command_synth
from metasignal.trainer.control import add_control_command
from metasignal.trainer.settings import STRATEGY_CHOICES, TRAINER_SETTINGS
from metasignal.trainer.thresholds import METRICS

if TYPE_CHECKING:
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
