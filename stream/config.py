"""Service settings: each declared once, as a field of an options class.

A setting is a dataclass field made by :func:`setting`, which names its
environment variable, help text and choices next to its default. From those
fields come the command-line flags (:func:`add_settings`), the options object
(:func:`options_from_args`) and the README's configuration tables
(:func:`settings_markdown`), so none of them can drift apart. A flag beats its
environment variable, which beats the default; a boolean has ``--x`` and
``--no-x``, so a flag beats its environment variable both ways.

Adding a setting is adding one field, e.g. :class:`KafkaOptions`' ``kafka_client``.

Examples
--------
>>> parser = argparse.ArgumentParser()
>>> add_settings(parser, KAFKA_SETTINGS, environ={"METASIGNAL_TOPIC_PREFIX": "prod."})
>>> parser.parse_args([]).topic_prefix
'prod.'
>>> parser.parse_args(["--topic-prefix", "dev."]).topic_prefix
'dev.'
>>> options_from_args(KafkaOptions, parser.parse_args([])).security_protocol
'PLAINTEXT'
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

_SETTING = "metasignal.setting"

T = TypeVar("T")


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Setting:
    """One configurable value: its flag, environment variable, default and help."""

    name: str
    env: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    secret: bool = False
    flag_name: str | None = None  # when the flag is not the field's name

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name).replace("_", "-")

    @property
    def is_bool(self) -> bool:
        return self.type is parse_bool


def setting(
    default: Any,
    *,
    env: str,
    help: str,
    type: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    flag: str | None = None,
) -> Any:
    """A dataclass field that is also a setting (the type follows the default unless given)."""
    if type is None:
        type = (
            parse_bool
            if isinstance(default, bool)
            else (builtins_type(default) if default is not None else str)
        )
    spec = {
        "env": env,
        "help": help,
        "type": type,
        "choices": choices,
        "secret": secret,
        "flag_name": flag,
    }
    return dataclasses.field(default=default, metadata={_SETTING: spec})


def builtins_type(value: Any) -> Callable[[str], Any]:
    """The parser of a default's type: ``int`` for 5, ``float`` for 0.5, ``str`` otherwise."""
    kind = type(value)
    return kind if kind in (int, float, str) else str


def settings_of(options: type) -> tuple[Setting, ...]:
    """The settings an options class declares, in field order."""
    return tuple(
        Setting(name=f.name, default=f.default, **f.metadata[_SETTING])
        for f in dataclasses.fields(options)
        if _SETTING in f.metadata
    )


def options_from_args(options: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """An options object from parsed flags (its settings) and ``extra`` (everything else)."""
    values = {s.name: getattr(args, s.name) for s in settings_of(options)}
    return options(**values, **extra)


@dataclass(frozen=True, kw_only=True)
class KafkaOptions:
    """Where the brokers are and how to reach them (every command that talks to Kafka)."""

    bootstrap: str | None = setting(
        None, env="METASIGNAL_BOOTSTRAP", help="Kafka bootstrap servers host:port[,...]"
    )
    kafka_client: str = setting(
        "kafka-python",
        env="METASIGNAL_KAFKA_CLIENT",
        help="Kafka client library; confluent (librdkafka) needs the metasignal[confluent] extra",
        choices=("kafka-python", "confluent"),
    )
    topic_prefix: str = setting(
        "metasignal.", env="METASIGNAL_TOPIC_PREFIX", help="prefix of every topic"
    )
    security_protocol: str = setting(
        "PLAINTEXT",
        env="METASIGNAL_SECURITY_PROTOCOL",
        help="Kafka security protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str | None = setting(
        None,
        env="METASIGNAL_SASL_MECHANISM",
        help="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
    )
    sasl_username: str | None = setting(None, env="METASIGNAL_SASL_USERNAME", help="SASL user name")
    sasl_password: str | None = setting(
        None, env="METASIGNAL_SASL_PASSWORD", help="SASL password", secret=True
    )
    ssl_cafile: str | None = setting(
        None, env="METASIGNAL_SSL_CAFILE", help="CA bundle to verify the brokers"
    )
    ssl_certfile: str | None = setting(
        None, env="METASIGNAL_SSL_CERTFILE", help="client certificate (mutual TLS)"
    )
    ssl_keyfile: str | None = setting(
        None, env="METASIGNAL_SSL_KEYFILE", help="client private key (mutual TLS)"
    )


KAFKA_SETTINGS = settings_of(KafkaOptions)
KAFKA_CLIENT = next(s for s in KAFKA_SETTINGS if s.name == "kafka_client")

SIGNING_KEY_DOC = Setting(
    "signing_key",
    "METASIGNAL_SIGNING_KEY",
    None,
    "HMAC key(s) that sign/verify artifacts; comma-separated, first signs (env only)",
    secret=True,
)


def add_settings(
    parser: argparse.ArgumentParser,
    settings: Sequence[Setting],
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per setting whose default comes from its environment variable."""
    env = os.environ if environ is None else environ
    for setting in settings:
        raw = env.get(setting.env)
        try:
            default = setting.type(raw) if raw is not None else setting.default
        except ValueError:
            parser.error(f"{setting.env}={raw!r} is not a valid {setting.name}")
        label = "****" if setting.secret and default else default
        help_text = f"{setting.help} [env {setting.env}; default {label}]"
        if setting.is_bool:
            # --x and --no-x: a flag beats its environment variable both ways.
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                type=setting.type,
                default=default,
                choices=setting.choices,
                help=help_text,
            )


def kafka_client_config(args: argparse.Namespace) -> dict[str, Any]:
    """kafka-python keyword arguments for the security settings that are set."""
    mapping = {
        "security_protocol": "security_protocol",
        "sasl_mechanism": "sasl_mechanism",
        "sasl_username": "sasl_plain_username",
        "sasl_password": "sasl_plain_password",
        "ssl_cafile": "ssl_cafile",
        "ssl_certfile": "ssl_certfile",
        "ssl_keyfile": "ssl_keyfile",
    }
    return {
        kafka_name: getattr(args, ours)
        for ours, kafka_name in mapping.items()
        if getattr(args, ours, None) is not None
    }


def default_transactional_id(group_id: str, metrics_port: int) -> str:
    """``<group>-<hostname>-<metrics port>``: distinct for two scorers on one host (their
    metrics ports differ), stable across a replica's restarts (so it fences its predecessor).
    Without a fixed port (-1 disabled, 0 ephemeral) the process id stands in: distinct,
    but not stable, so set ``--transactional-id`` for such replicas."""
    if metrics_port > 0:
        return f"{group_id}-{socket.gethostname()}-{metrics_port}"
    return f"{group_id}-{socket.gethostname()}-pid{os.getpid()}"


def settings_markdown(settings: Sequence[Setting]) -> str:
    """The README's configuration table."""
    lines = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for s in settings:
        flag = f"`{s.flag}`" if s.name != "signing_key" else "—"
        if s.is_bool:
            flag = f"`{s.flag}` / `--no-{s.flag[2:]}`"
        default = "—" if s.default is None else f"`{s.default}`"
        lines.append(f"| {flag} | `{s.env}` | {default} | {s.help} |")
    return "\n".join(lines)
