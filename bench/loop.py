"""F1 over time on the drifting demo stream, with the closed loop on and off.

``python -m bench.loop --out docs/benchmarks.md [--quick]`` runs ``metasignal
demo`` on the embedded memory bus for several seeds (trade rate 1 % -> 4 % at
40 % of the stream as a label shift, the best member decaying from 60 %) and reports F1 per
eighth of the live stream for the loop and for the first model alone, scored
on the same events in the same run.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.markdown import markers, write_section
from metasignal.trainer.demo import DemoOptions, run_demo

BEGIN, END = markers("loop")


def run(seeds: Sequence[int], events: int) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            options = DemoOptions(events=events, seed=seed, rate=0.0, out=Path(tmp) / str(seed))
            out.append(run_demo(options))
    return out


def render(summaries: list[dict[str, Any]], *, command: str, events: int) -> str:
    seeds = len(summaries)
    segments = summaries[0]["f1_by_segment"]
    lines = [
        BEGIN,
        "## Closed loop: F1 over time on the drifting demo stream",
        "",
        f"Command: `{command}` — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        "2 shared cores (noisy).",
        "",
        f"{events:,} events per run, {seeds} seeds; the first 20 % fit model v1, the rest is "
        "streamed with outcomes 500 events behind their votes. Trade rate 1 % -> 4 % at 40 % "
        "of the stream as a label shift (`generate_committee(label_shift=True)`: each class's "
        "votes keep their distribution, the ranking holds) (live event "
        f"{int(events * 0.2):,}), best member decaying from 60 % (live event "
        f"{int(events * 0.4):,}). *First model* scores the same events with v1 only.",
        "",
        "| live events | F1 loop on (mean ± sd) | F1 first model only | difference |",
        "|---|---|---|---|",
    ]
    for k, segment in enumerate(segments):
        loop = np.array([s["f1_by_segment"][k]["loop"] for s in summaries])
        first = np.array([s["f1_by_segment"][k]["first_model"] for s in summaries])
        lines.append(
            f"| {segment['start']:,}–{segment['stop']:,} | {loop.mean():.3f} ± {loop.std():.3f} "
            f"| {first.mean():.3f} ± {first.std():.3f} | {loop.mean() - first.mean():+.3f} |"
        )
    after = np.array([s["f1_after_drift"] for s in summaries])
    without = np.array([s["f1_after_drift_without_loop"] for s in summaries])
    retunes = [s["retunes"] for s in summaries]
    label_free = [s["label_shift_retunes"] for s in summaries]
    first_request = [
        next((f"{e['kind']}/{e['source']}@{e['at']:,}" for e in s["drift_events"]), "none")
        for s in summaries
    ]
    retrains = [s["retrains"] for s in summaries]
    lines += [
        "",
        f"F1 after the rate step: **{after.mean():.3f}** with the loop vs "
        f"**{without.mean():.3f}** without (per seed: "
        + ", ".join(f"{a:.3f}/{w:.3f}" for a, w in zip(after, without, strict=True))
        + f"); models published per run: label-free re-tunes {label_free}, outcome re-tunes "
        f"{retunes}, retrains {retrains}; first request per run: {', '.join(first_request)}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loop", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="markdown file to update")
    parser.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    args = parser.parse_args(argv)
    command = "python -m bench.loop " + " ".join(sys.argv[1:] if argv is None else argv)
    logging.getLogger("metasignal").setLevel(logging.ERROR)
    seeds, events = ((7,), 40_000) if args.quick else ((7, 8, 9), 100_000)
    summaries = run(seeds, events)
    write_section(args.out, "loop", render(summaries, command=command, events=events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
