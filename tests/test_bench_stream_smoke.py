"""Smoke test of the streaming benchmark: the in-process part of ``--quick``, no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

bench = pytest.importorskip("bench.stream")
pytest.importorskip("psutil")  # the benchmark's machine notes and workers use it


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_inproc_writes_its_table_and_keeps_other_sections(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    other = "<!-- trainer:begin -->\n## Trainer\n\nkept\n<!-- trainer:end -->\n"
    out.write_text(f"# Benchmarks\n\n{other}", encoding="utf-8")
    argv = ["--out", str(out), "--quick", "--parts", "inproc"]
    assert bench.main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert other in text
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    section = text[text.index(bench.BEGIN) : text.index(bench.END)]
    assert "Command: `python -m bench.stream --out" in section
    assert "### 1. In-process hot path" in section
    rows = [line for line in section.splitlines() if line.startswith("| stdlib json |")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    shares = [float(cell.split("(")[1].split("%")[0]) for cell in cells[1:4]]
    assert abs(sum(shares) - 100) <= 2  # decode + score + encode make up the pipeline
    assert float(cells[4].replace(",", "")) > 0  # pipeline votes/s
    assert float(cells[5]) == pytest.approx(1.0)  # the baseline against itself
    assert float(cells[6].replace(",", "")) > 0  # Scorer.step votes/s
    assert "Not run this time: throughput, latency, memory." in section
    # Writing again replaces the section instead of appending another one.
    bench.write_section(out, f"{bench.BEGIN}\nnew\n{bench.END}\n")
    again = out.read_text(encoding="utf-8")
    assert again.count(bench.BEGIN) == 1 and "\nnew\n" in again and other in again


def test_quix_app_scores_like_the_scorer() -> None:
    """The Quix baseline's per-vote scoring gives the scorer's batch decisions and scores."""
    import numpy as np
    import orjson

    from bench.stream_quix import scoring_function
    from metasignal.stream.artifact import example_artifact
    from metasignal.stream.messages import decode_vote, encode_vote, vote_matrix
    from metasignal.stream.scoring import CompiledModel

    members = tuple("abcdefgh")
    model = CompiledModel.from_artifact(example_artifact(members))
    rng = np.random.default_rng(3)
    wire = []
    for i, row in enumerate(rng.uniform(0.2, 0.8, size=(400, len(members))).tolist()):
        votes = dict(zip(members, row, strict=True))
        if i % 7 == 0:
            del votes["c"]  # a missing member: imputed on both paths
        wire.append(encode_vote(f"e{i}", 1_700_000_000_000 + i, votes))
    # The scorer's path: decode, matrix in model order, one batch through the model.
    decoded = [decode_vote(raw) for raw in wire]
    matrix, errors = vote_matrix(decoded, members, reject_unknown=False, reject_missing=False)
    assert not any(errors)
    scores = model.predict_proba(matrix)
    expected = model.decide(scores).tolist()
    assert 0 < sum(expected) < len(expected)  # both decisions occur
    # The Quix app's path: Quix's JSON deserializer (orjson), one vote per call.
    score = scoring_function(model)
    signals = [score(orjson.loads(raw)) for raw in wire]
    assert [s["decision"] for s in signals] == expected
    assert [s["id"] for s in signals] == [v.id for v in decoded]
    assert np.allclose([s["score"] for s in signals], scores, rtol=0, atol=1e-12)


def test_goals_are_judged_from_paired_runs_and_unmeasured_ones_say_so() -> None:
    from bench import stream_goals as goals
    from bench.stream_broker import ThroughputResult, ThroughputRun

    def run(kind: str, variant: str, rep: int, rate: float) -> ThroughputRun:
        return ThroughputRun(
            kind=kind, mode="at-least-once", variant=variant, rep=rep, votes=1000, rate=rate,
            steady_s=1.0, startup_s=1.0, cpu_s=1.0, steady_cpu_s=0.01, steady_votes=1000,
            wall_s=2.0, threads_cpu={}, rss=0, signals_end=1000, crc32c="C extension",
        )  # fmt: skip

    confluent, quix = goals.CONFLUENT.label, goals.QUIX.label
    tp = ThroughputResult(
        runs=[
            run("scorer", confluent, 0, 90_000.0),
            run("quix", quix, 0, 30_000.0),  # x3.0
            run("scorer", confluent, 1, 60_000.0),
            run("quix", quix, 1, 30_000.0),  # x2.0: the median of 3.0 and 2.0 is 2.5
        ],
        n_votes=1000,
        repeats=2,
        ratios={("at-least-once", confluent): [0.7, 0.95]},  # median 0.825
    )
    judged = {g.name: g for g in goals.evaluate(None, tp, [])}
    vs_quix = judged["scorer on confluent ÷ Quix Streams app, at-least-once (votes/s)"]
    assert (vs_quix.measured, vs_quix.met) == ("2.50", True)
    vs_bare = judged["scorer ÷ bare passthrough, confluent, at-least-once (votes/s)"]
    assert (vs_bare.measured, vs_bare.met) == ("0.82", True)
    eos = judged["scorer on confluent ÷ Quix Streams app, exactly-once (votes/s)"]
    assert eos.met is None  # no exactly-once runs: not measured, never "met"
    p99 = judged["p99 vote-to-signal at 1,000 votes/s, confluent, exactly-once"]
    assert p99.met is None
    text = "\n".join(goals.render_goals(list(judged.values()), {"at-least-once": (1000, 1)}))
    assert "| 1 of 1,000 differ | 0 differ | **missed** |" in text
    assert "not measured" in text


def test_scorer_options_pass_through_only_when_the_scorer_has_them() -> None:
    options = bench.parse_scorer_options(
        ["batch_size=250", "track_outcomes=false", "no_such_option_here=1"]
    )
    assert options == {"batch_size": 250, "track_outcomes": False}
    with pytest.raises(SystemExit, match="expected NAME=VALUE"):
        bench.parse_scorer_options(["batch_size"])
