"""Stream subcommands of ``metasignal``: scorer, publish, replay, tail, topics.

Registered into the main parser by :mod:`metasignal.trainer.cli`; nothing here imports
the trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from metasignal.stream.artifact import dumps_artifact, load_artifact, resolve_signing_keys
from metasignal.stream.config import (
    KAFKA_SETTINGS,
    add_settings,
    default_transactional_id,
    kafka_client_config,
    options_from_args,
)
from metasignal.stream.errors import ArtifactError, MetasignalError
from metasignal.stream.lineup import as_shadow
from metasignal.stream.metrics import MetricsServer
from metasignal.stream.model_store import publish_artifact, rollback_artifact
from metasignal.stream.options import SCORER_SETTINGS, ScorerOptions
from metasignal.stream.replay import ReplayProgress, read_vote_file
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport import Transport, kafka_transport
from metasignal.stream.transport.base import TransportError

log = logging.getLogger("metasignal")

TOPIC_KINDS = ("votes", "signals", "outcomes", "models", "control", "dlq", "training")


def _kafka(args: argparse.Namespace) -> Transport:
    if not args.bootstrap:
        raise MetasignalError("--bootstrap (or METASIGNAL_BOOTSTRAP) is required")
    return kafka_transport(
        args.bootstrap,
        client=args.kafka_client,
        client_config=kafka_client_config(args),
        replication_factor=getattr(args, "replication_factor", 1),
    )


class _SlowTaskNoise(logging.Filter):
    """kafka-python warns "Task ... blocking the event loop" whenever one step of its network
    loop takes over 100 ms: on a busy machine that is the OS scheduler, not something a user
    can act on. Such records are kept for DEBUG logging only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "blocking the event loop" not in str(record.msg):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


KAFKA_NOISE_LOGGER = "kafka.net.selector"


def quiet_kafka_noise() -> None:
    """Keep kafka-python's slow-task warnings out of user-facing output (idempotent)."""
    logger = logging.getLogger(KAFKA_NOISE_LOGGER)
    if not any(isinstance(f, _SlowTaskNoise) for f in logger.filters):
        logger.addFilter(_SlowTaskNoise())


def register(commands: Any) -> None:
    """Add the stream subcommands to ``commands`` (an argparse subparsers object)."""
    scorer = commands.add_parser("scorer", help="score votes from Kafka into signals")
    add_settings(scorer, KAFKA_SETTINGS)
    add_settings(scorer, SCORER_SETTINGS)
    scorer.set_defaults(handler=command_scorer)

    publish = commands.add_parser(
        "publish",
        help="put a model artifact on the models topic (verified; its version must be newer)",
    )
    publish.add_argument("model", type=Path, help="model.json")
    publish.add_argument("--key-file", type=Path, help="signing keys to verify before publishing")
    publish.add_argument("--unsigned", action="store_true", help="allow an unsigned artifact")
    publish.add_argument(
        "--shadow",
        action="store_true",
        help="publish it as a shadow: scored beside the champion, promoted or retired on live "
        "outcomes (re-signed with the first key)",
    )
    add_settings(publish, KAFKA_SETTINGS)
    publish.set_defaults(handler=command_publish)

    rollback = commands.add_parser(
        "rollback",
        help="serve an earlier model version again (re-published, signed, as the next version)",
    )
    rollback.add_argument("--to", dest="to_version", type=int, required=True, help="version")
    rollback.add_argument("--model-name", default="meta", help="model name (meta)")
    rollback.add_argument("--key-file", type=Path, help="signing keys (first signs)")
    add_settings(rollback, KAFKA_SETTINGS)
    rollback.set_defaults(handler=command_rollback)

    replay = commands.add_parser("replay", help="send a vote file (CSV) into the votes topic")
    replay.add_argument("file", type=Path, help="CSV with id, ts and one column per member")
    replay.add_argument("--rate", type=float, default=0.0, help="votes per second (0 = max)")
    replay.add_argument("--id", dest="id_column", default="id", help="event id column (id)")
    replay.add_argument("--time", dest="time_column", default="ts", help="event time column (ts)")
    replay.add_argument("--label", dest="label_column", default="label", help="label column")
    replay.add_argument(
        "--outcomes", action="store_true", help="also send each label to the outcomes topic"
    )
    add_settings(replay, KAFKA_SETTINGS)
    replay.set_defaults(handler=command_replay)

    tail = commands.add_parser("tail", help="print messages of a topic as they arrive")
    tail.add_argument("topic", choices=TOPIC_KINDS, help="which topic")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest")
    tail.add_argument("--max", type=int, default=0, help="stop after N messages (0 = never)")
    tail.add_argument("--idle-exit", type=float, default=0.0, help="stop after N idle seconds")
    add_settings(tail, KAFKA_SETTINGS)
    tail.set_defaults(handler=command_tail)

    topics = commands.add_parser("topics", help="manage topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create every metasignal topic (idempotent)")
    create.add_argument("--partitions", type=int, default=4, help="for keyed topics (4)")
    create.add_argument("--replication-factor", type=int, default=1, help="(1)")
    add_settings(create, KAFKA_SETTINGS)
    create.set_defaults(handler=command_topics_create)


def command_scorer(args: argparse.Namespace) -> int:
    # Imported here: the scorer pulls in river (drift), which no other command needs.
    from metasignal.stream.scorer import Scorer

    transport = _kafka(args)
    keys = resolve_signing_keys(key_file=args.key_file)
    if not keys and not args.allow_unsigned:
        raise ArtifactError("no signing key: set METASIGNAL_SIGNING_KEY or --key-file")
    options = scorer_options(args)
    try:
        service = Scorer(transport=transport, options=options, keys=keys)
    except TransportError as exc:
        raise MetasignalError(str(exc)) from None
    mode = "exactly-once" if options.exactly_once else "at-least-once"
    log.info(
        "scorer starting (%s) on %s via %s, group %s",
        mode, args.bootstrap, args.kafka_client, options.group_id,
    )  # fmt: skip
    serve(
        service.run,
        registry=service.metrics.registry,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        is_alive=service.heartbeat.alive,
        is_ready=lambda: service.ready,
    )
    transport.close()
    log.info(
        "scorer stopped: %d votes, %d signals, %d dead letters",
        service.stats.votes,
        service.stats.signals,
        service.stats.dlq,
    )
    return 0


def scorer_options(args: argparse.Namespace) -> ScorerOptions:
    """The scorer's options from its parsed flags (each setting declared on ScorerOptions)."""
    options = options_from_args(ScorerOptions, args, topics=Topics(prefix=args.topic_prefix))
    if options.transactional_id:
        return options
    return dataclasses.replace(
        options,
        transactional_id=default_transactional_id(options.group_id, options.metrics_port),
    )


def freeze_startup_heap() -> None:
    """Move everything allocated so far out of the cyclic GC's sight.

    Imports and the loaded model live as long as the process; without this each full
    collection walks them all again (pauses of 80-180 ms measured with river's old
    import tree, ~16 ms with today's).
    """
    gc.collect()
    gc.freeze()


def serve(
    run: Callable[[threading.Event], None],
    *,
    registry: CollectorRegistry,
    metrics_port: int,
    metrics_host: str = "0.0.0.0",
    is_alive: Callable[[], bool],
    is_ready: Callable[[], bool],
) -> None:
    """Run a service loop until SIGTERM/SIGINT, with its metrics and probes on a port.

    The signal only sets the stop event: the loop finishes the work in hand,
    flushes and commits before ``run`` returns.
    """
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %d received: finishing the work in hand, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = None
    if metrics_port >= 0:
        server = MetricsServer(
            registry=registry,
            port=metrics_port,
            host=metrics_host,
            is_alive=is_alive,
            is_ready=is_ready,
        ).start()
        log.info("metrics on %s:%d (/metrics /healthz /readyz)", metrics_host, server.port)
    freeze_startup_heap()
    try:
        run(stop)
    finally:
        if server is not None:
            server.stop()


def command_publish(args: argparse.Namespace) -> int:
    try:
        raw = args.model.read_bytes()
    except OSError as exc:
        raise MetasignalError(f"cannot read {args.model}: {exc.strerror}") from None
    keys = resolve_signing_keys(key_file=args.key_file)
    # Refuse here what every scorer would refuse: a bad artifact never reaches the topic.
    artifact = load_artifact(raw, keys=keys, allow_unsigned=args.unsigned)
    if args.shadow:
        raw = dumps_artifact(as_shadow(artifact, keys)).encode()
    transport = _kafka(args)
    try:
        name, version = publish_artifact(
            transport,
            Topics(prefix=args.topic_prefix),
            raw,
            keys=keys,
            allow_unsigned=args.unsigned,
        )
    except TransportError as exc:
        raise MetasignalError(str(exc)) from None
    finally:
        transport.close()
    stage = {"stage": "shadow"} if args.shadow else {}
    print(json.dumps({"published": name, "version": version, **stage}))
    return 0


def command_rollback(args: argparse.Namespace) -> int:
    keys = resolve_signing_keys(key_file=args.key_file)
    transport = _kafka(args)
    try:
        name, version = rollback_artifact(
            transport,
            Topics(prefix=args.topic_prefix),
            name=args.model_name,
            to_version=args.to_version,
            keys=keys,
        )
    except TransportError as exc:
        raise MetasignalError(str(exc)) from None
    finally:
        transport.close()
    print(json.dumps({"published": name, "version": version, "rollback_to": args.to_version}))
    return 0


def command_replay(args: argparse.Namespace) -> int:
    events = read_vote_file(
        args.file, id_column=args.id_column, time_column=args.time_column, label=args.label_column
    )
    topics = Topics(prefix=args.topic_prefix)
    transport = _kafka(args)
    producer = transport.producer()
    started = time.monotonic()
    progress = ReplayProgress(len(events), stream=sys.stderr)
    for i, event in enumerate(events):
        if args.rate > 0:
            delay = started + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.send(topics.votes, key=event.key, value=event.vote)
        if args.outcomes and event.outcome is not None:
            producer.send(topics.outcomes, key=event.key, value=event.outcome)
        progress.update(i + 1)
    producer.flush()
    producer.close()
    transport.close()
    progress.finish(len(events))
    print(json.dumps({"sent": len(events), "seconds": round(time.monotonic() - started, 3)}))
    return 0


def _tail_banner(args: argparse.Namespace, topic: str, partitions: int) -> str:
    start = (
        "from its oldest message"
        if args.from_beginning
        else "new messages only (--from-beginning for the whole topic)"
    )
    ends = [f"after {args.max} messages"] if args.max else []
    ends += [f"after {args.idle_exit:g} s without one"] if args.idle_exit else []
    ends.append("on Ctrl-C")
    return (
        f"tail: waiting for messages on {topic} ({partitions} partitions) at {args.bootstrap}, "
        f"{start}; stops {' or '.join(ends)}"
    )


def command_tail(args: argparse.Namespace) -> int:
    topic = getattr(Topics(prefix=args.topic_prefix), args.topic)
    transport = _kafka(args)
    try:
        partitions = transport.partition_count(topic)
    except TransportError as exc:
        transport.close()
        raise MetasignalError(str(exc)) from None
    if partitions is None:
        transport.close()
        raise MetasignalError(
            f"topic {topic} does not exist at {args.bootstrap}: "
            "run `metasignal topics create` (or check --topic-prefix)"
        )
    consumer = transport.consumer(assign_all=[topic], from_beginning=args.from_beginning)
    for partition in consumer.assignment():
        consumer.position(partition)  # resolve the seek now: nothing sent from here is missed
    print(_tail_banner(args, topic, partitions), file=sys.stderr, flush=True)
    seen = 0
    last = time.monotonic()
    try:
        while not args.max or seen < args.max:
            records = consumer.poll(timeout_ms=200, max_records=500)
            if not records:
                if args.idle_exit and time.monotonic() - last > args.idle_exit:
                    break
                continue
            last = time.monotonic()
            for record in records:
                line: dict[str, Any] = {
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": record.key.decode(errors="replace") if record.key else None,
                }
                try:
                    line["value"] = json.loads(record.value) if record.value else None
                except ValueError:
                    line["value"] = (record.value or b"").decode(errors="replace")
                if record.headers:
                    line["headers"] = {k: v.decode(errors="replace") for k, v in record.headers}
                print(json.dumps(line), flush=True)
                seen += 1
                if args.max and seen >= args.max:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        transport.close()
    print(f"tail: {seen} messages", file=sys.stderr)
    return 0


def command_topics_create(args: argparse.Namespace) -> int:
    transport = _kafka(args)
    try:
        created = transport.create_topics(
            topic_specs(Topics(prefix=args.topic_prefix), partitions=args.partitions)
        )
    except TransportError as exc:
        raise MetasignalError(str(exc)) from None
    finally:
        transport.close()
    print(json.dumps({"created": created}))
    return 0


if __name__ == "__main__":  # pragma: no cover - use the `metasignal` entry point
    sys.exit("use the `metasignal` command")
