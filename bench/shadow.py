"""What a shadow costs the scorer: ``Scorer.step`` with and without a model in shadow.

Both scorers run the real loop iteration (:meth:`metasignal.stream.scorer.Scorer.step`) on
the null transport of :mod:`bench.stream_inproc` (sends and commits cost nothing), over the
same pre-built batches of 500 vote records, with outcome tracking on (the join cache is
where the shadow's decisions are kept). The one with a shadow scores every batch twice (one
extra vectorised predict) and writes the shadow's decisions beside the champion's. Passes
alternate between the two so the machine's noise hits both alike; the figure is the ratio
of their best passes. Joined outcomes are not part of it: per outcome the shadow adds a few
comparisons and, per batch, one ``ShadowComparison.update``.

    nice -n -20 .venv/bin/python -m bench.shadow
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from bench.machine import cpu_model, load_average
from bench.markdown import markers, write_section
from bench.stream_data import SIGNING_KEY, build_inputs
from bench.stream_inproc import NullTransport, _ModelsConsumer, make_batches, new_scorer, step_pass
from metasignal.stream.artifact import dumps_artifact, sign_artifact
from metasignal.stream.transport.base import Consumer, RebalanceListener, Record

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


class ShadowNullTransport(NullTransport):
    """The null transport, whose ``models`` topic also holds a shadow."""

    def __init__(self, artifact: bytes, shadow: bytes, batches: list[list[Record]]) -> None:
        super().__init__(artifact, batches)
        self._shadow = shadow

    def consumer(
        self,
        *,
        topics: Sequence[str] = (),
        group_id: str | None = None,
        listener: RebalanceListener | None = None,
        read_committed: bool = False,
        assign_all: Sequence[str] = (),
        from_beginning: bool = True,
    ) -> Consumer:
        if not assign_all:
            return super().consumer(topics=topics, group_id=group_id, listener=listener)
        now = int(time.time() * 1000)
        return _ModelsConsumer(
            [
                Record(assign_all[0], 0, 0, b"meta@1", self._artifact, now),
                Record(assign_all[0], 0, 1, b"meta@2", self._shadow, now),
            ]
        )


def shadow_of(artifact: bytes) -> bytes:
    """Version 2 of the champion, in shadow, with another threshold (a different model)."""
    document = copy.deepcopy(json.loads(artifact))
    document.pop("signature")
    document["model"]["version"] = 2
    document["stage"] = "shadow"
    document["threshold"]["value"] = min(0.99, document["threshold"]["value"] * 1.5)
    return dumps_artifact(sign_artifact(document, SIGNING_KEY)).encode()


def run(n_votes: int, repeats: int) -> dict[str, object]:
    inputs = build_inputs(n_votes)
    batches = make_batches(inputs, n_votes)
    plain = new_scorer(inputs, batches)
    shadowed = new_scorer(inputs, batches)
    # The same scorer, built on a transport whose models topic also carries the shadow.
    shadowed.transport = ShadowNullTransport(inputs.artifact, shadow_of(inputs.artifact), batches)
    shadowed._models_consumer = shadowed.transport.consumer(assign_all=["bench.models"])
    shadowed.load_models()
    if shadowed.feedback.shadow.pair != (1, 2, "challenger"):
        raise RuntimeError(f"no shadow in the slot: {shadowed.feedback.shadow.pair}")
    rates: dict[str, list[float]] = {"champion only": [], "champion + shadow": []}
    for _ in range(repeats):
        for name, scorer in (("champion only", plain), ("champion + shadow", shadowed)):
            seconds, votes = step_pass(scorer, len(batches))
            rates[name].append(votes / seconds)
    best = {name: max(values) for name, values in rates.items()}
    return {
        "n_votes": n_votes,
        "repeats": repeats,
        "rates": rates,
        "best": best,
        "ratio": best["champion + shadow"] / best["champion only"],
    }


def section(result: dict[str, object], command: str) -> str:
    begin, end = markers("shadow")
    best = result["best"]
    assert isinstance(best, dict)
    rows = "\n".join(f"| {name} | {rate:,.0f} |" for name, rate in best.items())
    return f"""{begin}
## Shadow scoring overhead (issue 13 §3)

`{command}` — {result["n_votes"]:,} votes in batches of 500, best of {result["repeats"]}
alternating passes of the real `Scorer.step` (null transport, outcome tracking on), niced to
-20 on {cpu_model()}, load average {load_average()} (a shared machine: ratios, not absolutes).

| scorer | votes/s (best pass) |
|---|---|
{rows}

A model in shadow keeps **{result["ratio"]:.2f}×** the champion-only throughput: one more
vectorised predict per batch and two more join-cache columns. Joined outcomes are not in this
figure (per batch, one `ShadowComparison.update` on arrays).
{end}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument("--votes", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args.votes, args.repeats)
    print(json.dumps(result, indent=2))
    if args.write:
        nice = "nice -n -20 " if os.nice(0) < 0 else ""
        command = f"{nice}.venv/bin/python -m bench.shadow --votes {args.votes} --write"
        write_section(DOCS, "shadow", section(result, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
