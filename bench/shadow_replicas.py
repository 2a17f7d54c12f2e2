"""Two scorer replicas: one test on the summed evidence against one test per replica.

``python -m bench.shadow_replicas --out docs/benchmarks.md [--quick]`` takes the paired
decision tables of ``bench/shadow.py`` (two real ``optimal_threshold`` fits, equal quality
and +0.05 F1) and draws streams of joined outcomes split over two replicas (half the
outcomes each, as two replicas over an even number of partitions see them), 500 outcomes
per commit span. On the same streams it runs:

* **summed** (what the service does): the trainer's one
  :class:`~metasignal.stream.drift.promotion.ShadowComparison` on both replicas'
  cumulative counts, looked at each commit (:meth:`ShadowComparison.look_at`);
* **per replica** (the design it replaces): each replica's own test on its half, the first
  verdict deciding (a promotion if either replica's first verdict is ``"better"``).

It reports false promotions (equal quality), promotions (+0.05 F1), and summed outcomes to a
verdict. Counts only: no timing, so the machine's load does not matter. The markdown lands
between the ``shadow-replicas`` markers of ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.markdown import write_section
from bench.shadow import FULL, QUICK, SEED, Plan, make_pairs, wilson_upper
from metasignal.stream.drift.promotion import ShadowComparison

SPAN = 500  # joined outcomes per commit span, over both replicas
log = logging.getLogger("bench.shadow_replicas")


@dataclass(frozen=True)
class Runs:
    """Per run: the verdict and the summed outcomes when it came, for both designs."""

    summed: list[tuple[str, int]]
    per_replica: list[tuple[str, int]]


# The test's futility rule: the default (min_improvement 0.03) and the former one (None:
# retired only when significantly worse or at the horizon).
RULES: dict[str, float | None] = {"futility (default)": 0.03, "former (no futility)": None}


def one_stream(
    table: np.ndarray, rng: np.random.Generator, min_improvement: float | None
) -> tuple[tuple[str, int], ...]:
    def test() -> ShadowComparison:
        return ShadowComparison(min_improvement=min_improvement)

    summed, replicas = test(), [test(), test()]
    p = table / table.sum()
    counts = np.zeros((2, 8), dtype=np.int64)
    decided: tuple[str, int] | None = None
    at_summed = 0
    # Each replica's horizon is its own half: twice the summed outcomes of the summed test's.
    for step in range(1, 2 * summed.max_outcomes // SPAN + 1):
        counts += rng.multinomial(SPAN // 2, p, size=2)
        if summed.verdict is None:
            summed.look_at(counts.sum(axis=0))
            at_summed = step * SPAN
        if decided is None:
            verdicts = [test.look_at(counts[i]) for i, test in enumerate(replicas)]
            if any(verdicts):
                first = "better" if "better" in verdicts else "not_better"
                decided = (first, step * SPAN)
        if summed.verdict is not None and decided is not None:
            break
    assert decided is not None  # both replicas reach their horizon by the last step
    return (str(summed.verdict), at_summed), decided


def simulate(table: np.ndarray, runs: int, seed: int, min_improvement: float | None) -> Runs:
    rng = np.random.default_rng(seed)
    pairs = [one_stream(table, rng, min_improvement) for _ in range(runs)]
    return Runs(summed=[s for s, _ in pairs], per_replica=[r for _, r in pairs])


def rate_text(results: list[tuple[str, int]]) -> str:
    hits = sum(verdict == "better" for verdict, _ in results)
    runs = len(results)
    return f"{hits / runs:.3f} ({hits}/{runs}, 95 % upper {wilson_upper(hits, runs):.3f})"


def median_at(results: list[tuple[str, int]], verdict: str = "better") -> str:
    at = [n for v, n in results if v == verdict]
    return f"{int(np.median(at)):,}" if at else "—"


def render(plan: Plan, rows: list[tuple[float, str, Runs, Runs]], *, command: str,
           started: datetime, elapsed: float) -> str:  # fmt: skip
    lines = [
        "<!-- shadow-replicas:begin -->",
        "## Shadow evidence from two scorer replicas: one summed test against one per replica",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC (took {elapsed / 60:.1f} min, plan {plan.name}).",
        "",
        "Streams of joined outcomes drawn from the paired decision tables of `bench/shadow.py` "
        "(two real `optimal_threshold` fits; *equal*: exchangeable, F1 exactly equal; "
        "*+0.05*: the champion's F1 0.05 below the shadow's), split evenly over two replicas, "
        f"{SPAN} outcomes per commit span. *Summed*: the trainer's one `ShadowComparison()` "
        "(defaults: alpha 0.05, looks every 500 from 2,000 to 50,000) on both replicas' counts "
        "(`look_at`). *Per replica*: the design it replaces, each replica's own test on its "
        "half, the first verdict deciding. Both with the default futility stop "
        "(`min_improvement` 0.03: retired once an improvement of 0.03 F1 is ruled out) and "
        "with the former rule (`min_improvement=None`), on the same streams. Counts only "
        "(no timing).",
        "",
        "| rate | rule | runs | false promotions, summed | false promotions, per replica | "
        "promoted at +0.05, summed | promoted at +0.05, per replica | median summed outcomes "
        "to promote, summed | per replica |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate, rule, null, power in rows:
        lines.append(
            f"| {rate:.0%} | {rule} | {len(null.summed):,} / {len(power.summed):,} | "
            f"{rate_text(null.summed)} | {rate_text(null.per_replica)} | "
            f"{rate_text(power.summed)} | {rate_text(power.per_replica)} | "
            f"{median_at(power.summed)} | {median_at(power.per_replica)} |"
        )
    lines += ["", "<!-- shadow-replicas:end -->"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow_replicas", description=__doc__)
    parser.add_argument("--out", type=Path, help="markdown file to update (shadow-replicas)")
    parser.add_argument("--quick", action="store_true", help="a small plan (smoke test)")
    parser.add_argument("--runs", type=int, default=None, help="streams per case")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("metasignal").setLevel(logging.WARNING)
    plan = QUICK if args.quick else FULL
    runs = args.runs or (100 if args.quick else 2_000)
    command = "python -m bench.shadow_replicas" + (" --quick" if args.quick else "")
    if args.runs:
        command += f" --runs {args.runs}"
    if args.out:
        command += f" --out {args.out}"
    started, clock = datetime.now(UTC), time.perf_counter()
    rows = []
    for rate in plan.rates:
        pairs = make_pairs(plan, rate)
        log.info("rate %.2f: tables ready", rate)
        for rule, min_improvement in RULES.items():
            null = simulate(pairs.equal, runs, SEED, min_improvement)
            power = simulate(pairs.better, runs, SEED + 1, min_improvement)
            rows.append((rate, rule, null, power))
    section = render(plan, rows, command=command, started=started,
                     elapsed=time.perf_counter() - clock)  # fmt: skip
    if args.out:
        write_section(args.out, "shadow-replicas", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
