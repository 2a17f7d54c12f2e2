"""Settings are declared once, on the options classes: flags, env vars, options, README."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from metasignal.stream.cli import scorer_options
from metasignal.stream.config import (
    KAFKA_SETTINGS,
    SIGNING_KEY_DOC,
    KafkaOptions,
    add_settings,
    settings_markdown,
)
from metasignal.stream.join import JoinCache
from metasignal.stream.options import SCORER_SETTINGS, ScorerOptions
from metasignal.trainer.settings import TRAINER_SETTINGS
from tests.conftest import REPO


def scorer_parser(environ: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_settings(parser, KAFKA_SETTINGS, environ=environ)
    add_settings(parser, SCORER_SETTINGS, environ=environ)
    return parser


def readme_tables() -> list[str]:
    """Every configuration table in README.md (a header row and the rows after it)."""
    lines = (REPO / "README.md").read_text().splitlines()
    tables, i = [], 0
    while i < len(lines):
        if lines[i].startswith("| flag | environment variable |"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            tables.append("\n".join(lines[i:j]))
            i = j
        else:
            i += 1
    return tables


def test_readme_tables_are_exactly_the_generated_ones() -> None:
    assert readme_tables() == [
        settings_markdown(TRAINER_SETTINGS),
        settings_markdown((*KAFKA_SETTINGS, *SCORER_SETTINGS, SIGNING_KEY_DOC)),
    ]


def test_each_setting_has_one_default_in_the_options_the_flags_and_the_parser() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(ScorerOptions)}
    for s in SCORER_SETTINGS:
        assert defaults[s.name] == s.default
    parsed = vars(scorer_parser({}).parse_args([]))
    for s in (*KAFKA_SETTINGS, *SCORER_SETTINGS):
        assert parsed[s.name] == s.default, s.name


def test_join_ttl_has_one_default_across_layers() -> None:
    (ttl,) = [s for s in SCORER_SETTINGS if s.name == "join_ttl_s"]
    assert ScorerOptions().join_ttl_s == JoinCache().ttl_s == ttl.default == 86_400.0


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        ("true", [], True),
        ("true", ["--no-exactly-once"], False),
        ("false", ["--exactly-once"], True),
        ("false", [], False),
    ],
)
def test_a_boolean_flag_beats_its_environment_variable_both_ways(
    env: str, argv: list[str], expected: bool
) -> None:
    args = scorer_parser({"METASIGNAL_EXACTLY_ONCE": env}).parse_args(argv)
    assert args.exactly_once is expected


def test_every_documented_no_flag_exists() -> None:
    parser = scorer_parser({"METASIGNAL_TRACK_OUTCOMES": "true"})
    args = parser.parse_args(
        ["--no-track-outcomes", "--no-exactly-once", "--no-strict-members", "--no-unsigned"]
    )
    assert (args.track_outcomes, args.exactly_once, args.strict_members) == (False, False, False)
    assert args.allow_unsigned is False


def test_a_value_flag_beats_its_environment_variable() -> None:
    parser = scorer_parser({"METASIGNAL_JOIN_TTL_S": "60", "METASIGNAL_BATCH_SIZE": "7"})
    args = parser.parse_args(["--join-ttl-s", "30"])
    assert (args.join_ttl_s, args.batch_size) == (30.0, 7)


def test_the_options_object_is_built_from_every_setting() -> None:
    argv = ["--group-id", "g", "--drift-detector", "adwin", "--topic-prefix", "p.", "--unsigned"]
    options = scorer_options(scorer_parser({}).parse_args(argv))
    assert (options.group_id, options.drift_detector, options.allow_unsigned) == (
        "g",
        "adwin",
        True,
    )
    assert options.topics.votes == "p.votes"
    assert options.transactional_id is not None and options.transactional_id.startswith("g-")


def test_a_bad_environment_value_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        scorer_parser({"METASIGNAL_BATCH_SIZE": "many"})
    assert "METASIGNAL_BATCH_SIZE='many'" in capsys.readouterr().err


def test_kafka_options_declare_the_kafka_settings() -> None:
    assert [s.name for s in KAFKA_SETTINGS] == [f.name for f in dataclasses.fields(KafkaOptions)]


def test_two_exactly_once_scorers_on_one_host_get_distinct_stable_transactional_ids() -> None:
    """Before: the default was <group>-<hostname>, so a second scorer on the same host
    fenced the first (and the first the second, in turn)."""
    parser = scorer_parser({})
    a = scorer_options(parser.parse_args(["--exactly-once", "--metrics-port", "9108"]))
    b = scorer_options(parser.parse_args(["--exactly-once", "--metrics-port", "9118"]))
    a_again = scorer_options(parser.parse_args(["--exactly-once", "--metrics-port", "9108"]))
    assert a.transactional_id != b.transactional_id
    assert a.transactional_id == a_again.transactional_id  # a restart fences its predecessor
    chosen = scorer_options(parser.parse_args(["--transactional-id", "mine"]))
    assert chosen.transactional_id == "mine"


def test_the_metrics_bind_address_is_a_setting() -> None:
    from urllib.request import urlopen

    from prometheus_client import CollectorRegistry

    from metasignal.stream.metrics import MetricsServer

    args = scorer_parser({"METASIGNAL_METRICS_HOST": "127.0.0.1"}).parse_args([])
    assert scorer_options(args).metrics_host == args.metrics_host == "127.0.0.1"
    server = MetricsServer(
        registry=CollectorRegistry(),
        port=0,
        host=args.metrics_host,
        is_alive=lambda: True,
        is_ready=lambda: True,
    ).start()
    try:
        assert server._server.server_address[0] == "127.0.0.1"
        with urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as reply:
            assert reply.status == 200
    finally:
        server.stop()


def test_trainer_settings_are_declared_on_trainer_options() -> None:
    from metasignal.stream.config import options_from_args
    from metasignal.stream.topics import Topics
    from metasignal.trainer.settings import TrainerOptions

    parser = argparse.ArgumentParser()
    add_settings(parser, TRAINER_SETTINGS, environ={"METASIGNAL_TRAINER_FORCE": "true"})
    defaults = options_from_args(TrainerOptions, parser.parse_args(["--no-force"]), topics=Topics())
    assert defaults == TrainerOptions()
    forced = options_from_args(TrainerOptions, parser.parse_args([]), topics=Topics())
    assert forced.force is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--strategy", "magic"])
