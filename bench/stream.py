"""Streaming benchmark: the scorer's hot path, throughput, latency and memory on real Kafka.

``python -m bench.stream --out docs/benchmarks.md [--quick]`` measures

1. in-process, one thread: decode + score + encode votes/s of the work in
   ``Scorer.process`` (batches of 500, no broker) and its split, with the shipped decoder
   (``orjson``) against the stdlib ``json``;
2. on a real broker (``tests.kafka_broker.LocalKafka`` on free ports, temporary data dir):
   sustained votes/s of one scorer on one partition against the bare consume->produce
   passthrough of the same Kafka client, for each client (kafka-python and confluent-kafka),
   and against a Quix Streams app doing the same scoring (:mod:`bench.stream_quix`, its
   decisions checked identical to the scorer's), at-least-once and exactly-once, as ratios
   of runs made back to back in the same broker session, the workers interleaved;
3. vote-to-signal latency p50/p99 and the worker's CPU at a steady 1,000 votes/s, each
   client and the Quix Streams app;
4. the scorer process's RSS across 1,000,000 votes.

The goals of issue 12 are judged in the same run and listed under *Goals*.

What-if rows rerun the same code with one knob changed (kafka-python's pure-Python CRC-32C
instead of the ``crc32c`` extension, ``track_outcomes=False``) to
show what it costs or would buy; a mode that misses a goal gets a cProfile and per-phase
wall times of the scorer.

The markdown lands between the ``stream`` markers of ``--out``; the rest of the file (the
trainer's section) is left alone. ``--parts inproc`` needs no broker (the smoke test);
``--skip-crc-what-if`` leaves out the pure-Python CRC row. ``--plan reduced`` (about
20-30 minutes on the shared 2-core machine) keeps every comparison and goal with fewer
votes and repeats and without the what-if rows; ``--plan quick`` (or ``--quick``) is a smoke
run. The Quix Streams app needs its own venv (``make bench-quix-env``; ``--quix-python``);
without it its rows and goals are reported as not run.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bench import markdown
from bench.machine import cpu_model, load_average
from bench.markdown import markers
from bench.stream_broker import (
    KINDS,
    MODES,
    QUIX_KIND,
    SHIPPED,
    STALL_P50_MS,
    Bench,
    LatencyRun,
    LatencySpec,
    MemoryResult,
    ProfileResult,
    ThroughputResult,
    Variant,
    create_topics,
    decisions,
    median,
    preload,
    publish_artifact,
    run_latency,
    run_memory,
    run_profile,
    run_throughput,
)
from bench.stream_data import Inputs, build_inputs
from bench.stream_goals import (
    CLIENT_VARIANTS,
    CONFLUENT,
    P99_GOALS_MS,
    QUIX,
    RATIO_GOALS,
    cpu_cores,
    evaluate,
    pooled_latency,
    render_goals,
    render_quix,
)
from bench.stream_inproc import (
    BATCH_SIZE,
    STDLIB,
    InprocResult,
    run_inproc,
)
from bench.stream_quix import QUIX_VENV
from bench.stream_worker import POLL_TIMEOUT_MS, PRODUCER_SETTINGS

SECTION = "stream"
BEGIN, END = markers(SECTION)
PARTS = ("inproc", "throughput", "latency", "memory")
REPO = Path(__file__).resolve().parent.parent
RSS_GOAL_MB = 250.0
LATENCY_RATE = 1_000.0
# kafka-python checks the CRC-32C of every fetched batch (and computes it for every produced
# one) with the `crc32c` extension, a dependency; the what-if hides it from both workers, so
# kafka-python falls back to its pure-Python loop, as it did before the dependency.
PURE_CRC_LABEL = "pure-Python CRC-32C"
# A scorer that joins outcomes also subscribes to the outcomes topic and keeps a join cache;
# the what-if turns that off to show what it costs (when ScorerOptions has the switch).
NO_OUTCOMES = (("track_outcomes", False),)
NO_OUTCOMES_LABEL = "track_outcomes=False"


log = logging.getLogger("bench.stream")


def scorer_has_option(name: str) -> bool:
    """Whether this checkout's ``ScorerOptions`` has ``name`` (what-ifs adapt to the code)."""
    from metasignal.stream.scorer import ScorerOptions

    return name in {f.name for f in dataclasses.fields(ScorerOptions)}


@dataclass(frozen=True)
class Plan:
    """Sizes of a run: the full one, ``reduced`` (every comparison, fewer votes and repeats,
    no what-ifs) and ``quick`` (a smoke run)."""

    inproc_votes: int
    inproc_repeats: int
    tp_votes: int
    tp_repeats: int
    lat_seconds: float
    lat_repeats: int
    lat_warmup_s: float
    mem_votes: int
    what_ifs: bool = True


FULL = Plan(
    inproc_votes=20_000,
    inproc_repeats=15,
    tp_votes=200_000,
    tp_repeats=5,
    lat_seconds=20.0,
    lat_repeats=2,
    lat_warmup_s=2.0,
    mem_votes=1_000_000,
)
REDUCED = Plan(
    inproc_votes=20_000,
    inproc_repeats=9,
    tp_votes=100_000,
    tp_repeats=2,
    lat_seconds=15.0,
    lat_repeats=1,
    lat_warmup_s=2.0,
    mem_votes=300_000,
    what_ifs=False,
)
QUICK = Plan(
    inproc_votes=10_000,
    inproc_repeats=5,
    tp_votes=20_000,
    tp_repeats=1,
    lat_seconds=8.0,
    lat_repeats=1,
    lat_warmup_s=2.0,
    mem_votes=50_000,
    what_ifs=False,
)
PLANS = {"full": FULL, "reduced": REDUCED, "quick": QUICK}


@dataclass
class Results:
    """Everything measured; a part that was not run (or failed) stays ``None``."""

    inproc: InprocResult | None = None
    throughput: ThroughputResult | None = None
    latency: list[LatencyRun] | None = None
    latency_diagnosis: list[LatencyRun] = field(default_factory=list)
    memory: MemoryResult | None = None
    profiles: list[ProfileResult] = field(default_factory=list)
    preload_s: float | None = None
    preloaded: int = 0
    broker_start_s: float | None = None
    restarts: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    # mode -> (votes compared, decisions that differ) between the scorer and the Quix app
    identical: dict[str, tuple[int, int]] = field(default_factory=dict)
    quix: str = ""  # versions in the Quix Streams venv, if the app was part of the run
    quix_score_us: float = float("nan")  # in-process µs per vote of the Quix app's `score`
    scorer_options: dict[str, Any] = field(default_factory=dict)  # --scorer-option, applied


# --------------------------------------------------------------------------- running


def run_broker_parts(
    results: Results,
    inputs: Inputs,
    plan: Plan,
    parts: Sequence[str],
    *,
    crc32c: bool,
    quix_python: Path | None,
    scorer_defaults: dict[str, Any],
) -> None:
    """Start a private broker, run the selected broker parts, always stop it."""
    from tests.kafka_broker import LocalKafka

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        workdir = Path(tmp)
        broker = LocalKafka(data_dir=workdir / "kafka")
        started = time.perf_counter()
        bootstrap = broker.start(timeout=180)
        results.broker_start_s = time.perf_counter() - started
        log.info("broker up at %s in %.1f s", bootstrap, results.broker_start_s)
        try:
            bench = Bench(
                bootstrap, "bench.votes", "bench.models", workdir, quix_python=quix_python,
                scorer_defaults=scorer_defaults,
            )  # fmt: skip
            create_topics(bootstrap, [bench.votes_topic, bench.models_topic])
            publish_artifact(bootstrap, bench.models_topic, inputs.artifact)
            # One pre-loaded topic serves every throughput run and the memory run.
            n = max(
                plan.tp_votes if "throughput" in parts else 0,
                plan.mem_votes if "memory" in parts else 0,
            )
            if n:
                log.info("pre-loading %d votes", n)
                results.preload_s = preload(bootstrap, bench.votes_topic, inputs, n)
                results.preloaded = n
            if "throughput" in parts and quix_python is not None:

                def score_cost() -> None:
                    results.quix_score_us = quix_score_cost(inputs)

                guarded(results, "Quix score cost", score_cost)
            if "throughput" in parts:
                guarded(
                    results, "throughput", lambda: throughput_part(results, bench, plan, crc32c)
                )
            if "latency" in parts:
                guarded(results, "latency", lambda: latency_part(results, bench, inputs, plan))
            if "memory" in parts:
                guarded(results, "memory", lambda: memory_part(results, bench, plan))
            guarded(results, "profile", lambda: profile_part(results, bench, plan))
            results.restarts = bench.restarts
            results.discarded = bench.discarded
        finally:
            broker.stop()


def guarded(results: Results, part: str, action: Callable[[], None]) -> None:
    """Run one part; a failure is reported in the markdown instead of losing the others."""
    try:
        action()
    except Exception as exc:  # a benchmark part may fail in many ways; report, go on
        log.exception("%s failed", part)
        results.errors[part] = f"{type(exc).__name__}: {str(exc)[:400]}"


def hide_crc32c(workdir: Path) -> Path:
    """A directory whose ``crc32c`` module fails to import, to put ahead of the venv."""
    directory = workdir / "no-crc32c"
    directory.mkdir(exist_ok=True)
    (directory / "crc32c.py").write_text('raise ImportError("hidden by bench.stream")\n')
    return directory


def throughput_part(results: Results, bench: Bench, plan: Plan, crc32c: bool) -> None:
    """Part 2: both clients and the Quix Streams app in both modes, plus the at-least-once
    what-ifs; then the Quix app's decisions against the scorer's."""
    variants = [SHIPPED, CONFLUENT]
    if bench.quix_python is not None:
        variants.append(QUIX)
    if crc32c and plan.what_ifs:
        variants.append(
            Variant(PURE_CRC_LABEL, hide_crc32c(bench.workdir), modes=("at-least-once",))
        )
    if scorer_has_option("track_outcomes") and plan.what_ifs:
        variants.append(
            Variant(NO_OUTCOMES_LABEL, scorer_options=NO_OUTCOMES, modes=("at-least-once",))
        )
    results.throughput = run_throughput(
        bench, n_votes=plan.tp_votes, repeats=plan.tp_repeats, variants=variants
    )
    if bench.quix_python is not None:
        compare_decisions(results, bench, results.throughput)


def quix_score_cost(inputs: Inputs, n_votes: int = 2_000) -> float:
    """µs per vote of the Quix app's ``score`` in this process, on the benchmark's votes."""
    import orjson

    from bench.stream_data import encoded_votes
    from bench.stream_quix import score_cost_us
    from metasignal.stream.scoring import CompiledModel

    n = min(n_votes, len(inputs.committee.ids))
    documents = [orjson.loads(value) for _, value in encoded_votes(inputs.committee, 0, n)]
    return score_cost_us(CompiledModel.from_artifact(inputs.body), documents)


def compare_decisions(results: Results, bench: Bench, tp: ThroughputResult) -> None:
    """The Quix app's decisions against the scorer's (confluent-kafka), per mode, on the
    first run of each: the same votes, so every event id must get the same decision."""
    for mode in MODES:
        scorer = tp.runs_of(mode, CONFLUENT.label, "scorer")
        quix = tp.runs_of(mode, QUIX.label, QUIX_KIND)
        if not (scorer and quix):
            continue
        theirs = decisions(bench.bootstrap, quix[0].signals_topic, tp.n_votes)
        ours = decisions(bench.bootstrap, scorer[0].signals_topic, tp.n_votes)
        differ = sum(1 for event_id, d in ours.items() if theirs.get(event_id) != d)
        differ += sum(1 for event_id in theirs if event_id not in ours)
        results.identical[mode] = (len(ours), differ)
        log.info("decisions %s: %d compared, %d differ", mode, len(ours), differ)
        if differ or len(ours) < tp.n_votes:
            raise RuntimeError(
                f"{mode}: the Quix app's decisions differ from the scorer's on {differ} of "
                f"{len(ours)} votes"
            )


def profile_part(results: Results, bench: Bench, plan: Plan) -> None:
    """cProfile the scorer in each mode that misses the throughput or the latency goal."""
    for variant in CLIENT_VARIANTS.values():
        for mode in MODES:
            reasons = []
            tp = results.throughput
            ratio_goal = RATIO_GOALS[variant.client]
            ratios = tp.ratios.get((mode, variant.label)) if tp is not None else None
            if ratios and median(ratios) < ratio_goal:
                reasons.append(f"throughput ratio < {ratio_goal}")
            if results.latency:
                spec = LatencySpec("scorer", mode, client=variant.client)
                pooled = pooled_latency(results.latency, spec)
                if pooled.size and float(np.percentile(pooled, 99)) > P99_GOALS_MS[mode]:
                    reasons.append(f"p99 > {P99_GOALS_MS[mode]:.0f} ms")
            # The profile reads the pre-loaded votes; with none (latency alone) there is no run.
            n_votes = min(plan.tp_votes // 2, results.preloaded)
            if reasons and n_votes:
                log.info(
                    "profiling the scorer (%s, %s): %s", variant.client, mode, ", ".join(reasons)
                )
                profile = run_profile(bench, mode, n_votes=n_votes, client=variant.client)
                profile.reason = ", ".join(reasons)
                results.profiles.append(profile)


def memory_part(results: Results, bench: Bench, plan: Plan) -> None:
    """Part 4."""
    results.memory = run_memory(bench, n_votes=plan.mem_votes)


def latency_part(results: Results, bench: Bench, inputs: Inputs, plan: Plan) -> None:
    """Part 3; a mode whose scorer misses the p99 goal gets a run with every phase timed."""
    specs = [
        LatencySpec(kind, mode, client=variant.client)
        for variant in CLIENT_VARIANTS.values()
        for mode in MODES
        for kind in KINDS
    ]
    if bench.quix_python is not None:
        specs += [LatencySpec(QUIX_KIND, mode, client=QUIX.client) for mode in MODES]
    if scorer_has_option("track_outcomes") and plan.what_ifs:
        specs.append(
            LatencySpec(
                "scorer", "at-least-once", label=NO_OUTCOMES_LABEL, scorer_options=NO_OUTCOMES
            )
        )
    results.latency = run_latency(
        bench, inputs, specs, rate=LATENCY_RATE, seconds=plan.lat_seconds,
        warmup_s=plan.lat_warmup_s, repeats=plan.lat_repeats,
    )  # fmt: skip
    for client, mode in ((v.client, m) for v in CLIENT_VARIANTS.values() for m in MODES):
        pooled = pooled_latency(results.latency, LatencySpec("scorer", mode, client=client))
        if pooled.size and float(np.percentile(pooled, 99)) > P99_GOALS_MS[mode]:
            log.info(
                "p99 above %.0f ms (%s, %s): timing the scorer's phases",
                P99_GOALS_MS[mode], client, mode,
            )  # fmt: skip
            spec = LatencySpec("scorer", mode, phase_timing=True, client=client)
            results.latency_diagnosis += run_latency(
                bench, inputs, [spec], rate=LATENCY_RATE, seconds=plan.lat_seconds,
                warmup_s=plan.lat_warmup_s, repeats=1,
            )  # fmt: skip


def votes_needed(plan: Plan, parts: Sequence[str]) -> int:
    """Committee rows the selected parts read (each part starts at row 0)."""
    sizes = {
        "inproc": plan.inproc_votes,
        "throughput": plan.tp_votes,
        "latency": int(LATENCY_RATE * plan.lat_seconds),
        "memory": plan.mem_votes,
    }
    return max(sizes[p] for p in parts)


def run_benchmark(
    plan: Plan,
    parts: Sequence[str],
    *,
    crc32c: bool,
    command: str,
    code_note: str,
    quix_python: Path | None = None,
    scorer_defaults: dict[str, Any] | None = None,
) -> tuple[str, Results]:
    started = datetime.now(UTC)
    clock = time.perf_counter()
    load = os.getloadavg()
    results = Results(
        quix=quix_versions(quix_python) if quix_python else "",
        scorer_options=dict(scorer_defaults or {}),
    )
    inputs = build_inputs(votes_needed(plan, parts))
    if "inproc" in parts:
        step_options = {NO_OUTCOMES_LABEL: dict(NO_OUTCOMES)}
        results.inproc = run_inproc(
            inputs, n_votes=plan.inproc_votes, repeats=plan.inproc_repeats,
            step_options=step_options if scorer_has_option("track_outcomes") else None,
        )  # fmt: skip
    broker_parts = [p for p in parts if p != "inproc"]
    if broker_parts:
        guarded(
            results,
            "broker",
            lambda: run_broker_parts(
                results,
                inputs,
                plan,
                broker_parts,
                crc32c=crc32c,
                quix_python=quix_python,
                scorer_defaults=scorer_defaults or {},
            ),
        )
    section = render(
        results, plan=plan, parts=parts, command=command, started=started,
        elapsed=time.perf_counter() - clock, load=load, code_note=code_note,
    )  # fmt: skip
    return section, results


# --------------------------------------------------------------------------- rendering


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def goal(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def java_version() -> str:
    try:
        proc = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return "?"
    match = re.search(r'version "([^"]+)"', proc.stderr)
    return match.group(1) if match else "?"


def kafka_version() -> str:
    script = REPO / "deploy" / "kafka" / "local-kafka.sh"
    default = "?"
    try:
        match = re.search(r"METASIGNAL_KAFKA_VERSION:-([0-9.]+)", script.read_text())
        default = match.group(1) if match else "?"
    except OSError:
        pass
    return os.environ.get("METASIGNAL_KAFKA_VERSION", default)


def machine_notes(load: tuple[float, float, float]) -> str:
    cpu = cpu_model()
    import psutil

    ram = psutil.virtual_memory().total / 2**30
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in (
            "numpy",
            "kafka-python",
            "crc32c",
            "confluent-kafka",
            "orjson",
            "prometheus-client",
        )
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {ram:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, load average at start {load_average(load)}, "
        f"benchmark niceness {os.nice(0)} (`nice -n -20` as root gives the measured "
        "processes a core despite the other tenants; the workers inherit it). "
        "Shared and noisy: the broker, the worker under test and other tenants share the two "
        "cores, so absolute votes/s move by ±30 % between runs; compare the ratios, which "
        "pair runs made back to back. Versions: python "
        f"{platform.python_version()}, {versions}, Apache Kafka {kafka_version()} (KRaft, one "
        f"node, `deploy/kafka/local-kafka.sh`), Java {java_version()}."
    )


def quix_versions(python: Path) -> str:
    """quixstreams and the confluent-kafka it pins, as installed in the Quix venv."""
    code = (
        "from importlib.metadata import version as v; "
        "print(f\"quixstreams {v('quixstreams')}, confluent-kafka {v('confluent-kafka')}\")"
    )
    try:
        proc = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "quixstreams ?"
    return proc.stdout.strip()


def code_description() -> str:
    """Which scorer was measured: the commit, and whether stream/ had local edits."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "stream"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"commit {head}" + (" with uncommitted changes in `stream/`" if dirty else "")


def render_inproc(r: InprocResult, results: Results) -> list[str]:
    rows = []
    for v in r.variants:
        total = v.best_us("decode_us") + v.best_us("score_us") + v.best_us("encode_us")

        def share(attr: str, variant: Any = v, whole: float = total) -> str:
            value = variant.best_us(attr)
            return f"{value:.2f} ({100 * value / whole:.0f} %)"

        rows.append(
            [
                v.name,
                share("decode_us"),
                share("score_us"),
                share("encode_us"),
                num(max(v.pipeline_rate)),
                f"{r.ratios[v.name]['pipeline']:.2f}",
                num(max(v.step_rate)),
                f"{r.ratios[v.name]['step']:.2f}",
            ]
        )
    lines = [
        "### 1. In-process hot path (one thread, no broker)",
        "",
        f"{r.n_votes:,} votes of 8 members in batches of {BATCH_SIZE}, {r.repeats} passes per "
        "variant, variants interleaved pass by pass. *Pipeline* is the body of `Scorer.process` "
        "up to the sends: `decode_vote` per record (decode), `vote_matrix` + "
        "`CompiledModel.predict_proba` + `decide` (score), `encode_signal` per signal (encode). "
        "*Scorer.step* runs the real loop iteration on a null transport (sends and commits cost "
        "nothing), so it adds everything else the loop does per batch: metrics, latency "
        "bookkeeping, the model refresh and, if enabled, the outcome join cache. Every figure "
        "is the fastest of the passes (other tenants only ever slow a pass down); *vs stdlib* "
        "divides the fastest passes. The benchmark's own start-up objects (trainer, "
        "scikit-learn) are frozen out of the cyclic GC (`gc.freeze()`) so collections cost "
        "what they would in a scorer that imports only `stream`.",
        "",
        *table(
            [
                "JSON library",
                "decode µs/vote (share)",
                "score µs/vote (share)",
                "encode µs/vote (share)",
                "pipeline votes/s",
                "vs stdlib",
                "Scorer.step votes/s",
                "vs stdlib",
            ],
            rows,
        ),
        "",
        "",
        "The decoder is swapped by replacing `metasignal.stream.messages._load_json` for the "
        "measurement "
        f"(shipped: `orjson.loads`; baseline: `json.loads`). Signals are written by a format "
        "string, no JSON library. Decoded votes and the vote matrix are "
        f"{'identical' if r.output_equal else '**not identical**'} with either decoder.",
    ]
    shipped = r.variants[-1]
    per_vote = {v.name: 1e6 / max(v.step_rate) for v in r.variants}
    saved = per_vote[STDLIB] - per_vote[shipped.name]
    verdict = (
        f"orjson makes the pipeline ×{r.ratios[shipped.name]['pipeline']:.2f} and "
        f"`Scorer.step` ×{r.ratios[shipped.name]['step']:.2f} as fast as the stdlib"
        + (f", {saved:.1f} µs per vote less." if saved > 0 else ": no saving measured this run.")
    )
    tp = results.throughput
    if tp is not None and saved > 0:
        runs = tp.runs_of("at-least-once", SHIPPED.label, "scorer")
        if runs:
            cpu_us = median([run.cpu_us_per_vote for run in runs])
            verdict += (
                f" On the broker (as shipped, at-least-once) the scorer process spends about "
                f"{cpu_us:.0f} µs of CPU per vote, so the stdlib would cost about "
                f"{100 * saved / cpu_us:.0f} % more there."
            )
    total = sum(shipped.best_us(a) for a in ("decode_us", "score_us", "encode_us"))
    lines += [
        "",
        verdict,
        "",
        f"As shipped, `Scorer.step` costs {per_vote[shipped.name]:.1f} µs per vote against "
        f"{total:.1f} µs for the pipeline alone: the rest is the loop's own per-batch and "
        "per-vote bookkeeping.",
    ]
    for label, rates in r.step_with.items():
        lines[-1] += (
            f" With `{label}` it costs {1e6 / max(rates):.1f} µs per vote "
            f"({max(rates):,.0f} votes/s)."
        )
    return lines


def render_throughput(tp: ThroughputResult, results: Results) -> list[str]:
    variants = list(dict.fromkeys(r.variant for r in tp.runs))
    rows = []
    for variant in variants:
        for mode in MODES:
            if (mode, variant) not in tp.ratios:
                continue
            runs = {k: tp.runs_of(mode, variant, k) for k in KINDS}
            ratios = tp.ratios[(mode, variant)]
            cpu = {k: median([r.cpu_us_per_vote for r in runs[k]]) for k in KINDS}
            rows.append(
                [
                    mode,
                    variant,
                    num(median([r.rate for r in runs["scorer"]])),
                    num(median([r.rate for r in runs["passthrough"]])),
                    f"**{median(ratios):.2f}**",
                    f"{min(ratios):.2f}–{max(ratios):.2f}",
                    ratio_goal(variant, median(ratios)),
                    f"{cpu['scorer']:.0f} / {cpu['passthrough']:.0f}",
                    f"{cpu['passthrough'] / cpu['scorer']:.2f}",
                ]
            )
    detail = []
    for r in tp.runs:
        main = r.threads_cpu.get("MainThread", float("nan"))
        detail.append(
            [
                str(r.rep + 1),
                r.mode,
                r.variant,
                r.kind,
                num(r.votes),
                num(r.rate),
                f"{r.steady_s:.1f}",
                f"{r.cpu_us_per_vote:.0f}",
                f"{r.cpu_s:.1f} ({main:.1f})",
                f"{r.steady_cpu_s / max(r.steady_s, 1e-9):.2f}",
                f"{r.startup_s:.1f}",
                mb(r.rss),
                r.crc32c,
            ]
        )
    settings = ", ".join(f"{k}={v}" for k, v in PRODUCER_SETTINGS.items())
    lines = [
        "### 2. Throughput on a real broker: scorer vs the bare passthrough of its client",
        "",
        f"{tp.n_votes:,} votes pre-loaded into one single-partition topic "
        f"({results.preloaded:,} written in {results.preload_s or float('nan'):.0f} s). Each run "
        "is a fresh process (`python -m bench.stream_worker`) in a fresh consumer group with "
        "fresh output topics, reading the same votes: the **scorer** is "
        "`metasignal.stream.scorer.Scorer` "
        "on `KafkaTransport` (kafka-python) or, in the *confluent-kafka* rows, on "
        "`ConfluentTransport` (librdkafka), driven by its own `step()` loop; the **passthrough** "
        "is the bare client of the same row forwarding each record's key and value to its output "
        "topic (confluent-kafka: `consume(num_messages=500)`, `produce` per record, the "
        "transport's librdkafka settings) with the same "
        f"batch size ({BATCH_SIZE}), poll timeout ({POLL_TIMEOUT_MS} ms), producer "
        f"({settings}), consumer (no auto-commit, read_committed) and the same commit pattern: "
        "at-least-once = flush, then commit offsets; exactly-once = one transaction per batch "
        "with `send_offsets_to_transaction`. A run ends when its last batch is committed; the "
        "first batch (group join) is left out of the sustained rate. Scorer and passthrough "
        f"run back to back, in alternating order, {tp.repeats}× per row; *ratio* is scorer "
        "votes/s ÷ passthrough votes/s per pair (median and range). Every run's output topic "
        "was checked to hold at least one signal per vote.",
        "",
        *table(
            [
                "mode",
                "workers",
                "scorer votes/s",
                "passthrough votes/s",
                "ratio",
                "ratio range",
                "goal (ratio ≥)",
                "CPU µs/vote scorer / passthrough",
                "CPU ratio",
            ],
            rows,
        ),
        "",
        "*CPU µs/vote*: process CPU time (all threads) over the sustained window ÷ its votes; "
        "*CPU ratio* = passthrough ÷ scorer CPU per vote, less sensitive to the other tenants "
        "than wall-clock rates (start-up imports are outside the window).",
        *cross_client_lines(tp),
        *render_quix(tp, results.identical, results.quix_score_us),
    ]
    if PURE_CRC_LABEL in variants:
        lines += [
            "",
            f"*{PURE_CRC_LABEL}* (what-if, both workers): a `crc32c` module that fails to "
            "import is put ahead of the venv on the workers' `PYTHONPATH`, so kafka-python "
            "checks and computes each record batch's CRC-32C with its pure-Python loop, as it "
            "did before `crc32c` became a dependency.",
        ]
    if NO_OUTCOMES_LABEL in variants:
        lines += [
            "",
            f"*{NO_OUTCOMES_LABEL}* (what-if, scorer only): `ScorerOptions(track_outcomes=False)`"
            ", so the scorer neither subscribes to the outcomes topic nor fills its join cache "
            "(no outcomes are sent in any run; the passthrough is unchanged).",
        ]
    lines += [
        "",
        "<details><summary>Every run</summary>",
        "",
        *table(
            [
                "pair",
                "mode",
                "workers",
                "worker",
                "votes",
                "votes/s",
                "steady s",
                "CPU µs/vote",
                "CPU s whole life (main thread)",
                "CPU/wall (window)",
                "start-up s",
                "RSS MB",
                "CRC-32C",
            ],
            detail,
        ),
        "",
        "</details>",
    ]
    return lines


def ratio_goal(variant: str, ratio: float) -> str:
    """The goal cell of a throughput row: the client's goal for a client row, else what-if."""
    if variant not in CLIENT_VARIANTS:
        return "(what-if)"
    threshold = RATIO_GOALS[CLIENT_VARIANTS[variant].client]
    return f"{goal(ratio >= threshold)} ({threshold})"


def cross_client_lines(tp: ThroughputResult) -> list[str]:
    """The scorer on confluent-kafka against the scorer and the passthrough on kafka-python."""
    lines = []
    for mode in MODES:
        rates = {
            (variant, kind): median([r.rate for r in tp.runs_of(mode, variant, kind)])
            for variant in CLIENT_VARIANTS
            for kind in KINDS
        }
        cpu = {
            variant: median([r.cpu_us_per_vote for r in tp.runs_of(mode, variant, "scorer")])
            for variant in CLIENT_VARIANTS
        }
        fast, default = (rates[(CONFLUENT.label, "scorer")], rates[(SHIPPED.label, "scorer")])
        if math.isnan(fast) or math.isnan(default):
            continue
        lines.append(
            f"- {mode}: the scorer on confluent-kafka runs ×{fast / default:.2f} the votes/s of "
            f"the scorer on kafka-python (×"
            f"{fast / rates[(SHIPPED.label, 'passthrough')]:.2f} the bare kafka-python "
            f"passthrough) at ×{cpu[SHIPPED.label] / cpu[CONFLUENT.label]:.2f} less CPU per "
            "vote (medians of the same interleaved run)."
        )
    if lines:
        lines = ["", "Across clients:", "", *lines]
    return lines


def render_latency(runs: list[LatencyRun], diagnosis: list[LatencyRun], plan: Plan) -> list[str]:
    specs: list[LatencySpec] = []
    for run in runs:
        if run.spec not in specs:
            specs.append(run.spec)
    rows = []
    for spec in specs:
        mine = [r for r in runs if r.spec == spec]
        pooled = pooled_latency(runs, spec)
        q = np.percentile(pooled, [50, 90, 99, 99.9])
        per_run = ", ".join(f"{r.percentile(99):.0f}" for r in mine)
        lost = sum(r.sent - r.received for r in mine)
        rows.append(
            [
                spec.mode,
                spec.client,
                QUIX.label if spec.kind == QUIX_KIND else spec.kind,
                spec.label or "as shipped",
                f"{cpu_cores(runs, spec):.3f}",
                num(pooled.size),
                f"{q[0]:.1f}",
                f"{q[1]:.1f}",
                f"**{q[2]:.1f}**",
                per_run,
                f"{q[3]:.1f}",
                f"{pooled.max():.1f}",
                str(lost),
                latency_goal(spec, q[2]),
            ]
        )
    lines = [
        f"### 3. Vote-to-signal latency at a steady {LATENCY_RATE:,.0f} votes/s",
        "",
        f"A load generator in the benchmark process sends {LATENCY_RATE:,.0f} votes/s for "
        f"{plan.lat_seconds:.0f} s (kafka-python, acks=all, idempotent, linger_ms=0) into an idle "
        "worker's own single-partition vote topic; a consumer thread in the same process reads "
        "the signals (read_committed in exactly-once mode, so a signal counts when its "
        "transaction commits). Latency = signal arrival − the vote's `send()` call, both "
        f"`time.perf_counter()` in one process. The first {plan.lat_warmup_s:.0f} s are left out. "
        f"Each configuration ran {plan.lat_repeats}× in alternating order; percentiles pool the "
        "runs (*p99 per run* lists each). Worker settings as in part 2: batch size "
        f"{BATCH_SIZE}, poll timeout {POLL_TIMEOUT_MS} ms (a poll returns as soon as records "
        "arrive), producer linger_ms=5 (moot: every batch ends in `flush()` or a transaction "
        "commit), transactional producer retry_backoff_ms=10 (kafka-python's 100 ms default "
        "measured 214 ms p99 on the passthrough: back-to-back transactions meet "
        "CONCURRENT_TRANSACTIONS), consumer fetch_min_bytes=1 / fetch_max_wait_ms=20 (the "
        "broker answers a fetch as soon as one record is there). The *what-if* row runs the "
        "scorer with `ScorerOptions(track_outcomes=False)`. *CPU cores*: the worker "
        "process's CPU time (all threads) ÷ wall time over its window of non-empty batches "
        "while the votes arrived (median of the runs). The *Quix Streams* app runs at its "
        "defaults: at-least-once it produces each signal at once and commits offsets every "
        "5 s; exactly-once a signal is visible when its transaction commits, every "
        "`commit_interval` (5 s), so its latency is that interval by design (its runs are "
        "never discarded as stalls). The bare confluent-kafka "
        "passthrough calls `consume(num_messages=500, timeout=0.1)`, which returns once 500 "
        "records are there or 100 ms have passed, so at this rate it holds a vote about 50 ms; "
        "the transport's `poll` takes whatever is queued and waits only when nothing is.",
        "",
        *table(
            [
                "mode",
                "client",
                "worker",
                "client setting",
                "CPU cores",
                "votes",
                "p50 ms",
                "p90 ms",
                "p99 ms (goal ≤ 25 / 50)",
                "p99 per run",
                "p99.9 ms",
                "max ms",
                "lost",
                "goal",
            ],
            rows,
        ),
    ]
    for run in diagnosis:
        lines += [
            "",
            f"Scorer phases, {run.spec.client}, {run.spec.mode} (a separate "
            f"{plan.lat_seconds:.0f} s run at the same rate with every phase timed; p50/p99 of "
            f"that run {run.percentile(50):.1f} / "
            f"{run.percentile(99):.1f} ms). `Scorer.step` contains the others; `poll` counts "
            "both the vote and the models consumer.",
            "",
            *phase_table(run.phases),
        ]
    return lines


def latency_goal(spec: LatencySpec, p99: float) -> str:
    """The goal cell of a latency row: the p99 goal for the scorer as shipped."""
    if spec.label:
        return "(what-if)"
    if spec.kind != "scorer":
        return "(baseline)"
    return goal(p99 <= P99_GOALS_MS[spec.mode])


def phase_table(phases: dict[str, dict[str, float]]) -> list[str]:
    rows = [
        [
            name,
            num(stats["calls"]),
            f"{stats['p50_ms']:.2f}",
            f"{stats['p99_ms']:.2f}",
            f"{stats['max_ms']:.1f}",
            f"{stats['total_s']:.2f}",
        ]
        for name, stats in sorted(phases.items(), key=lambda kv: -kv[1]["total_s"])
    ]
    return table(["phase", "calls", "p50 ms", "p99 ms", "max ms", "total s"], rows)


def render_memory(m: MemoryResult, tp: ThroughputResult | None) -> list[str]:
    points = [("after model load (before the first vote)", 0, m.loaded_rss)]
    for label, fraction in (("10 %", 0.1), ("25 %", 0.25), ("mid (50 %)", 0.5), ("75 %", 0.75)):
        votes, rss = m.at(fraction)
        points.append((label, votes, rss))
    points.append(("end", m.n_votes, m.end_rss))
    rows = [[label, num(votes), mb(rss)] for label, votes, rss in points]
    rows.append(["peak (all samples)", "-", mb(m.peak_rss)])
    # "Flat" = no leak: once the bounded structures are full (the join cache holds 200,000
    # votes by design), RSS must not keep rising. Judged over the second half of the stream.
    warm = m.at(0.5)[1]
    growth = (m.end_rss - warm) / 2**20
    flat = growth <= 10
    met = flat and m.peak_rss / 2**20 <= RSS_GOAL_MB
    baseline = ""
    if tp is not None:
        ends = [
            float(r.rss) for r in tp.runs if r.kind == "passthrough" and r.variant == SHIPPED.label
        ]
        if ends:
            baseline = (
                f" For scale: a bare kafka-python passthrough ends its part-2 runs at "
                f"{mb(median(ends))} MB."
            )
    return [
        f"### 4. Scorer memory across {m.n_votes:,} votes",
        "",
        f"One at-least-once scorer process through {m.n_votes:,} pre-loaded votes "
        f"({m.rate:,.0f} votes/s); it samples its own RSS (`psutil.Process().memory_info().rss`) "
        f"every {m.n_votes // max(len(m.samples), 1):,} votes.",
        "",
        *table(["point", "votes processed", "RSS MB"], rows),
        "",
        f"Growth over the second half (50 % to the end): {growth:+.1f} MB; peak "
        f"{mb(m.peak_rss)} MB (goal: flat, i.e. at most 10 MB growth once the bounded "
        f"structures are full, and ≤ {RSS_GOAL_MB:.0f} MB: {goal(met)}). RSS rises by design "
        "while the outcome join cache fills (its columns are preallocated, its index of event "
        "ids grows to 200,000 entries, the default bound) and the allocator settles; the "
        "second half shows whether anything keeps growing." + baseline,
    ]


def render_profiles(profiles: list[ProfileResult]) -> list[str]:
    lines = ["### Profiles of the scorer"]
    for p in profiles:
        lines += [
            "",
            f"#### {p.client}, {p.mode} ({p.reason})",
            "",
            f"cProfile of the scorer process's main thread through {p.votes:,} pre-loaded votes "
            f"({p.wall_s:.1f} s under the profiler; the client's own threads are not in it). "
            "Top functions by own time, overall and then only the scorer's own code (`stream/`):",
            "",
            *table(
                ["function", "calls", "own s", "cumulative s"],
                [
                    [f"`{r.function}`", num(r.calls), f"{r.tottime:.2f}", f"{r.cumtime:.2f}"]
                    for r in p.top_tottime
                ],
            ),
            "",
            *table(
                ["function in stream/", "calls", "own s", "cumulative s"],
                [
                    [f"`{r.function}`", num(r.calls), f"{r.tottime:.2f}", f"{r.cumtime:.2f}"]
                    for r in p.top_scorer
                ],
            ),
        ]
        if p.phases:
            lines += [
                "",
                "Wall time of each loop phase in the same run (waits included, which cProfile's "
                "own time hides; `poll` counts the vote and the models consumer):",
                "",
                *phase_table(p.phases),
            ]
    return lines


def render(
    results: Results,
    *,
    plan: Plan,
    parts: Sequence[str],
    command: str,
    started: datetime,
    elapsed: float,
    load: tuple[float, float, float],
    code_note: str,
) -> str:
    lines = [
        BEGIN,
        "## Stream",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC (took {elapsed / 60:.1f} min). Scorer measured: "
        f"{code_note}"
        + (
            ", with "
            + ", ".join(f"`{k}={v!r}`" for k, v in results.scorer_options.items())
            + " in every scorer run's `ScorerOptions`"
            if results.scorer_options
            else ", `ScorerOptions` at their defaults"
        )
        + ".",
        "",
        f"Machine: {machine_notes(load)}"
        + (f" Quix Streams venv: {results.quix}." if results.quix else ""),
        "",
    ]
    for part, error in results.errors.items():
        lines += [f"**{part} failed:** `{error}`", ""]
    if results.inproc is not None:
        lines += [*render_inproc(results.inproc, results), ""]
    if results.throughput is not None:
        lines += [*render_throughput(results.throughput, results), ""]
    if results.latency:
        lines += [*render_latency(results.latency, results.latency_diagnosis, plan), ""]
    if results.memory is not None:
        lines += [*render_memory(results.memory, results.throughput), ""]
    goals = evaluate(results.inproc, results.throughput, results.latency or [])
    lines += [*render_goals(goals, results.identical), ""]
    if not results.quix and set(parts) & {"throughput", "latency"}:
        lines += [
            "The Quix Streams app was not run (no Quix venv: `make bench-quix-env`), so its "
            "rows and goals are missing.",
            "",
        ]
    if results.profiles:
        lines += [*render_profiles(results.profiles), ""]
    if results.discarded:
        lines += [
            f"Latency runs discarded and rerun because their median exceeded "
            f"{STALL_P50_MS:,.0f} ms (a broker or client stall on the shared machine, not "
            f"scoring): {'; '.join(results.discarded)}.",
            "",
        ]
    if results.restarts:
        lines += [
            f"Workers restarted because they joined their consumer group with no partition "
            f"({len(results.restarts)}): kafka-python's range assignor logged `No partition "
            "metadata for topic …` and the member kept an empty assignment for the 30 s the "
            "benchmark waits, its loop spinning on empty polls. "
            + "; ".join(results.restarts)
            + ".",
            "",
        ]
    skipped = [p for p in PARTS if p not in parts]
    if skipped:
        lines += [f"Not run this time: {', '.join(skipped)}.", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the stream section of ``path`` (or add it), keeping everything else."""
    markdown.write_section(path, SECTION, section)


# --------------------------------------------------------------------------- CLI


def parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part(s) {unknown}; choose from {PARTS}")
    return [p for p in PARTS if p in parts]


def parse_scorer_options(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=JSON`` pairs for ScorerOptions; names this checkout lacks are dropped (the
    benchmark runs on branches made before or after an option exists)."""
    import json

    options: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--scorer-option {item!r}: expected NAME=VALUE")
        if not scorer_has_option(name):
            log.warning("ScorerOptions has no %r here: --scorer-option %s left out", name, item)
            continue
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value  # a bare string
    return options


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="markdown file to update")
    parser.add_argument(
        "--plan",
        choices=sorted(PLANS),
        default="full",
        help="sizes: full (default), reduced (every comparison, ~20-30 min), quick (smoke)",
    )
    parser.add_argument("--quick", action="store_true", help="the same as --plan quick")
    parser.add_argument(
        "--quix-python",
        type=Path,
        default=REPO / QUIX_VENV / "bin" / "python",
        help="interpreter of the Quix Streams venv (default: .venv-quix, `make bench-quix-env`)",
    )
    parser.add_argument(
        "--parts",
        type=parse_parts,
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--skip-crc-what-if", action="store_true", help="leave out the pure-Python CRC row"
    )
    parser.add_argument(
        "--code-note", help="describe the measured scorer (default: git commit of this checkout)"
    )
    parser.add_argument(
        "--scorer-option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a ScorerOptions field for every scorer run, e.g. commit_interval_s=0.05; "
        "left out, with a warning, when this checkout's ScorerOptions has no such field",
    )
    args = parser.parse_args(argv)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    # kafka-python and the trainer's fit log at INFO; keep the progress log readable.
    quiet = {"kafka": logging.ERROR, "metasignal": logging.WARNING}
    loggers = [logging.getLogger(name) for name in quiet]
    levels = [logger.level for logger in loggers]
    for logger, level in zip(loggers, quiet.values(), strict=True):
        logger.setLevel(level)
    try:
        scorer_defaults = parse_scorer_options(args.scorer_option)
        quix_python = args.quix_python if args.quix_python.exists() else None
        if quix_python is None and set(args.parts) & {"throughput", "latency"}:
            log.warning("no %s: the Quix Streams app is left out", args.quix_python)
        section, results = run_benchmark(
            QUICK if args.quick else PLANS[args.plan],
            args.parts,
            crc32c=not args.skip_crc_what_if,
            command=f"python -m bench.stream {argv_text}",
            code_note=args.code_note or code_description(),
            quix_python=quix_python,
            scorer_defaults=scorer_defaults,
        )
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    write_section(args.out, section)
    log.info("wrote the stream section of %s", args.out)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
