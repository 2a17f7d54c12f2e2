"""``metasignal demo``: the whole service and its closed loop in one command.

A synthetic committee stream (8 members, 1 % trades) gets two injected
changes: the trade rate steps to 4 % at 40 % of the stream, and the best
member starts to decay at 60 %. The meta-model is fitted on the first 20 %,
signed, published and served by a scorer; outcomes arrive a little after their
votes; the scorer joins them, tracks drift with river and asks the trainer
for a re-tune or a retrain; the trainer gates and publishes new versions that
the scorer swaps in. A few malformed votes show the dead-letter path.

It prints a live line and a timeline, writes ``timeline.html`` (rates,
rolling F1, model versions, drift marks), and compares F1 after the drift with
the loop on against the first model alone. Runs on the embedded memory bus,
or on a real broker with ``--bootstrap``; ``--no-loop`` runs the baseline alone.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metasignal.stream.artifact import dumps_artifact, load_artifact, sign_artifact
from metasignal.stream.errors import MetasignalError
from metasignal.stream.messages import encode_vote
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport import Transport, connect
from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.report import BLUE, GREY, ORANGE, RED, Series, render_html, svg_line_plot
from metasignal.trainer.service import TrainerOptions, TrainerService
from metasignal.trainer.synthetic import Committee, RateStep, generate_committee

# The scorer consumes every vote within seconds; this long without a vote or outcome scored
# means something is broken (the demo says so and stops instead of waiting for ever).
STALL_SECONDS = 60

POISON = (
    b"{this is not json",
    b'{"id": "poison-range", "ts": 1, "votes": {"m1": 7.5}}',
    b'{"ts": 1, "votes": {"m1": 0.5}}',
)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    events: int = 100_000
    positive_rate: float = 0.01
    drifted_rate: float = 0.04
    rate_step_at: float = 0.4
    decay_start: float = 0.6
    history: float = 0.2
    outcome_delay: int = 500
    seed: int = 7
    out: Path = Path("out/demo")
    bootstrap: str | None = None
    summary_json: Path | None = None
    rate: float = 4000.0
    exactly_once: bool = False
    loop: bool = True


def _table(committee: Committee) -> VoteTable:
    return VoteTable(
        time_ms=committee.time_ms,
        members=committee.members,
        votes=committee.votes,
        labels=committee.labels,
    )


def f1_score(labels: np.ndarray, decisions: np.ndarray) -> float:
    tp = int(np.sum((labels == 1) & (decisions == 1)))
    predicted, actual = int(decisions.sum()), int(labels.sum())
    return 2 * tp / (predicted + actual) if predicted + actual else 0.0


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    sums = np.cumsum(np.r_[0.0, values])
    out = np.full(len(values), np.nan)
    out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


def rolling_f1(labels: np.ndarray, decisions: np.ndarray, window: int) -> np.ndarray:
    tp = rolling_mean(((labels == 1) & (decisions == 1)).astype(float), window)
    predicted = rolling_mean(decisions.astype(float), window)
    actual = rolling_mean(labels.astype(float), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted + actual > 0, 2 * tp / (predicted + actual), np.nan)


class _Feeder:
    """Sends the live votes, each outcome ``delay`` events after its vote, at ``rate`` votes/s."""

    def __init__(
        self, transport: Transport, topics: Topics, live: Committee, *, delay: int, rate: float
    ) -> None:
        self.transport, self.topics, self.live = transport, topics, live
        self.delay, self.rate = delay, rate
        self.sent = 0

    def _outcome(self, i: int) -> tuple[bytes, bytes]:
        event_id = str(self.live.ids[i])
        body = {"id": event_id, "ts": int(self.live.time_ms[i]), "label": int(self.live.labels[i])}
        return event_id.encode(), json.dumps(body).encode()

    def run(self, scorer: Scorer, stop: threading.Event) -> None:
        producer = self.transport.producer()
        live, members, topics = self.live, self.live.members, self.topics
        started = time.monotonic()
        for i in range(len(live) + self.delay):
            if stop.is_set():
                break
            if i < len(live):
                if self.rate > 0:
                    pause = started + i / self.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                event_id = str(live.ids[i])
                votes = dict(zip(members, live.votes[i].tolist(), strict=True))
                producer.send(
                    topics.votes,
                    key=event_id.encode(),
                    value=encode_vote(event_id, int(live.time_ms[i]), votes),
                )
                self.sent = i + 1
            if i >= self.delay:
                key, value = self._outcome(i - self.delay)
                producer.send(topics.outcomes, key=key, value=value)
            if i == len(live) // 2:
                for n, payload in enumerate(POISON):
                    producer.send(topics.votes, key=f"poison-{n}".encode(), value=payload)
            if i % 1000 == 999:
                producer.flush()
                # Flow control: never run far ahead of the scorer, so the loop can act in time.
                while self.sent - scorer.stats.votes > 2000 and not stop.is_set():
                    time.sleep(0.005)
        producer.flush()
        producer.close()


def _read(
    transport: Transport, topic: str, expect: int, timeout: float = 60
) -> list[dict[str, Any]]:
    consumer = transport.consumer(assign_all=[topic], read_committed=True)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out.extend(
            json.loads(r.value) for r in consumer.poll(timeout_ms=200, max_records=5000) if r.value
        )
    out.extend(
        json.loads(r.value) for r in consumer.poll(timeout_ms=0, max_records=5000) if r.value
    )
    consumer.close()
    return out


def _status(scorer: Scorer, started: float, total: int) -> str:
    stats = scorer.stats
    elapsed = max(time.monotonic() - started, 1e-9)
    latencies = stats.latencies_ms.array()
    p99 = np.percentile(latencies, 99) if len(latencies) else float("nan")
    model = scorer.models.current
    version = f"v{model.version}" if model else "-"
    return (
        f"votes {stats.votes:>7}/{total}  {stats.votes / elapsed:7.0f}/s  trades {stats.trades:>5}"
        f"  outcomes {stats.joined:>7}  dlq {stats.dlq}  p99 {p99:6.1f} ms  model {version}"
        f"  requests {len(stats.drift_requests)}"
    )


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; return the summary (also printed, and written if asked)."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    committee = generate_committee(
        n_events=options.events,
        positive_rate=options.positive_rate,
        rate_steps=[RateStep(options.rate_step_at, options.drifted_rate)],
        decaying_member=7,
        decay_start=options.decay_start,
        seed=options.seed,
    )
    n_history = int(len(committee) * options.history)
    history, live = committee.slice(0, n_history), committee.slice(n_history, len(committee))
    step_index = int(len(committee) * options.rate_step_at) - n_history
    decay_index = int(len(committee) * options.decay_start) - n_history
    print(
        f"committee: {len(committee)} events, 8 members, {options.positive_rate:.0%} trades; "
        f"injected: rate -> {options.drifted_rate:.0%} at live event {step_index}, "
        f"member m8 decays from live event {decay_index}"
    )
    outcome = fit_meta_model(_table(history), FitConfig())
    report = outcome.report
    print(
        f"model v1: {report['strategy']}, threshold {report['threshold']:.4f}, holdout F1 "
        f"{report['holdout']['f1']:.3f} (fitted on the first {len(history)} events)"
    )
    key = secrets.token_bytes(32)  # a throwaway key: the demo signs and verifies like production
    artifact = dumps_artifact(sign_artifact(outcome.artifact, key))
    (out / "model.json").write_text(artifact)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.html").write_text(render_html(report))

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
            drift_min_outcomes=3000,
            drift_cooldown_outcomes=6000,
            drift_settle_outcomes=4000,
            # The demo replays hours of events in seconds: a model must be picked up within a
            # few batches, not half a (compressed) second later.
            model_check_interval_s=0.0,
        ),
        keys=[key],
    )
    stop = threading.Event()
    threads = [threading.Thread(target=scorer.run, args=(stop,), name="scorer")]
    trainer: TrainerService | None = None
    if options.loop:
        trainer = TrainerService(
            transport=transport,
            options=TrainerOptions(
                topics=topics,
                group_id=f"{prefix}trainer",
                transactional_id=f"{prefix}trainer",
                window_rows=15_000,
                splits=3,
            ),
            keys=[key],
        )
        threads.append(threading.Thread(target=trainer.run, args=(stop,), name="trainer"))
    for thread in threads:
        thread.start()
    where = options.bootstrap or "the embedded memory bus"
    loop = "on" if options.loop else "OFF (first model only)"
    print(f"streaming {len(live)} live votes and their outcomes on {where}; loop {loop}")
    started = time.monotonic()
    feeder = _Feeder(transport, topics, live, delay=options.outcome_delay, rate=options.rate)
    sender = threading.Thread(target=feeder.run, args=(scorer, stop), name="feeder")
    sender.start()
    total = len(live) + len(POISON)
    last_print = 0.0
    progress, progressed_at = -1, started
    while scorer.stats.votes < total or scorer.stats.outcomes < len(live):
        now = time.monotonic()
        if scorer.stats.votes + scorer.stats.outcomes != progress:
            progress, progressed_at = scorer.stats.votes + scorer.stats.outcomes, now
        stalled = now - progressed_at > STALL_SECONDS
        dead = [thread.name for thread in threads if not thread.is_alive()]
        if stalled or dead:
            stop.set()
            for thread in (sender, *threads):
                thread.join(timeout=30)
            why = f"{' and '.join(dead)} stopped" if dead else f"no progress for {STALL_SECONDS} s"
            raise MetasignalError(
                f"demo aborted, {why} ({_status(scorer, started, total)}); see the log above"
            )
        if now - last_print >= 2.0:
            print("  " + _status(scorer, started, total), flush=True)
            last_print = now
        time.sleep(0.05)
    sender.join()
    time.sleep(0.5)  # let a last request be answered before stopping
    stop.set()
    for thread in threads:
        thread.join()
    print("  " + _status(scorer, started, total))
    seconds = time.monotonic() - started

    signals = _read(transport, topics.signals, expect=len(live))
    requests = _read(transport, topics.control, expect=len(scorer.stats.drift_requests), timeout=5)
    published = _read(transport, topics.models, expect=len(scorer.stats.model_versions), timeout=5)
    models = [load_artifact(document, keys=[key]) for document in published]
    transport.close()
    summary = summarise(
        options=options,
        live=live,
        signals=signals,
        requests=requests,
        models=models,
        scorer=scorer,
        first_model=CompiledModel.from_artifact(load_artifact(artifact, keys=[key])),
        step_index=step_index,
        decay_index=decay_index,
        report=report,
        seconds=seconds,
    )
    if options.summary_json is not None:
        options.summary_json.parent.mkdir(parents=True, exist_ok=True)
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise(
    *,
    options: DemoOptions,
    live: Committee,
    signals: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    models: list[dict[str, Any]],
    scorer: Scorer,
    first_model: CompiledModel,
    step_index: int,
    decay_index: int,
    report: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    index = {str(event_id): i for i, event_id in enumerate(live.ids)}
    n = len(live)
    decisions = np.zeros(n, dtype=np.int64)
    versions = np.zeros(n, dtype=np.int64)
    for signal in signals:
        i = index.get(signal["id"])
        if i is not None:
            decisions[i], versions[i] = signal["decision"], signal["model_version"]
    labels = live.labels.astype(np.int64)
    baseline = first_model.decide(first_model.predict_proba(live.votes)).astype(np.int64)
    after = slice(step_index, n)
    timeline = [(step_index, f"injected: trade rate steps to {options.drifted_rate:.0%}")]
    timeline.append((decay_index, "injected: member m8 starts to decay"))
    drift_events = []
    for request in requests:
        at = int(np.searchsorted(live.time_ms, request.get("at_event_ts") or 0))
        source = request.get("evidence", "outcomes")  # label_free: from the scores alone
        drift_events.append(
            {"at": at, "kind": request["kind"], "reason": request["reason"], "source": source}
        )
        timeline.append((at, f"drift: {request['kind']} requested ({request['reason']})"))
    for model in models[1:]:
        version = model["model"]["version"]
        live_from = np.flatnonzero(versions == version)
        at = int(live_from[0]) if len(live_from) else n
        gate = model.get("gate") or {}
        when = "live" if len(live_from) else "published after the last event"
        timeline.append(
            (
                at,
                f"model v{version} {when} ({model['request']['kind']}: gate {gate.get('metric')} "
                f"{gate.get('candidate', float('nan')):.3f} vs champion "
                f"{gate.get('champion', float('nan')):.3f})",
            )
        )
    print("timeline (live event index):")
    for at, text in sorted(timeline):
        print(f"  {at:>7}  {text}")
    # The live figures grade the decisions each signal carried, whichever version made them.
    live_block = {
        "f1": f1_score(labels, decisions),
        "precision": float(np.sum(labels * decisions) / max(decisions.sum(), 1)),
        "recall": float(np.sum(labels * decisions) / max(labels.sum(), 1)),
    }
    stats = scorer.stats
    kinds = [m["request"]["kind"] for m in models[1:] if m.get("request")]
    summary: dict[str, Any] = {
        "transport": "kafka" if options.bootstrap else "memory",
        "loop": options.loop,
        "votes": stats.votes,
        "signals": stats.signals,
        "trades": stats.trades,
        "dlq": stats.dlq,
        "model_versions": stats.model_versions,
        "latency_p99_ms": float(np.percentile(stats.latencies_ms.array(), 99))
        if len(stats.latencies_ms)
        else None,
        "live": live_block,
        "drift_events": drift_events,
        "retrains": kinds.count("retrain"),
        "retunes": kinds.count("retune"),
        "f1_after_drift": f1_score(labels[after], decisions[after]),
        "f1_after_drift_without_loop": f1_score(labels[after], baseline[after]),
        "f1_before_drift": f1_score(labels[:step_index], decisions[:step_index]),
        "f1_by_segment": [
            {
                "start": int(part[0]),
                "stop": int(part[-1]) + 1,
                "loop": f1_score(labels[part], decisions[part]),
                "first_model": f1_score(labels[part], baseline[part]),
            }
            for part in np.array_split(np.arange(n), 8)
        ],
        "holdout": {k: report["holdout"][k] for k in ("f1", "precision", "recall")},
        "seconds": round(seconds, 2),
        "timeline": str(options.out / "timeline.html"),
    }
    print(
        f"F1 after the drift: {summary['f1_after_drift']:.3f} with the loop "
        f"{'on' if options.loop else 'off'}, {summary['f1_after_drift_without_loop']:.3f} "
        f"with the first model only; {summary['retunes']} re-tune(s), "
        f"{summary['retrains']} retrain(s); {stats.dlq} dead letters"
    )
    (options.out / "timeline.html").write_text(
        timeline_html(labels, decisions, baseline, versions, sorted(timeline), summary)
    )
    print(f"timeline plot: {summary['timeline']}")
    return summary


def timeline_html(
    labels: np.ndarray,
    decisions: np.ndarray,
    baseline: np.ndarray,
    versions: np.ndarray,
    timeline: list[tuple[int, str]],
    summary: dict[str, Any],
) -> str:
    """A self-contained page: rates, rolling F1 and model versions over the live stream."""
    window = 5000
    step = max(len(labels) // 400, 1)
    x = list(range(0, len(labels), step))

    def sampled(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(values[i]) else float(values[i]) for i in x]

    marks = [(float(at), html.escape(text.split(" (")[0][:40])) for at, text in timeline]
    rates = svg_line_plot(
        [
            Series(x, sampled(rolling_mean(labels.astype(float), window)), "realized rate", BLUE),
            Series(
                x, sampled(rolling_mean(decisions.astype(float), window)), "signal rate", ORANGE
            ),
        ],
        title="Positive rate vs signal rate (rolling 5,000 events)",
        x_label="live event",
        y_label="rate",
        vlines=marks,
    )
    f1 = svg_line_plot(
        [
            Series(x, sampled(rolling_f1(labels, decisions, window)), "loop on", BLUE),
            Series(x, sampled(rolling_f1(labels, baseline, window)), "first model only", GREY),
        ],
        title="Rolling F1 (5,000 events)",
        x_label="live event",
        y_label="F1",
        vlines=marks,
    )
    version_plot = svg_line_plot(
        [Series(x, [float(versions[i]) for i in x], "model version", RED)],
        title="Model version serving each event",
        x_label="live event",
        y_label="version",
    )
    rows = "".join(f"<tr><td>{at}</td><td>{html.escape(text)}</td></tr>" for at, text in timeline)
    figures = {
        k: summary[k]
        for k in ("f1_after_drift", "f1_after_drift_without_loop", "retunes", "retrains")
    }
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>metasignal demo timeline</title>"
        "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}"
        "td{padding:2px 10px}</style></head><body><h1>metasignal: the closed loop</h1>"
        f"<pre>{json.dumps(figures, indent=2)}</pre>{rates}{f1}{version_plot}"
        f"<h2>Timeline</h2><table>{rows}</table></body></html>\n"
    )
