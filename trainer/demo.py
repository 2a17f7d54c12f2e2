"""``metasignal demo`` before the stream exists: generate, fit, evaluate, inspect."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from stream.artifact import dumps_artifact, read_artifact, sign_artifact
from stream.scoring import CompiledModel
from trainer.data import load_table
from trainer.fit import FitConfig, fit_meta_model, holdout_metrics
from trainer.report import render_html
from trainer.synthetic import generate_committee


def run_offline_demo(*, events: int, positive_rate: float, out: Path, seed: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    committee = generate_committee(n_events=events, positive_rate=positive_rate, seed=seed)
    # The last quarter plays "tomorrow": never seen by fit, scored by the numpy scorer.
    cut = int(len(committee) * 0.75)
    committee.slice(0, cut).to_csv(out / "history.csv")
    committee.slice(cut, len(committee)).to_csv(out / "live.csv")
    key = secrets.token_bytes(32)  # a throwaway key: the demo signs and verifies like production
    table = load_table(out / "history.csv", label="label", time="ts")
    outcome = fit_meta_model(table, FitConfig())
    (out / "model.json").write_text(dumps_artifact(sign_artifact(outcome.artifact, key)))
    (out / "report.json").write_text(json.dumps(outcome.report, indent=2) + "\n")
    (out / "report.html").write_text(render_html(outcome.report))
    scorer = CompiledModel.from_artifact(read_artifact(out / "model.json", keys=[key]))
    live = load_table(out / "live.csv", label="label", time="ts", members=list(scorer.members))
    block = holdout_metrics(live.labels, scorer.predict_proba(live.votes), scorer.threshold)
    print(
        json.dumps(
            {
                "strategy": outcome.report["strategy"],
                "strategy_reason": outcome.report["strategy_reason"],
                "threshold": round(scorer.threshold, 6),
                "holdout": {k: outcome.report["holdout"][k] for k in ("f1", "precision", "recall")},
                "live": {k: block[k] for k in ("f1", "precision", "recall", "n", "positives")},
                "fit_seconds": round(outcome.report["fit_seconds"], 2),
                "report": str(out / "report.html"),
            },
            indent=2,
        )
    )
    return 0
