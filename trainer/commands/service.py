"""``metasignal trainer``: the service that answers re-tune/retrain requests behind the gate."""

from __future__ import annotations

import argparse
import logging

from metasignal.stream.artifact import resolve_signing_keys
from metasignal.stream.config import kafka_client_config, options_from_args
from metasignal.stream.errors import MetasignalError
from metasignal.trainer.settings import TrainerOptions

log = logging.getLogger("metasignal")


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
