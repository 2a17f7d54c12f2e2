"""One consume->produce worker process for :mod:`bench.stream`: the scorer, a bare passthrough
or the Quix Streams app doing the same scoring (:mod:`bench.stream_quix`, run in its own venv).

``python -m bench.stream_worker {scorer,passthrough,quix} --bootstrap HOST:PORT [--client
{kafka-python,confluent}] ...`` reads the
vote topic in a fresh consumer group and prints JSON lines on stdout:

* ``{"event": "ready", ...}`` once the group has assigned it the vote partition;
* ``{"event": "progress", "votes": n, "rss": bytes, ...}`` every ``--progress-every`` votes;
* ``{"event": "done", ...}`` with timings, CPU time per thread and RSS when it stops;
* ``{"event": "stuck", ...}`` (exit code 3) if the group gave it no partition in time.

It stops after ``--count`` votes, or on SIGTERM/SIGINT (``--count 0``) once the batch in
hand is finished. Each worker runs in its own process so that the two implementations get
the same interpreter (own GIL) and the RSS belongs to the scorer alone.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psutil

from metasignal.stream.transport import KAFKA_CLIENTS
from metasignal.stream.transport.kafka import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    PRODUCER_GUARANTEES,
    TRANSACTIONAL_DEFAULTS,
)
from metasignal.stream.transport.rebalance_fix import finish_interrupted_rebalances

BATCH_SIZE = 500
POLL_TIMEOUT_MS = 100
# The passthrough runs bare kafka-python with the scorer's own client settings (and client fix).
PRODUCER_SETTINGS: dict[str, Any] = {**PRODUCER_GUARANTEES, **PRODUCER_DEFAULTS}
CONSUMER_SETTINGS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "isolation_level": "read_committed",
    **CONSUMER_DEFAULTS,
}


@dataclass(frozen=True)
class WorkerArgs:
    """Parsed command line (typed, so the loops below are checked)."""

    kind: str
    client: str
    bootstrap: str
    votes_topic: str
    models_topic: str
    out_prefix: str
    group: str
    exactly_once: bool
    count: int
    batch_size: int
    poll_timeout_ms: int
    progress_every: int
    profile: str | None
    signing_key: str
    client_config: dict[str, Any]
    phase_timing: bool
    scorer_options: dict[str, Any]
    ready_timeout_s: float


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout; flushed so the parent sees it at once."""
    print(json.dumps({"event": event, **fields}), flush=True)


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) per thread name: who burns the one GIL."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = names.get(t.id, f"native-{t.id}")
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return out


class Loop:
    """Bookkeeping shared by both workers: readiness, progress, the sustained-rate window."""

    def __init__(
        self,
        args: WorkerArgs,
        stop: threading.Event,
        profiler: cProfile.Profile | None = None,
        timer: PhaseTimer | None = None,
    ) -> None:
        self.args = args
        self.stop = stop
        self.profiler = profiler
        self.timer = timer
        self.process = psutil.Process()
        self.started = time.perf_counter()
        self.votes = 0
        self.batches = 0
        self.ready = False
        self.first_batch = 0
        self.t_first_end: float | None = None
        self.t_last_end: float | None = None
        # Process CPU (all threads) at the window's ends: start-up imports stay out of it.
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self._next_progress = args.progress_every or 0
        self.threads_cpu: dict[str, float] = {}

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def announce_ready(self, assigned: bool) -> None:
        if assigned and not self.ready:
            self.ready = True
            emit("ready", startup_s=time.perf_counter() - self.started, rss=self.rss())
        elif not assigned and time.perf_counter() - self.started > self.args.ready_timeout_s:
            # kafka-python sometimes joins with an empty assignment ("No partition metadata
            # for topic ...") and stays there for minutes; the parent restarts the worker.
            emit("stuck", after_s=time.perf_counter() - self.started)
            raise SystemExit(3)

    def after_batch(self, n: int) -> None:
        if n == 0:
            return
        self.votes += n
        self.batches += 1
        self.t_last_end = time.perf_counter()
        self.cpu_last = time.process_time()
        if self.t_first_end is None:
            # The first batch carries the group join; the sustained rate starts after it.
            self.t_first_end = self.t_last_end
            self.cpu_first = self.cpu_last
            self.first_batch = n
            if self.profiler is not None:
                self.profiler.enable()
            if self.timer is not None and self.args.count > 0:
                # Pre-loaded votes: time the sustained window only, not the join.
                self.timer.reset()
        if self._next_progress and self.votes >= self._next_progress:
            emit("progress", votes=self.votes, rss=self.rss(), t=time.perf_counter())
            self._next_progress += self.args.progress_every

    def end_window(self) -> None:
        """Stop the profiler and read per-thread CPU before close() ends the client threads."""
        if self.profiler is not None:
            self.profiler.disable()
        self.threads_cpu = thread_cpu()

    def finished(self) -> bool:
        return self.stop.is_set() or (self.args.count > 0 and self.votes >= self.args.count)

    def done(self, **extra: Any) -> None:
        import inspect

        from kafka.record import util

        now = time.perf_counter()
        cpu = self.process.cpu_times()
        # The window ends with the last batch committed, before close() leaves the group.
        t_first = self.t_first_end or now
        steady_votes = self.votes - self.first_batch
        steady_s = (self.t_last_end or now) - t_first
        emit(
            "done",
            votes=self.votes,
            batches=self.batches,
            first_batch=self.first_batch,
            steady_votes=steady_votes,
            steady_s=steady_s,
            rate=steady_votes / steady_s if steady_s > 0 else 0.0,
            wall_s=now - self.started,
            cpu_s=cpu.user + cpu.system,
            steady_cpu_s=self.cpu_last - self.cpu_first,
            threads_cpu=self.threads_cpu or thread_cpu(),
            rss=self.rss(),
            # kafka-python checks fetched batches with a C CRC-32C only if `crc32c` imports.
            crc32c="C extension" if inspect.isbuiltin(util._crc32c) else "pure Python",
            **extra,
        )


def run_scorer(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """The real :class:`metasignal.stream.scorer.Scorer` on the real Kafka transport."""
    from bench.stream_topics import BenchTopics
    from metasignal.stream.cli import freeze_startup_heap
    from metasignal.stream.scorer import Scorer, ScorerOptions
    from metasignal.stream.transport import kafka_transport

    topics = BenchTopics(
        prefix=args.out_prefix, shared_votes=args.votes_topic, shared_models=args.models_topic
    )
    transport = kafka_transport(
        args.bootstrap,
        client=args.client,
        client_id="bench-scorer",
        client_config=args.client_config,
    )
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(
            **{
                "topics": topics,
                "group_id": args.group,
                "batch_size": args.batch_size,
                "poll_timeout_ms": args.poll_timeout_ms,
                "exactly_once": args.exactly_once,
                "transactional_id": f"{args.group}-tx" if args.exactly_once else None,
                # The votes are pre-loaded once per session, minutes before the later runs
                # (the profiles come last): without this they would be scored as a stale
                # backlog, every signal no-trade, on the per-signal path of stale batches.
                "max_vote_age_s": 0.0,
                # --scorer-options win (a what-if, or a knob given to the whole run).
                **args.scorer_options,
            }
        ),
        keys=[args.signing_key.encode()],
    )
    try:
        scorer.load_models()
        if scorer.models.current is None:
            raise SystemExit("bench worker: no model on the models topic")
        freeze_startup_heap()  # as `metasignal scorer` does once it has started
        emit("loaded", rss=loop.rss())
        while not loop.finished():
            n = scorer.step()
            if not loop.ready:
                loop.announce_ready(bool(scorer.assignment()))
            loop.after_batch(n)
        loop.end_window()
    finally:
        scorer.close()
    return {"signals": scorer.stats.signals, "dlq": scorer.stats.dlq}


def run_passthrough(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """The bare client the scorer runs on, forwarding votes: no scoring."""
    if args.client == "confluent":
        return run_confluent_passthrough(args, loop)
    return run_kafka_python_passthrough(args, loop)


def run_kafka_python_passthrough(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """Bare kafka-python: the same poll, batch, producer and commit pattern, no scoring."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata

    out_topic = f"{args.out_prefix}signals"
    settings = dict(PRODUCER_SETTINGS)
    if args.exactly_once:
        settings["transactional_id"] = f"{args.group}-tx"
        settings.update(TRANSACTIONAL_DEFAULTS)
    producer = KafkaProducer(
        bootstrap_servers=[args.bootstrap],
        client_id="bench-passthrough",
        **{**settings, **args.client_config},
    )
    if args.exactly_once:
        producer.init_transactions()
    consumer = KafkaConsumer(
        bootstrap_servers=[args.bootstrap],
        client_id="bench-passthrough",
        group_id=args.group,
        **{**CONSUMER_SETTINGS, **args.client_config},
    )
    finish_interrupted_rebalances(consumer)  # as the scorer's consumer: the same client fix
    consumer.subscribe([args.votes_topic])
    emit("loaded", rss=loop.rss())
    sent = 0
    try:
        while not loop.finished():
            polled = consumer.poll(timeout_ms=args.poll_timeout_ms, max_records=args.batch_size)
            if not loop.ready:
                loop.announce_ready(bool(consumer.assignment()))
            if not polled:
                continue
            offsets = {}
            n = 0
            if args.exactly_once:
                producer.begin_transaction()
            for tp, records in polled.items():
                for record in records:
                    producer.send(out_topic, key=record.key, value=record.value)
                n += len(records)
                offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            if args.exactly_once:
                producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
                producer.commit_transaction()
            else:
                producer.flush()
                consumer.commit(offsets)
            sent += n
            loop.after_batch(n)
        loop.end_window()
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return {"signals": sent, "dlq": 0}


def run_confluent_passthrough(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """Bare confluent-kafka as its users write it: ``consume`` a batch, ``produce`` each
    record, then flush and commit (or one transaction per batch), with the settings the
    confluent transport gives the scorer."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    from metasignal.stream.transport import confluent

    out_topic = f"{args.out_prefix}signals"
    common = {"bootstrap.servers": args.bootstrap, "client.id": "bench-passthrough"}
    extra = confluent.translate(args.client_config)
    settings = {**confluent.PRODUCER_DEFAULTS, **common, **extra, **confluent.PRODUCER_GUARANTEES}
    if args.exactly_once:
        settings.update(confluent.TRANSACTIONAL_DEFAULTS)
        settings["transactional.id"] = f"{args.group}-tx"
    producer = Producer(settings)
    if args.exactly_once:
        producer.init_transactions()
    consumer = Consumer(
        {
            **confluent.CONSUMER_DEFAULTS,
            **common,
            **extra,
            **confluent.CONSUMER_GUARANTEES,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([args.votes_topic])
    emit("loaded", rss=loop.rss())
    sent = 0
    produce = producer.produce
    try:
        while not loop.finished():
            messages = consumer.consume(
                num_messages=args.batch_size, timeout=args.poll_timeout_ms / 1000
            )
            if not loop.ready:
                loop.announce_ready(bool(consumer.assignment()))
            messages = [m for m in messages if m.error() is None]
            if not messages:
                continue
            if args.exactly_once:
                producer.begin_transaction()
            last: dict[tuple[Any, Any], Any] = {}
            for m in messages:
                produce(out_topic, m.value(), m.key())
                last[(m.topic(), m.partition())] = m.offset()
            offsets = [KafkaTopicPartition(t, p, o + 1) for (t, p), o in last.items()]
            if args.exactly_once:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
                producer.commit_transaction()
            else:
                if producer.flush(30):
                    raise SystemExit("bench worker: flush timed out")
                consumer.commit(offsets=offsets, asynchronous=False)
            sent += len(messages)
            loop.after_batch(len(messages))
        loop.end_window()
    finally:
        producer.flush(10)
        consumer.close()
    return {"signals": sent, "dlq": 0}


class PhaseTimer:
    """Wall time of each phase of a scorer step, and of every GC pause.

    Wraps methods of the scorer and its Kafka transport classes in this process only (the
    code under test is not edited); the overhead is two clock reads per call.
    """

    PHASES: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("metasignal.stream.scorer", "Scorer", "step"),
        ("metasignal.stream.model_feed", "ModelFeed", "refresh"),
        ("metasignal.stream.scorer", "Scorer", "process"),
        ("metasignal.stream.lag", "PartitionLag", "update"),
        ("metasignal.stream.transport.kafka", "KafkaTransportConsumer", "poll"),
        ("metasignal.stream.transport.kafka", "KafkaTransportConsumer", "commit"),
        ("metasignal.stream.transport.kafka", "KafkaTransportProducer", "flush"),
        ("metasignal.stream.transport.kafka", "KafkaTransportProducer", "commit_transaction"),
        ("metasignal.stream.transport.confluent", "ConfluentConsumer", "poll"),
        ("metasignal.stream.transport.confluent", "ConfluentConsumer", "commit"),
        ("metasignal.stream.transport.confluent", "ConfluentProducer", "flush"),
        ("metasignal.stream.transport.confluent", "ConfluentProducer", "commit_transaction"),
    )

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self._gc_started = 0.0

    def reset(self) -> None:
        for values in self.samples.values():
            values.clear()

    def install(self) -> None:
        import gc
        import importlib

        for module_name, class_name, method in self.PHASES:
            cls = getattr(importlib.import_module(module_name), class_name)
            setattr(cls, method, self._wrap(f"{class_name}.{method}", getattr(cls, method)))
        gc.callbacks.append(self._on_gc)

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        samples = self.samples.setdefault(name, [])
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return func(*args, **kwargs)
            finally:
                samples.append(clock() - started)

        return timed

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            name = f"gc generation {info['generation']}"
            self.samples.setdefault(name, []).append(time.perf_counter() - self._gc_started)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per phase: calls, p50/p99/max in ms and total seconds."""
        import numpy as np

        out = {}
        for name, values in self.samples.items():
            if not values:
                continue
            ms = 1e3 * np.asarray(values)
            out[name] = {
                "calls": float(ms.size),
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "max_ms": float(ms.max()),
                "total_s": float(ms.sum() / 1e3),
            }
        return out


def run_quix(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """The Quix Streams app (imported here: quixstreams is installed in its own venv only)."""
    from bench import stream_quix

    return stream_quix.run_quix(args, loop)


WORKERS: dict[str, Callable[[WorkerArgs, Loop], dict[str, Any]]] = {
    "scorer": run_scorer,
    "passthrough": run_passthrough,
    "quix": run_quix,
}


def parse(argv: Sequence[str] | None) -> WorkerArgs:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_worker", description=__doc__)
    parser.add_argument("kind", choices=sorted(WORKERS))
    parser.add_argument("--client", choices=KAFKA_CLIENTS, default=KAFKA_CLIENTS[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--votes-topic", required=True)
    parser.add_argument("--models-topic", default="")
    parser.add_argument("--out-prefix", required=True, help="output topics are PREFIX+signals…")
    parser.add_argument("--group", required=True)
    parser.add_argument("--exactly-once", action="store_true")
    parser.add_argument("--count", type=int, default=0, help="stop after N votes (0: on SIGTERM)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--poll-timeout-ms", type=int, default=POLL_TIMEOUT_MS)
    parser.add_argument("--progress-every", type=int, default=0)
    parser.add_argument(
        "--ready-timeout", type=float, default=30.0, help="exit 3 if unassigned after S seconds"
    )
    parser.add_argument("--profile", help="write cProfile stats of the main thread here")
    parser.add_argument(
        "--phase-timing",
        action="store_true",
        help="time each scorer phase and GC pause (for tail-latency diagnosis)",
    )
    parser.add_argument(
        "--scorer-options",
        default="{}",
        help="JSON of extra ScorerOptions fields, e.g. '{\"track_outcomes\": false}' (what-if)",
    )
    parser.add_argument(
        "--client-config",
        default="{}",
        help="JSON of extra client settings for every client (a what-if knob)",
    )
    ns = parser.parse_args(argv)
    return WorkerArgs(
        kind=ns.kind,
        client=ns.client,
        bootstrap=ns.bootstrap,
        votes_topic=ns.votes_topic,
        models_topic=ns.models_topic,
        out_prefix=ns.out_prefix,
        group=ns.group,
        exactly_once=ns.exactly_once,
        count=ns.count,
        batch_size=ns.batch_size,
        poll_timeout_ms=ns.poll_timeout_ms,
        progress_every=ns.progress_every,
        profile=ns.profile,
        # The key travels by environment, like the service's METASIGNAL_SIGNING_KEY.
        signing_key=os.environ.get("METASIGNAL_SIGNING_KEY", ""),
        client_config=json.loads(ns.client_config),
        phase_timing=ns.phase_timing,
        scorer_options=json.loads(ns.scorer_options),
        ready_timeout_s=ns.ready_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # The profile covers the sustained window only (from the end of the first batch), so
    # imports, connecting and the group join stay out of it.
    profiler = cProfile.Profile() if args.profile else None
    timer = PhaseTimer() if args.phase_timing else None
    if timer is not None:
        timer.install()
    loop = Loop(args, stop, profiler, timer)
    try:
        extra = WORKERS[args.kind](args, loop)
    finally:
        if profiler is not None:
            profiler.disable()
            assert args.profile is not None
            profiler.dump_stats(args.profile)
    if timer is not None:
        extra["phases"] = timer.summary()
    loop.done(**extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
