"""``metasignal fit`` end to end on a 1M-row CSV: wall time and peak RSS, against a baseline.

The baseline is another commit of this repository (``git archive`` into a temporary
directory, run with the same interpreter), so both sides run in the same session on the
same file, alternating, as the machine is shared and noisy. The CSV is the synthetic
committee generator's (what ``metasignal synth`` wrote before its ids carried the start and
seed). Writes the ``fit-cli`` section of docs/benchmarks.md.

    python -m bench.fit_cli --baseline e3d48db --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench.markdown import markers, write_section
from metasignal.trainer.synthetic import generate_committee

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-signing-key-0123456789abcdef0123"


def checkout(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (symlinks kept) under ``into``."""
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="tar")
    return into


def run_fit(tree: Path, data: Path, out: Path) -> dict[str, float]:
    """One fresh ``python -m metasignal.trainer.cli fit`` process under /usr/bin/time -v."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "metasignal.trainer.cli", "fit",
               "--data", str(data), "--label", "label", "--time", "ts", "--out", str(out),
               "--quiet"]  # fmt: skip
    env = {**os.environ, "METASIGNAL_SIGNING_KEY": KEY}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr)
    assert wall and rss and len(cpu) == 2, done.stderr
    hours, minutes, seconds = (float(g or 0) for g in wall.groups())
    summary = json.loads(done.stdout.splitlines()[-1])
    return {
        "wall": hours * 3600 + minutes * 60 + seconds,
        "cpu": sum(float(c) for c in cpu),
        "rss_mb": int(rss.group(1)) / 1024,
        "fit": float(summary["fit_seconds"]),
        "f1": float(summary["holdout_f1"]),
        "load": os.getloadavg()[0],
    }


def section(
    rows: dict[str, list[dict[str, float]]], baseline: str, events: int, niceness: int = 0
) -> str:
    begin, end = markers("fit-cli")
    nice = f"nice -n {niceness} " if niceness else ""
    lines = [
        begin,
        "## `metasignal fit` on a 1M-row CSV (reading vote tables)",
        "",
        f"`{nice}python -m bench.fit_cli --baseline {baseline} --events {events} --rounds "
        f"{len(next(iter(rows.values())))} --out docs/benchmarks.md`"
        + (
            f" (niceness {niceness}: the measured processes get a core ahead of the other "
            "sessions' work on the shared machine, without changing what they compute)"
            if niceness
            else ""
        )
        + ": a "
        f"{events:,}-row, 8-member synthetic CSV (seed 0, 2 % positives, 200 MB), the whole "
        "`metasignal fit` command (imports, reading, fitting, writing) as a fresh process "
        "under `/usr/bin/time -v`, baseline and this tree alternating in one session. "
        "Goal: <= 20 s wall and <= 1 GB RSS.",
        "",
        "| tree | runs | wall s | CPU s (user+sys) | fit_seconds | wall - fit s | peak RSS MB |"
        " holdout F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        wall = statistics.median(r["wall"] for r in runs)
        fit = statistics.median(r["fit"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        lines.append(
            f"| {name} | {len(runs)} | {wall:.1f} | {cpu:.1f} | {fit:.1f} | {wall - fit:.1f} | "
            f"{max(r['rss_mb'] for r in runs):.0f} | {runs[0]['f1']:.4f} |"
        )
    base, new = rows[f"baseline {baseline}"], rows["this tree"]
    ratio = statistics.median(n["wall"] / b["wall"] for b, n in zip(base, new, strict=True))
    rest = statistics.median(
        (n["wall"] - n["fit"]) / (b["wall"] - b["fit"]) for b, n in zip(base, new, strict=True)
    )
    memory = max(r["rss_mb"] for r in new) / max(r["rss_mb"] for r in base)
    loads = [r["load"] for r in (*base, *new)]
    lines += [
        "",
        "Medians over runs (peak RSS: the largest run). Ratios this tree / baseline (median of "
        f"pairs): wall {ratio:.2f}, wall minus fit {rest:.2f}, peak RSS {memory:.2f}. "
        "*fit_seconds* is the trainer itself (walk-forward of the candidate strategies, "
        "calibration, threshold, refit); *wall - fit* is start-up imports, reading and "
        "validating the CSV, and writing the artifact and reports. CPU seconds are the "
        "steadier figure on the shared 2-core machine, where a process often gets a "
        f"fraction of a core (1-minute load average {min(loads):.1f}-{max(loads):.1f} after "
        "the runs): on an idle core the wall time of this mostly single-threaded command is "
        "about its CPU time.",
        end,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="git ref to compare against")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "votes.csv"
        # The generator's default ids (evt-0000001...): byte for byte the file the previous
        # `metasignal synth --events N` wrote, which the figures were measured on.
        generate_committee(n_events=args.events, seed=0).to_csv(data)
        trees = {f"baseline {args.baseline}": checkout(args.baseline, work / "base"),
                 "this tree": REPO}  # fmt: skip
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                result = run_fit(tree, data, work / f"out-{round_}")
                print(name, json.dumps(result), flush=True)
                rows[name].append(result)
    section_text = section(rows, args.baseline, args.events, niceness=os.nice(0))
    write_section(args.out, "fit-cli", section_text)


if __name__ == "__main__":
    main()
