"""The scorer at a steady 1,000 votes/s: CPU per process and p99 vote-to-signal, before/after.

``python -m bench.stream_steady --out docs/benchmarks.md [--quick]`` starts a private broker
(``tests/kafka_broker.py``), then for each Kafka client (kafka-python, confluent) and mode
(at-least-once, exactly-once) paces votes at 1,000/s into one scorer worker process
(:mod:`bench.stream_worker`) and measures, in the same run and interleaved:

* **CPU** of the whole worker process (every thread: the clients' I/O threads too) over its
  steady window, as a share of one core and in µs per vote;
* **p99 vote-to-signal**: each vote's send time in this process to its signal's arrival at
  a consumer here (``read_committed`` exactly-once), as :func:`bench.stream_broker.paced_latency`.

Each configuration runs on two codes: **main** (the commit given by ``--baseline``, unpacked
with ``git archive`` and run from its own directory, so its worker imports its own scorer)
and **this tree** with its defaults; ratios compare the two in the same run. The markdown
lands between the ``stream-steady`` markers of ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import stream_broker
from bench.machine import cpu_model, load_average
from bench.markdown import markers, write_section
from bench.stream_broker import (
    MODES,
    Bench,
    LatencyRun,
    LatencySpec,
    Worker,
    create_topics,
    paced_latency,
    publish_artifact,
)
from bench.stream_data import SIGNING_KEY, Inputs, build_inputs, encoded_votes

log = logging.getLogger("bench.stream_steady")

BEGIN, END = markers("stream-steady")
SECTION = "stream-steady"
REPO = Path(__file__).resolve().parent.parent
RATE = 1_000.0
CLIENTS = ("kafka-python", "confluent")
# (label, which code, scorer options): main as it was, this tree as shipped, and this tree
# polling again at once after a partial batch (what the linger saves).
CODES: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] = (
    ("main", "main", ()),
    ("this tree", "this tree", ()),
    ("this tree, no poll linger", "this tree", (("poll_linger_ms", 0.0),)),
    ("this tree, poll linger 15 ms", "this tree", (("poll_linger_ms", 15.0),)),
)
STEP_BATCHES = (1, 5, 20, 100)
P99_GOALS_MS = {"at-least-once": 25.0, "exactly-once": 50.0}


@contextlib.contextmanager
def code_root(root: Path) -> Iterator[None]:
    """Workers started inside run ``python -m bench.stream_worker`` from ``root``: its own
    ``metasignal`` (the repo's folder comes first on ``sys.path``, ahead of the venv's
    editable install) and its own worker."""
    saved = stream_broker.REPO
    stream_broker.REPO = root
    try:
        yield
    finally:
        stream_broker.REPO = saved


@dataclass
class SteadyBench(Bench):
    """A :class:`Bench` whose workers run from ``root`` and whose last events are kept (the
    worker's ``done`` event carries its CPU time)."""

    root: Path = REPO
    last_seen: list[dict[str, Any]] = field(default_factory=list)

    def worker(self, kind: str, mode: str, **options: Any) -> tuple[Worker, str]:
        with code_root(self.root):
            return super().worker(kind, mode, **options)

    def start(
        self, kind: str, mode: str, *, attempts: int = 3, **options: Any
    ) -> tuple[Worker, str, list[dict[str, Any]]]:
        worker, prefix, seen = super().start(kind, mode, attempts=attempts, **options)
        self.last_seen = seen
        return worker, prefix, seen


@dataclass
class SteadyRun:
    code: str
    client: str
    mode: str
    latency: LatencyRun
    cpu_s: float
    window_s: float
    votes: int
    batches: int
    threads_cpu: dict[str, float]

    @property
    def core_share(self) -> float:
        return self.cpu_s / self.window_s if self.window_s > 0 else float("nan")

    @property
    def votes_per_batch(self) -> float:
        return self.votes / self.batches if self.batches else float("nan")

    @property
    def us_per_vote(self) -> float:
        return 1e6 * self.cpu_s / self.votes if self.votes else float("nan")


def step_costs(inputs: Inputs, *, votes: int = 5000, repeats: int = 3) -> dict[int, float]:
    """CPU µs per :meth:`Scorer.step` on the memory bus (no Kafka client) by batch size: the
    loop's own fixed and per-vote costs, median of ``repeats``."""
    from metasignal.stream.scorer import Scorer, ScorerOptions
    from metasignal.stream.topics import Topics, topic_specs
    from metasignal.stream.transport.memory import MemoryBus

    messages = encoded_votes(inputs.committee, 0, votes + 1000)  # 500 warm up, the rest spare
    out: dict[int, list[float]] = {size: [] for size in STEP_BATCHES}
    for rep in range(repeats):
        for size in STEP_BATCHES:
            topics = Topics(prefix=f"steady{rep}-{size}.")
            bus = MemoryBus()
            bus.create_topics(topic_specs(topics, partitions=1))
            producer = bus.producer()
            producer.send(topics.models, key=b"meta@1", value=inputs.artifact)
            for key, value in messages:
                producer.send(topics.votes, key=key, value=value)
            scorer = Scorer(
                transport=bus,
                options=ScorerOptions(topics=topics, batch_size=size, poll_timeout_ms=1),
                keys=[SIGNING_KEY],
            )
            scorer.load_models(timeout_s=5)
            warm = 0
            while warm < 500:  # warm up before the clock starts
                warm += scorer.step()
            started, n, steps = time.process_time(), 0, 0
            while n < votes:
                n += scorer.step()
                steps += 1
            out[size].append(1e6 * (time.process_time() - started) / steps)
            scorer.close()
    return {size: float(np.median(values)) for size, values in out.items()}


def unpack(commit: str, into: Path) -> str:
    """``git archive`` of ``commit`` into ``into``; returns its short hash."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return subprocess.run(
        ["git", "rev-parse", "--short", commit], cwd=REPO, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip


def tree_description() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "stream", "bench")
    return f"{git('rev-parse', '--short', 'HEAD')}{' + local edits' if dirty else ''}"


def run(
    *, baseline: str, seconds: float, warmup_s: float, repeats: int, clients: Sequence[str],
    workdir: Path,
) -> tuple[list[SteadyRun], str, float]:  # fmt: skip
    """Every (code, client, mode) ``repeats`` times, alternating order; returns the runs, the
    baseline's short hash and the broker start-up time."""
    from tests.kafka_broker import LocalKafka

    main_root = workdir / "main"
    main_hash = unpack(baseline, main_root)
    inputs = build_inputs(max(int(RATE * seconds), 6000))
    broker = LocalKafka(data_dir=workdir / "kafka")
    started = time.perf_counter()
    bootstrap = broker.start(timeout=180)
    broker_s = time.perf_counter() - started
    benches = {
        "main": SteadyBench(bootstrap, "bench.votes", "bench.models", workdir, root=main_root),
        "this tree": SteadyBench(bootstrap, "bench.votes", "bench.models", workdir, root=REPO),
    }
    configs = [(code, client, mode) for client in clients for mode in MODES for code in CODES]
    runs: list[SteadyRun] = []
    try:
        create_topics(bootstrap, ["bench.votes", "bench.models"])
        publish_artifact(bootstrap, "bench.models", inputs.artifact)
        for rep in range(repeats):
            for (label, code, options), client, mode in configs if rep % 2 == 0 else configs[::-1]:
                bench = benches[code]
                spec = LatencySpec("scorer", mode, client=client, scorer_options=options)
                latency = paced_latency(
                    bench, spec, inputs, rate=RATE, seconds=seconds, warmup_s=warmup_s
                )
                done = next((e for e in bench.last_seen if e["event"] == "done"), {})
                steady = SteadyRun(
                    code=label, client=client, mode=mode, latency=latency,
                    cpu_s=float(done.get("steady_cpu_s", float("nan"))),
                    window_s=float(done.get("steady_s", float("nan"))),
                    votes=int(done.get("steady_votes", 0)),
                    batches=int(done.get("batches", 0)),
                    threads_cpu=dict(done.get("threads_cpu") or {}),
                )  # fmt: skip
                log.info(
                    "%s %s %s: %.2f core, %.0f µs/vote, %.1f votes/batch, p99 %.1f ms, "
                    "threads %s", label, client, mode, steady.core_share, steady.us_per_vote,
                    steady.votes_per_batch, latency.percentile(99),
                    {k: round(v, 1) for k, v in steady.threads_cpu.items()},
                )  # fmt: skip
                runs.append(steady)
    finally:
        broker.stop()
    return runs, main_hash, broker_s


def pooled(runs: Sequence[SteadyRun], code: str, client: str, mode: str) -> list[SteadyRun]:
    return [r for r in runs if (r.code, r.client, r.mode) == (code, client, mode)]


def render(
    runs: Sequence[SteadyRun], costs: dict[int, float], *, command: str, main_hash: str,
    seconds: float, warmup_s: float, repeats: int, load: tuple[float, float, float],
    elapsed_s: float,
) -> str:  # fmt: skip
    lines = [
        BEGIN,
        "## Stream: the scorer at a steady 1,000 votes/s (lean commits, issue 12 §2)",
        "",
        f"Command: `{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed_s / 60:.0f} min; "
        f"this tree {tree_description()} against main {main_hash}, run from its own `git "
        "archive`, interleaved in the same run on one private broker.",
        "",
        f"Machine: 2 shared cores ({cpu_model()}), load average at start "
        f"{load_average(load)}, python {platform.python_version()}; the benchmark ran under "
        "`nice -n -20` (root) so the worker under test gets a core despite other tenants. "
        "Absolute figures move between runs on this machine; compare the ratios.",
        "",
        f"Each run paces {RATE:,.0f} votes/s for {seconds:.0f} s into a fresh scorer worker "
        "process (`bench/stream_worker.py`, batch size 500, poll 100 ms, outcome tracking "
        "on, 8 members) with the code's default commit settings: main commits every poll "
        "batch; this tree commits every 0.25 s at-least-once and every 0.02 s exactly-once "
        "(or 2,000 records, whichever first) and waits 5 ms after a partial batch before "
        "polling again (`--poll-linger-ms`; *no poll linger* sets it to 0). *CPU* is the "
        "worker process's CPU time (all threads) over its steady window (first to last "
        "batch), per wall second (share of one core) and per vote. *p99* pools every vote "
        f"after the first {warmup_s:.0f} s of each run: its send time here to its signal's "
        "arrival at a consumer here (`read_committed` exactly-once). "
        f"{repeats} runs per row, order alternating per repeat.",
        "",
        "| client | mode | code | CPU (share of a core) | CPU µs/vote | CPU vs main | "
        "votes/batch | p50 ms | p99 ms | p99 goal | p99 per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for client in CLIENTS:
        for mode in MODES:
            base = pooled(runs, "main", client, mode)
            if not base:
                continue
            base_cpu = float(np.median([r.core_share for r in base]))
            for code in [label for label, _, _ in CODES]:
                rs = pooled(runs, code, client, mode)
                if not rs:
                    continue
                share = float(np.median([r.core_share for r in rs]))
                per_vote = float(np.median([r.us_per_vote for r in rs]))
                per_batch = float(np.median([r.votes_per_batch for r in rs]))
                lat = np.concatenate([r.latency.latencies_ms for r in rs])
                p99 = float(np.percentile(lat, 99))
                goal = P99_GOALS_MS[mode]
                met = "met" if p99 <= goal else "**missed**"
                per_run = ", ".join(f"{r.latency.percentile(99):.0f}" for r in rs)
                lines.append(
                    f"| {client} | {mode} | {code} | {share:.2f} | {per_vote:.0f} | "
                    f"×{share / base_cpu:.2f} | {per_batch:.1f} | "
                    f"{np.percentile(lat, 50):.1f} | {p99:.1f} | "
                    f"≤ {goal:.0f}: {met} | {per_run} |"
                )
    lines += [
        "",
        "*CPU vs main* is the median share of a core against main's in the same client and "
        "mode (below 1: leaner). Latency at-least-once does not depend on the commit interval "
        "(signals are sent at once; the interval bounds what a crash re-delivers); "
        "exactly-once signals become visible at commit, so their latency is at most the "
        "interval plus one batch and the commit itself (`docs/operations.md`, *Delivery "
        "guarantees*).",
        "",
        "What a batch costs the scorer loop itself: `Scorer.step` on the memory bus (no Kafka "
        "client; outcome tracking, drift monitors, metrics on), CPU per step by batch size, "
        "median of 3 (`step_costs` in `bench/stream_steady.py`). The per-batch part is what "
        "larger batches save at a steady rate:",
        "",
        "| votes per batch | CPU µs per step | CPU µs per vote |",
        "|---|---|---|",
        *(f"| {size} | {cost:,.0f} | {cost / size:,.1f} |" for size, cost in sorted(costs.items())),
        END,
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_steady", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--baseline", default="main", help="the commit to compare against")
    parser.add_argument("--seconds", type=float, default=20.0, help="paced seconds per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--quick", action="store_true", help="8 s runs, one repeat")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seconds, repeats = (8.0, 1) if ns.quick else (ns.seconds, ns.repeats)
    warmup_s = min(3.0, seconds / 4)
    load = os.getloadavg()
    started = time.perf_counter()
    costs = step_costs(build_inputs(6000))
    with tempfile.TemporaryDirectory(prefix="bench-steady-") as tmp:
        runs, main_hash, _ = run(
            baseline=ns.baseline, seconds=seconds, warmup_s=warmup_s, repeats=repeats,
            clients=ns.clients.split(","), workdir=Path(tmp),
        )  # fmt: skip
    command = "nice -n -20 python -m bench.stream_steady " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    section = render(
        runs, costs, command=command.strip(), main_hash=main_hash, seconds=seconds,
        warmup_s=warmup_s, repeats=repeats, load=load, elapsed_s=time.perf_counter() - started,
    )  # fmt: skip
    write_section(ns.out, SECTION, section)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
