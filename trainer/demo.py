"""``metasignal demo``: the whole service and its closed loop in one command.

A synthetic committee stream (8 members, 1 % trades) gets two injected
changes: the trade rate steps to 4 % at 40 % of the stream as a label shift
(the class mix moves, each class's votes stay alike, so the scores show it
before any outcome: a label-free re-tune), and the best member starts to decay
at 60 % (concept drift: only the outcomes show it, and a retrain follows).
The meta-model is fitted on the first 20 %, signed, published and served by a
scorer; outcomes arrive a little after their votes; the scorer joins them,
tracks drift with river and asks the trainer for a re-tune or a retrain; the
trainer gates and publishes new versions that the scorer swaps in. A few
malformed votes show the dead-letter path.

It prints a live line and a timeline, writes ``timeline.html`` (rates,
rolling F1, model versions; drift requests, new models and refused candidates
marked), and compares F1 after the drift with the loop on against the first
model alone. Runs on the embedded memory bus,
or on a real broker with ``--bootstrap``; ``--no-loop`` runs the baseline alone.
On the memory bus one thread drives every part by the event clock, so a seed gives
the same numbers on every run; on a broker the parts run in threads, as in
production, and the numbers depend on timing.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metasignal.stream.artifact import (
    Artifact,
    dumps_artifact,
    load_artifact,
    model_identity,
    sign_artifact,
)
from metasignal.stream.errors import MetasignalError
from metasignal.stream.messages import encode_vote
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.topics import OwnedTopics, Topics, model_key, topic_specs
from metasignal.stream.transport import Producer, Transport, connect
from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.report import render_html
from metasignal.trainer.service import TrainerOptions, TrainerService, Verdict
from metasignal.trainer.synthetic import Committee, RateStep, generate_committee
from metasignal.trainer.timeline import Mark, timeline_html

log = logging.getLogger("metasignal.demo")

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
    kafka_client: str = "kafka-python"
    summary_json: Path | None = None
    rate: float = 4000.0
    exactly_once: bool = False
    loop: bool = True
    keep_topics: bool = False
    # On the memory bus a request is answered this many events after the batch that made it
    # (a trainer takes a while); on a broker it takes the trainer's real time.
    answer_delay: int = 2000


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


class _Feeder:
    """The live stream in event order: vote ``i`` and the outcome of vote ``i - delay``.

    ``send(producer, i)`` is one tick of the event clock; both ways of running the demo
    (:func:`_stream_on_event_clock`, :func:`_stream_on_threads`) are loops over it.
    """

    def __init__(self, topics: Topics, live: Committee, *, delay: int) -> None:
        self.topics, self.live, self.delay = topics, live, delay
        self.sent = 0

    @property
    def ticks(self) -> int:
        """Events on the clock: every vote, then the outcomes still owed after the last one."""
        return len(self.live) + self.delay

    def _outcome(self, i: int) -> tuple[bytes, bytes]:
        event_id = str(self.live.ids[i])
        body = {"id": event_id, "ts": int(self.live.time_ms[i]), "label": int(self.live.labels[i])}
        return event_id.encode(), json.dumps(body).encode()

    def send(self, producer: Producer, i: int) -> None:
        live, topics = self.live, self.topics
        if i < len(live):
            event_id = str(live.ids[i])
            votes = dict(zip(live.members, live.votes[i].tolist(), strict=True))
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

    def run(self, producer: Producer, scorer: Scorer, stop: threading.Event, rate: float) -> None:
        """On a broker: send at ``rate`` votes/s, never far ahead of the scorer."""
        started = time.monotonic()
        for i in range(self.ticks):
            if stop.is_set():
                break
            _pace(started, i, rate)
            self.send(producer, i)
            if i % 1000 == 999:
                producer.flush()
                # Flow control: never run far ahead of the scorer, so the loop can act in time.
                while self.sent - scorer.stats.votes > 2000 and not stop.is_set():
                    time.sleep(0.005)
        producer.flush()


def _pace(started: float, i: int, rate: float) -> None:
    """Sleep until event ``i`` is due at ``rate`` events/s (0: as fast as possible)."""
    if rate > 0:
        pause = started + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)


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


class _Watchdog:
    """Ends a demo whose scorer makes no progress for ``STALL_SECONDS``, or whose part died."""

    def __init__(self, scorer: Scorer, *, total: int, outcomes: int) -> None:
        self.scorer, self.total, self.outcomes = scorer, total, outcomes
        self.started = time.monotonic()
        self._progress, self._progressed_at = -1, self.started
        self._printed_at = self.started
        self.interrupted = False  # Ctrl-C, seen at the next check (see _ctrl_c_flags)

    def done(self) -> bool:
        stats = self.scorer.stats
        return stats.votes >= self.total and stats.outcomes >= self.outcomes

    def status(self) -> str:
        return _status(self.scorer, self.started, self.total)

    def abort(self, why: str) -> MetasignalError:
        return MetasignalError(f"demo aborted, {why} ({self.status()}); see the log above")

    def check(self, dead: Sequence[str] = ()) -> None:
        """Raise if a part died, nothing moved for ``STALL_SECONDS`` or Ctrl-C was pressed;
        print the live line."""
        if self.interrupted:
            raise KeyboardInterrupt
        now = time.monotonic()
        stats = self.scorer.stats
        if stats.votes + stats.outcomes != self._progress:
            self._progress, self._progressed_at = stats.votes + stats.outcomes, now
        if dead:
            raise self.abort(f"{' and '.join(dead)} stopped")
        if now - self._progressed_at > STALL_SECONDS:
            raise self.abort(f"no progress for {STALL_SECONDS} s")
        if now - self._printed_at >= 2.0:
            print("  " + self.status(), flush=True)
            self._printed_at = now


@contextmanager
def _ctrl_c_flags(watchdog: _Watchdog) -> Iterator[None]:
    """While streaming, Ctrl-C sets a flag that the next :meth:`_Watchdog.check` raises.

    Python's own KeyboardInterrupt is raised wherever the main thread is, and when that is
    inside a finalizer (a weakref callback, many of which run while batches are freed) it
    is printed as "Exception ignored" and dropped: the demo streamed on. A flag checked
    between turns cannot be lost.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield  # not ours to change (a test harness, an embedding application)
        return

    def pressed(signum: int, frame: object) -> None:
        watchdog.interrupted = True

    previous = signal.signal(signal.SIGINT, pressed)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _turn(name: str, step: Callable[[], int], watchdog: _Watchdog) -> int:
    """One step of the scorer or the trainer; a crash ends the demo with one line."""
    try:
        return step()
    except Exception:
        log.exception("the %s failed", name)
        raise watchdog.abort(f"{name} stopped") from None


def _stream_on_event_clock(
    producer: Producer,
    feeder: _Feeder,
    scorer: Scorer,
    trainer: TrainerService | None,
    *,
    rate: float,
    answer_delay: int,
    watchdog: _Watchdog,
) -> None:
    """The memory bus: feeder, scorer, outcomes and trainer take turns on one thread.

    The feeder sends one batch of events, the scorer consumes everything sent, and a
    request the scorer made is answered ``answer_delay`` events later, before the next
    batch. What happens depends on the event clock only, never on thread timing, so the
    same seed gives the same numbers on every run; ``rate`` only paces the turns.
    """
    try:
        scorer.load_models()
        block = scorer.options.batch_size
        answers: deque[int] = deque()  # the event at which each open request gets its answer
        asked = 0
        started = time.monotonic()
        for first in range(0, feeder.ticks, block):
            end = min(first + block, feeder.ticks)
            _pace(started, first, rate)
            for i in range(first, end):
                feeder.send(producer, i)
            while _turn("scorer", scorer.step, watchdog):
                pass
            requests = len(scorer.stats.drift_requests)
            answers.extend([end + answer_delay] * (requests - asked))
            asked = requests
            while trainer is not None and answers and answers[0] <= end:
                answers.popleft()
                _turn("trainer", trainer.step, watchdog)
            watchdog.check()
        while not watchdog.done():  # only a scorer that lost records gets here
            _turn("scorer", scorer.step, watchdog)
            watchdog.check()
            time.sleep(0.05)
        while trainer is not None and answers:  # requests made near the end are answered too
            answers.popleft()
            _turn("trainer", trainer.step, watchdog)
        scorer.refresh_models()
    finally:
        scorer.close()
        if trainer is not None:
            trainer.close()


def _stream_on_threads(
    producer: Producer,
    feeder: _Feeder,
    scorer: Scorer,
    trainer: TrainerService | None,
    *,
    rate: float,
    watchdog: _Watchdog,
) -> None:
    """A real broker: feeder, scorer and trainer run as they would in production, in
    threads, so when a request is answered (and the numbers) varies from run to run."""
    stop = threading.Event()
    threads = [threading.Thread(target=scorer.run, args=(stop,), name="scorer", daemon=True)]
    if trainer is not None:
        threads.append(
            threading.Thread(target=trainer.run, args=(stop,), name="trainer", daemon=True)
        )
    sender = threading.Thread(
        target=feeder.run, args=(producer, scorer, stop, rate), name="feeder", daemon=True
    )
    try:
        for thread in (*threads, sender):
            thread.start()
        while not watchdog.done():
            watchdog.check(dead=[thread.name for thread in threads if not thread.is_alive()])
            time.sleep(0.05)
        sender.join()
        time.sleep(0.5)  # let a last request be answered before stopping
    finally:
        # Told to stop, each part finishes the batch in hand and closes (Ctrl-C included).
        stop.set()
        for thread in (sender, *threads):
            if thread.is_alive():
                thread.join(timeout=30)


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; return the summary (also printed, and written if asked).

    Ctrl-C stops every part, deletes the demo's topics on a broker (unless
    ``keep_topics``) and raises :class:`KeyboardInterrupt` saying where the stream was.
    """
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    committee = generate_committee(
        n_events=options.events,
        positive_rate=options.positive_rate,
        rate_steps=[RateStep(options.rate_step_at, options.drifted_rate)],
        decaying_member=7,
        decay_start=options.decay_start,
        label_shift=True,
        seed=options.seed,
    )
    n_history = int(len(committee) * options.history)
    history, live = committee.slice(0, n_history), committee.slice(n_history, len(committee))
    step_index = int(len(committee) * options.rate_step_at) - n_history
    decay_index = int(len(committee) * options.decay_start) - n_history
    print(
        f"committee: {len(committee)} events, 8 members, {options.positive_rate:.0%} trades; "
        f"injected: rate -> {options.drifted_rate:.0%} at live event {step_index} (label "
        "shift), "
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

    transport = connect(options.bootstrap, client=options.kafka_client)
    # A fresh prefix keeps repeated demos on one broker from reading each other's topics.
    prefix = "demo." if options.bootstrap is None else f"demo-{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix=prefix)
    created = transport.create_topics(topic_specs(topics, partitions=4))
    # On a broker the demo's topics are deleted when it ends (the memory bus ends with it).
    owned = OwnedTopics(transport, created if options.bootstrap else [], keep=options.keep_topics)
    if options.bootstrap:
        fate = "kept (--keep-topics)" if options.keep_topics else "deleted at the end"
        print(f"topics {prefix}* on {options.bootstrap}: {fate}")
    feeder = _Feeder(topics, live, delay=options.outcome_delay)
    try:
        scorer, trainer = _start(transport, topics, options, key, outcome.artifact, artifact)
        where = options.bootstrap or "the embedded memory bus"
        if options.bootstrap is None:
            how = "driven by the event clock: the same --seed gives the same numbers"
        else:
            how = "in threads as in production: timing, and so the numbers, vary by run"
        loop = "on" if options.loop else "OFF (first model only)"
        print(f"streaming {len(live)} live votes and their outcomes on {where}, {how}; loop {loop}")
        total = len(live) + len(POISON)
        watchdog = _Watchdog(scorer, total=total, outcomes=len(live))
        producer = transport.producer()
        try:
            with _ctrl_c_flags(watchdog):
                if options.bootstrap is None:
                    _stream_on_event_clock(
                        producer,
                        feeder,
                        scorer,
                        trainer,
                        rate=options.rate,
                        answer_delay=options.answer_delay,
                        watchdog=watchdog,
                    )
                else:
                    _stream_on_threads(
                        producer, feeder, scorer, trainer, rate=options.rate, watchdog=watchdog
                    )
        finally:
            producer.close()
        print("  " + watchdog.status())
        seconds = time.monotonic() - watchdog.started
        signals = _read(transport, topics.signals, expect=len(live))
        requests = _read(
            transport, topics.control, expect=len(scorer.stats.drift_requests), timeout=5
        )
        published = _read(
            transport, topics.models, expect=len(scorer.stats.model_versions), timeout=5
        )
    except KeyboardInterrupt:
        deleted = owned.delete()
        where = f"demo stopped at live vote {feeder.sent} of {len(live)}"
        if deleted:
            where += f"; deleted its topics {prefix}*"
        raise KeyboardInterrupt(where) from None
    finally:
        if owned.delete():
            print(f"deleted the demo's topics {prefix}* (--keep-topics keeps them)")
        transport.close()
    models = [load_artifact(document, keys=[key]) for document in published]
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
        verdicts=trainer.verdicts if trainer is not None else [],
    )
    if options.summary_json is not None:
        options.summary_json.parent.mkdir(parents=True, exist_ok=True)
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _start(
    transport: Transport,
    topics: Topics,
    options: DemoOptions,
    key: bytes,
    first: Artifact,
    signed: str,
) -> tuple[Scorer, TrainerService | None]:
    """Publish the first model; make the scorer and (loop on) the trainer."""
    producer = transport.producer()
    producer.send(topics.models, key=model_key(*model_identity(first)), value=signed.encode())
    producer.flush()
    producer.close()
    # On the memory bus every poll returns at once: the event clock, not a wait, paces it.
    poll_ms = 0 if options.bootstrap is None else 20
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(
            topics=topics,
            group_id=f"{topics.prefix}scorer",
            exactly_once=options.exactly_once,
            transactional_id=f"{topics.prefix}scorer-0",
            poll_timeout_ms=poll_ms,
            drift_min_outcomes=3000,
            drift_cooldown_outcomes=6000,
            drift_settle_outcomes=4000,
            # The demo replays hours of events in seconds: a model must be picked up within a
            # few batches, not half a (compressed) second later.
            model_check_interval_s=0.0,
            # The demo prints its own live line.
            status_interval_s=0.0,
        ),
        keys=[key],
    )
    if not options.loop:
        return scorer, None
    trainer = TrainerService(
        transport=transport,
        options=TrainerOptions(
            topics=topics,
            group_id=f"{topics.prefix}trainer",
            transactional_id=f"{topics.prefix}trainer",
            window_rows=15_000,
            splits=3,
            poll_timeout_ms=poll_ms or 200,
            status_interval_s=0.0,
        ),
        keys=[key],
    )
    return scorer, trainer


def summarise(
    *,
    options: DemoOptions,
    live: Committee,
    signals: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    models: list[Artifact],
    scorer: Scorer,
    first_model: CompiledModel,
    step_index: int,
    decay_index: int,
    report: dict[str, Any],
    seconds: float,
    verdicts: Sequence[Verdict] = (),
) -> dict[str, Any]:
    index = {str(event_id): i for i, event_id in enumerate(live.ids)}
    n = len(live)
    decisions = np.zeros(n, dtype=np.int64)
    versions = np.zeros(n, dtype=np.int64)
    for sent in signals:
        i = index.get(sent["id"])
        if i is not None:
            decisions[i], versions[i] = sent["decision"], sent["model_version"]
    labels = live.labels.astype(np.int64)
    baseline = first_model.decide(first_model.predict_proba(live.votes)).astype(np.int64)
    after = slice(step_index, n)
    timeline = [
        Mark(
            step_index,
            "injected",
            f"injected: trade rate steps to {options.drifted_rate:.0%} (label shift)",
        ),
        Mark(decay_index, "injected", "injected: member m8 starts to decay"),
    ]
    drift_events = []
    requested_at = {}
    for request in requests:
        at = int(np.searchsorted(live.time_ms, request.get("at_event_ts") or 0))
        requested_at[request.get("id")] = (at, request["kind"])
        source = request.get("evidence", "outcomes")  # label_free: from the scores alone
        drift_events.append(
            {"at": at, "kind": request["kind"], "reason": request["reason"], "source": source}
        )
        timeline.append(
            Mark(at, request["kind"], f"drift: {request['kind']} requested ({request['reason']})")
        )
    refused = []
    for verdict in verdicts:
        if verdict.outcome != "refused":
            continue
        # The answer lands shortly after the request; the request's position places it.
        at, kind = requested_at.get(verdict.request_id, (n, "?"))
        refused.append({"at": at, "kind": kind, "detail": verdict.detail})
        timeline.append(Mark(at, "refused", f"{kind} candidate {verdict.detail}"))
    for model in models[1:]:
        version = model["model"]["version"]
        live_from = np.flatnonzero(versions == version)
        at = int(live_from[0]) if len(live_from) else n
        gate = model.get("gate") or {}
        when = "live" if len(live_from) else "published after the last event"
        shift = gate.get("label_shift") or {}
        calibration = (
            f"; difference {shift['difference']:+.4f}, upper bound {shift['upper_bound']:+.4f}; "
            f"re-weighted log-loss {shift['calibration_before']:.4f} -> "
            f"{shift['calibration_after']:.4f}"
            if shift
            else ""
        )
        timeline.append(
            Mark(
                at,
                "live",
                f"model v{version} {when} ({model['request']['kind']}: gate {gate.get('metric')} "
                f"{gate.get('candidate', float('nan')):.3f} vs champion "
                f"{gate.get('champion', float('nan')):.3f}{calibration})",
            )
        )
    timeline.sort(key=lambda mark: mark.at)
    print("timeline (live event index):")
    for mark in timeline:
        print(f"  {mark.at:>7}  {mark.text}")
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
        "label_shift_retunes": kinds.count("label_shift"),
        "refused": len(refused),
        "refused_candidates": refused,
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
        f"with the first model only; {summary['label_shift_retunes']} label-free re-tune(s), "
        f"{summary['retunes']} re-tune(s), "
        f"{summary['retrains']} retrain(s); {stats.dlq} dead letters"
    )
    (options.out / "timeline.html").write_text(
        timeline_html(labels, decisions, baseline, versions, timeline, summary), encoding="utf-8"
    )
    print(f"timeline plot: {summary['timeline']}")
    return summary
