"""``metasignal evaluate``: score a labelled vote table with a (verified) artifact."""

from __future__ import annotations

import argparse
import json

import numpy as np

from metasignal.stream.artifact import Artifact, read_artifact, resolve_signing_keys
from metasignal.stream.scoring import CompiledModel


def _load_model(args: argparse.Namespace) -> Artifact:
    # A configured key always verifies a signed artifact; --unsigned only admits unsigned ones.
    keys = resolve_signing_keys(key_file=args.key_file)
    return read_artifact(args.model, keys=keys, allow_unsigned=args.unsigned)


def command_evaluate(args: argparse.Namespace) -> int:
    from metasignal.trainer.data import load_table
    from metasignal.trainer.fit import holdout_metrics

    artifact = _load_model(args)
    scorer = CompiledModel.from_artifact(artifact)
    raw = artifact["preprocessing"]["transform"] == "identity"
    table = load_table(
        args.data,
        label=args.label,
        time=args.time,
        members=list(scorer.members),
        timezone=args.timezone,
        time_unit=args.time_unit,
        raw_scores=raw,
        expected_by=f"model {scorer.name} v{scorer.version}",
    )
    scores = scorer.predict_proba(table.votes)
    block = holdout_metrics(table.labels.astype(np.int64), scores, scorer.threshold)
    block["model"] = {"name": scorer.name, "version": scorer.version}
    print(json.dumps(block, indent=2))
    return 0
