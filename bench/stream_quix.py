"""The Quix Streams baseline of :mod:`bench.stream`: the same scoring as a Quix Streams app.

What a Quix Streams user would write to score votes: an ``Application`` with a consumer
group and a ``processing_guarantee``, a JSON input topic, ``sdf.apply(score)`` and
``sdf.to_topic(signals)``, everything else at Quix's defaults (``commit_interval`` 5 s,
its librdkafka settings). The scoring is the product's own: the signed artifact from the
models topic, verified by :func:`metasignal.stream.artifact.load_artifact` and compiled by
:class:`metasignal.stream.scoring.CompiledModel`, one vote per call (Quix hands ``apply``
one value at a time), so the decisions can be checked identical to the scorer's.

Quix Streams pins confluent-kafka below the version the product's ``confluent`` extra
needs, so it lives in its own virtualenv (``make bench-quix-env``: ``.venv-quix`` with
``metasignal[bench-quix]``); :mod:`bench.stream_worker` runs this app there.
"""

from __future__ import annotations

import tempfile
import threading
import time
import timeit
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bench.stream_worker import Loop, WorkerArgs
    from metasignal.stream.scoring import CompiledModel

# The parent's worker bookkeeping (sustained-rate window, progress) is updated once per
# this many votes, not per vote: Quix calls back once per message.
TALLY_EVERY = 500
# Where the benchmark looks for the Quix virtualenv, relative to the repository.
QUIX_VENV = Path(".venv-quix")


def latest_model(bootstrap: str, topic: str, key: bytes) -> CompiledModel:
    """The newest artifact on the models topic, verified and compiled by the product's code."""
    from kafka import KafkaConsumer, TopicPartition

    from metasignal.stream.artifact import load_artifact
    from metasignal.stream.scoring import CompiledModel

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], client_id="bench-quix-models")
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        if end == 0:
            raise SystemExit("bench quix: no model on the models topic")
        consumer.seek(tp, end - 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                artifact = load_artifact(records[-1].value, keys=[key])
                return CompiledModel.from_artifact(artifact)
        raise SystemExit("bench quix: the models topic did not answer in 30 s")
    finally:
        consumer.close()


def scoring_function(model: CompiledModel) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``vote document -> signal document``, the scorer's fields and formula, one vote a call.

    A member missing from the vote is NaN, which the compiled model imputes, as
    :func:`metasignal.stream.messages.vote_matrix` does for the scorer.
    """
    members = model.members
    threshold = model.threshold
    name, version = model.name, model.version
    nan = float("nan")

    def score(vote: Mapping[str, Any]) -> dict[str, Any]:
        get = vote["votes"].get
        scores = model.predict_proba(np.array([[get(m, nan) for m in members]]))
        return {
            "id": vote["id"],
            "ts": vote["ts"],
            "decision": int(model.decide(scores)[0]),
            "score": float(scores[0]),
            "threshold": threshold,
            "size": float(model.size(scores)[0]),
            "model": name,
            "model_version": version,
            "scored_at": int(time.time() * 1000),
        }

    return score


def score_cost_us(model: CompiledModel, documents: Sequence[Mapping[str, Any]]) -> float:
    """In-process µs per vote of the app's ``score`` (no broker, no Quix): the share of the
    app's CPU per vote that is the product's model called one row at a time. Fastest of 5."""
    score = scoring_function(model)
    best = min(timeit.timeit(lambda: [score(d) for d in documents], number=1) for _ in range(5))
    return 1e6 * best / max(len(documents), 1)


def run_quix(args: WorkerArgs, loop: Loop) -> dict[str, Any]:
    """The Quix Streams app, with the worker's bookkeeping hooked onto Quix's callbacks."""
    from quixstreams import Application

    model = latest_model(args.bootstrap, args.models_topic, args.signing_key.encode())
    tally = Tally(loop)
    state = tempfile.TemporaryDirectory(prefix="bench-quix-state-")  # stateless: stays empty
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if args.exactly_once else "at-least-once",
        on_message_processed=tally.on_message_processed,
        state_dir=state.name,
        loglevel="WARNING",
    )
    votes = app.topic(args.votes_topic, value_deserializer="json")
    signals = app.topic(f"{args.out_prefix}signals", value_serializer="json")
    sdf = app.dataframe(votes)
    sdf = sdf.apply(scoring_function(model))
    sdf.to_topic(signals)
    watcher = threading.Thread(target=watch_assignment, args=(app, loop), daemon=True)
    watcher.start()
    # count=N: Quix stops after N outputs (one signal per vote); 0 runs until SIGTERM,
    # which Quix handles itself by committing its checkpoint and leaving the group.
    try:
        if args.count > 0:
            app.run(count=args.count)
        else:
            app.run()
    finally:
        state.cleanup()
    tally.finish()
    loop.end_window()
    return {"signals": tally.votes, "dlq": 0}


def watch_assignment(app: Any, loop: Loop, fallback_s: float = 10.0) -> None:
    """Report ``ready`` once Quix's consumer holds the vote partition (Quix has no public
    hook for that; the benchmark waits for it before it starts the latency clock). Should a
    Quix release drop the private attribute, ``ready`` comes after ``fallback_s`` instead
    (the group has long been joined by then; the latency runs leave their first 2 s out)."""
    started = time.monotonic()
    while not loop.ready:
        consumer = getattr(app, "_consumer", None)
        try:
            assigned = bool(consumer is not None and consumer.assignment())
        except RuntimeError:  # the consumer is not open yet
            assigned = False
        if assigned or (consumer is None and time.monotonic() - started > fallback_s):
            loop.announce_ready(True)
            return
        time.sleep(0.05)


class Tally:
    """Counts Quix's processed messages and hands them to the worker loop in batches."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.votes = 0
        self.pending = 0

    def on_message_processed(self, _topic: str, _partition: int, _offset: int) -> None:
        self.votes += 1
        self.pending += 1
        if self.pending >= TALLY_EVERY:
            self.flush()

    def flush(self) -> None:
        self.loop.after_batch(self.pending)
        self.pending = 0

    def finish(self) -> None:
        """Count the votes since the last tally without moving the window's end, which
        would otherwise take in Quix's shutdown (the scorer's window ends at its last batch)."""
        self.loop.votes += self.pending
        self.pending = 0
