"""Inputs of the streaming benchmark: one fitted 8-member artifact and encoded votes."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from metasignal.stream.artifact import dumps_artifact, sign_artifact
from metasignal.stream.messages import encode_vote
from metasignal.trainer.data import VoteTable
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.synthetic import Committee, generate_committee

N_MEMBERS = 8
SIGNING_KEY = b"bench-stream-signing-key-0123456789"
MODEL_NAME = "meta"
# Fitting on a small committee is enough: scoring cost does not depend on the coefficients.
FIT_EVENTS = 20_000


@dataclass(frozen=True)
class Inputs:
    """The signed artifact plus a committee whose rows become vote messages."""

    artifact: bytes
    body: dict[str, Any]
    committee: Committee


def fitted_body(seed: int = 11) -> dict[str, Any]:
    """An unsigned artifact body from :func:`metasignal.trainer.fit.fit_meta_model` (8 members)."""
    c = generate_committee(n_events=FIT_EVENTS, n_members=N_MEMBERS, positive_rate=0.03, seed=seed)
    table = VoteTable(time_ms=c.time_ms, members=c.members, votes=c.votes, labels=c.labels)
    config = FitConfig(estimator={"strategy": "optimal_threshold"})
    return fit_meta_model(table, config).artifact


def signed(body: dict[str, Any], version: int = 1) -> bytes:
    doc = copy.deepcopy(body)
    doc["model"]["version"] = version
    return dumps_artifact(sign_artifact(doc, SIGNING_KEY)).encode()


def build_inputs(n_votes: int, seed: int = 7) -> Inputs:
    """Artifact plus ``n_votes`` committee rows (the stream the scorer will see)."""
    body = fitted_body()
    committee = generate_committee(
        n_events=max(n_votes, 1), n_members=N_MEMBERS, positive_rate=0.03, seed=seed
    )
    return Inputs(artifact=signed(body), body=body, committee=committee)


def encoded_votes(
    committee: Committee, start: int, stop: int, *, id_prefix: str = ""
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` wire messages for rows ``start..stop`` (the format producers send)."""
    members = committee.members
    rows: np.ndarray = committee.votes[start:stop]
    out = []
    for i, row in enumerate(rows.tolist(), start=start):
        event_id = f"{id_prefix}{committee.ids[i]}"
        value = encode_vote(
            event_id, int(committee.time_ms[i]), dict(zip(members, row, strict=True))
        )
        out.append((event_id.encode(), value))
    return out
