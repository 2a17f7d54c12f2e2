"""Service settings: one table, each setting with its flag and environment variable.

A flag beats its environment variable, which beats the default. The README's
configuration reference is generated from the same table
(:func:`settings_markdown`), so the two cannot drift apart.

Examples
--------
>>> parser = argparse.ArgumentParser()
>>> add_settings(parser, KAFKA_SETTINGS, environ={"METASIGNAL_TOPIC_PREFIX": "prod."})
>>> parser.parse_args([]).topic_prefix
'prod.'
>>> parser.parse_args(["--topic-prefix", "dev."]).topic_prefix
'dev.'
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Setting:
    """One configurable value."""

    name: str
    env: str
    default: Any
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    secret: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_bool(self) -> bool:
        return self.type is parse_bool


KAFKA_SETTINGS = (
    Setting("bootstrap", "METASIGNAL_BOOTSTRAP", None, "Kafka bootstrap servers host:port[,...]"),
    Setting("topic_prefix", "METASIGNAL_TOPIC_PREFIX", "metasignal.", "prefix of every topic"),
    Setting(
        "security_protocol",
        "METASIGNAL_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka security protocol",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ),
    Setting(
        "sasl_mechanism",
        "METASIGNAL_SASL_MECHANISM",
        None,
        "SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
    ),
    Setting("sasl_username", "METASIGNAL_SASL_USERNAME", None, "SASL user name"),
    Setting("sasl_password", "METASIGNAL_SASL_PASSWORD", None, "SASL password", secret=True),
    Setting("ssl_cafile", "METASIGNAL_SSL_CAFILE", None, "CA bundle to verify the brokers"),
    Setting("ssl_certfile", "METASIGNAL_SSL_CERTFILE", None, "client certificate (mutual TLS)"),
    Setting("ssl_keyfile", "METASIGNAL_SSL_KEYFILE", None, "client private key (mutual TLS)"),
)

SCORER_SETTINGS = (
    Setting("group_id", "METASIGNAL_GROUP_ID", "metasignal-scorer", "consumer group of scorers"),
    Setting("model_name", "METASIGNAL_MODEL_NAME", "meta", "model name to serve from `models`"),
    Setting("batch_size", "METASIGNAL_BATCH_SIZE", 500, "max votes per poll", type=int),
    Setting("poll_timeout_ms", "METASIGNAL_POLL_TIMEOUT_MS", 100, "poll wait (ms)", type=int),
    Setting(
        "exactly_once",
        "METASIGNAL_EXACTLY_ONCE",
        False,
        "Kafka transactions: no lost and no duplicate signal",
        type=parse_bool,
    ),
    Setting(
        "transactional_id",
        "METASIGNAL_TRANSACTIONAL_ID",
        None,
        "transactional id (exactly-once); default <group>-<hostname>; keep it stable per replica",
    ),
    Setting(
        "metrics_port",
        "METASIGNAL_METRICS_PORT",
        9108,
        "port of /metrics, /healthz, /readyz (-1 disables)",
        type=int,
    ),
    Setting(
        "missing_members",
        "METASIGNAL_MISSING_MEMBERS",
        "artifact",
        "vote missing a member: follow the artifact's policy, impute, or reject to DLQ",
        choices=("artifact", "impute", "reject"),
    ),
    Setting(
        "strict_members",
        "METASIGNAL_STRICT_MEMBERS",
        False,
        "unknown or missing members send the vote to the DLQ",
        type=parse_bool,
    ),
    Setting(
        "max_message_bytes",
        "METASIGNAL_MAX_MESSAGE_BYTES",
        65536,
        "larger vote payloads go to the DLQ",
        type=int,
    ),
    Setting(
        "track_outcomes",
        "METASIGNAL_TRACK_OUTCOMES",
        True,
        "join outcomes, write training rows, track drift and send requests",
        type=parse_bool,
    ),
    Setting(
        "join_max_entries",
        "METASIGNAL_JOIN_MAX_ENTRIES",
        200_000,
        "scored votes kept waiting for their outcome (oldest dropped first)",
        type=int,
    ),
    Setting(
        "join_ttl_s",
        "METASIGNAL_JOIN_TTL_S",
        86_400.0,
        "seconds a scored vote waits for its outcome",
        type=float,
    ),
    Setting(
        "drift_detector",
        "METASIGNAL_DRIFT_DETECTOR",
        "cusum",
        "detector on the realized positive rate",
        choices=("cusum", "adwin", "page_hinkley"),
    ),
    Setting(
        "drift_window",
        "METASIGNAL_DRIFT_WINDOW",
        5000,
        "joined outcomes in the rolling quality window",
        type=int,
    ),
    Setting(
        "label_free",
        "METASIGNAL_LABEL_FREE",
        True,
        "estimate the positive rate and quality from the scores; re-tune on label shift early",
        type=parse_bool,
    ),
    Setting(
        "key_file",
        "METASIGNAL_KEY_FILE",
        None,
        "file of signing keys, one per line (else METASIGNAL_SIGNING_KEY, comma-separated)",
    ),
    Setting(
        "unsigned",
        "METASIGNAL_ALLOW_UNSIGNED",
        False,
        "accept unsigned artifacts (local experiments only)",
        type=parse_bool,
    ),
)

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
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                action="store_true",
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


def default_transactional_id(group_id: str) -> str:
    return f"{group_id}-{socket.gethostname()}"


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
