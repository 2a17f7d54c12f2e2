"""``metasignal demo``: the end-to-end demo (imported when run: it pulls in the scorer)."""

from __future__ import annotations

import argparse


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
