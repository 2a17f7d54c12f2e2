"""``metasignal demo``: the whole service in one command.

Generates a committee stream, fits the meta-model on its first half, signs and
publishes the artifact, starts a scorer, streams the second half of the votes
(plus a few malformed messages, to show the dead-letter path), prints a live
summary line, and ends with the live signals graded against the stream's labels.

Runs on the embedded memory bus by default, or on a real broker with
``--bootstrap``.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.artifact import dumps_artifact, sign_artifact
from stream.messages import encode_vote
from stream.scorer import Scorer, ScorerOptions
from stream.topics import Topics, topic_specs
from stream.transport import Transport, connect
from trainer.data import VoteTable
from trainer.fit import FitConfig, fit_meta_model, holdout_metrics
from trainer.report import render_html
from trainer.synthetic import Committee, generate_committee

log = logging.getLogger("metasignal.demo")

POISON = (
    b"{this is not json",
    b'{"id": "poison-range", "ts": 1, "votes": {"m1": 7.5}}',
    b'{"ts": 1, "votes": {"m1": 0.5}}',
)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    events: int = 60_000
    positive_rate: float = 0.02
    seed: int = 7
    out: Path = Path("out/demo")
    bootstrap: str | None = None
    summary_json: Path | None = None
    rate: float = 0.0
    exactly_once: bool = False


def _table(committee: Committee) -> VoteTable:
    return VoteTable(
        time_ms=committee.time_ms,
        members=committee.members,
        votes=committee.votes,
        labels=committee.labels,
    )


def _stream_votes(transport: Transport, topics: Topics, live: Committee, rate: float) -> None:
    producer = transport.producer()
    started = time.monotonic()
    members = live.members
    for i in range(len(live)):
        if rate > 0:
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        event_id = str(live.ids[i])
        votes = dict(zip(members, live.votes[i].tolist(), strict=True))
        producer.send(
            topics.votes,
            key=event_id.encode(),
            value=encode_vote(event_id, int(live.time_ms[i]), votes),
        )
        if i == len(live) // 2:
            for n, payload in enumerate(POISON):
                producer.send(topics.votes, key=f"poison-{n}".encode(), value=payload)
    producer.flush()
    producer.close()


def _collect_signals(transport: Transport, topics: Topics, expect: int) -> list[dict[str, Any]]:
    consumer = transport.consumer(assign_all=[topics.signals], read_committed=True)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(out) < expect and time.monotonic() < deadline:
        out.extend(
            json.loads(r.value) for r in consumer.poll(timeout_ms=200, max_records=5000) if r.value
        )
    consumer.close()
    return out


def _summary_line(scorer: Scorer, started: float, total: int) -> str:
    stats = scorer.stats
    elapsed = max(time.monotonic() - started, 1e-9)
    p99 = np.percentile(stats.latencies_ms, 99) if stats.latencies_ms else float("nan")
    model = scorer.models.current
    version = f"v{model.version}" if model else "-"
    return (
        f"votes {stats.votes:>6}/{total}  {stats.votes / elapsed:8.0f} votes/s  "
        f"signals {stats.signals:>6}  trades {stats.trades:>4}  dlq {stats.dlq}  "
        f"latency p99 {p99:6.1f} ms  model {version}"
    )


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo and return the summary (also printed, and written if asked)."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    committee = generate_committee(
        n_events=options.events, positive_rate=options.positive_rate, seed=options.seed
    )
    half = len(committee) // 2
    history, live = committee.slice(0, half), committee.slice(half, len(committee))
    print(f"committee: {len(committee)} events, 8 members, {committee.positive_rate:.2%} trades")
    print(f"fitting on the first {len(history)} events (walk-forward tuning, 30 % holdout) ...")
    outcome = fit_meta_model(_table(history), FitConfig())
    key = secrets.token_bytes(32)  # a throwaway key: the demo signs and verifies like production
    artifact = dumps_artifact(sign_artifact(outcome.artifact, key))
    (out / "model.json").write_text(artifact)
    (out / "report.json").write_text(json.dumps(outcome.report, indent=2) + "\n")
    (out / "report.html").write_text(render_html(outcome.report))
    report = outcome.report
    print(
        f"model: {report['strategy']} ({report['strategy_reason']}); threshold "
        f"{report['threshold']:.4f}; holdout F1 {report['holdout']['f1']:.3f}"
    )
    transport = connect(options.bootstrap)
    # A fresh prefix keeps repeated demos on one broker from reading each other's topics.
    prefix = "demo." if options.bootstrap is None else f"demo-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix=prefix)
    transport.create_topics(topic_specs(topics, partitions=4))
    producer = transport.producer()
    producer.send(topics.models, key=b"meta", value=artifact.encode())
    producer.flush()
    producer.close()
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(
            topics=topics,
            group_id=f"{prefix}scorer",
            exactly_once=options.exactly_once,
            transactional_id=f"{prefix}scorer-0",
            poll_timeout_ms=20,
        ),
        keys=[key],
    )
    stop = threading.Event()
    scorer_thread = threading.Thread(target=scorer.run, args=(stop,), name="scorer")
    scorer_thread.start()
    where = options.bootstrap or "the embedded memory bus"
    print(f"streaming {len(live)} live votes through the scorer on {where} ...")
    started = time.monotonic()
    sender = threading.Thread(
        target=_stream_votes, args=(transport, topics, live, options.rate), name="votes"
    )
    sender.start()
    total = len(live) + len(POISON)
    last_print = 0.0
    while scorer.stats.votes < total and time.monotonic() - started < 600:
        if time.monotonic() - last_print >= 1.0:
            print("  " + _summary_line(scorer, started, total), flush=True)
            last_print = time.monotonic()
        time.sleep(0.05)
    sender.join()
    stop.set()
    scorer_thread.join()
    print("  " + _summary_line(scorer, started, total))
    signals = _collect_signals(transport, topics, expect=len(live))
    transport.close()
    labels = dict(zip((str(i) for i in live.ids), live.labels.tolist(), strict=True))
    ids = [s["id"] for s in signals if s["id"] in labels]
    y = np.array([labels[i] for i in ids], dtype=np.int64)
    scores = np.array([s["score"] for s in signals if s["id"] in labels])
    live_block = holdout_metrics(y, scores, float(signals[0]["threshold"])) if signals else {}
    stats = scorer.stats
    summary = {
        "transport": "kafka" if options.bootstrap else "memory",
        "votes": stats.votes,
        "signals": stats.signals,
        "trades": stats.trades,
        "dlq": stats.dlq,
        "model_versions": stats.model_versions,
        "latency_p99_ms": float(np.percentile(stats.latencies_ms, 99))
        if stats.latencies_ms
        else None,
        "live": {k: live_block.get(k) for k in ("f1", "precision", "recall")},
        "live_events": len(live),
        "holdout": {k: report["holdout"][k] for k in ("f1", "precision", "recall")},
        "strategy": report["strategy"],
        "threshold": report["threshold"],
        "seconds": round(time.monotonic() - started, 2),
        "report": str(out / "report.html"),
    }
    print(
        f"live signals vs labels: F1 {summary['live']['f1']:.3f}  precision "
        f"{summary['live']['precision']:.3f}  recall {summary['live']['recall']:.3f}  "
        f"({stats.trades} trades on {len(live)} events; holdout F1 was "
        f"{summary['holdout']['f1']:.3f})"
    )
    print(f"report: {summary['report']}")
    if options.summary_json is not None:
        options.summary_json.parent.mkdir(parents=True, exist_ok=True)
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
