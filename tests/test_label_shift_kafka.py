"""The label-free path on the real broker: votes only -> label_shift -> a published re-tune."""

from __future__ import annotations

import numpy as np
import pytest

from metasignal.stream.topics import Topics
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.synthetic import Committee, generate_committee
from tests.conftest import TEST_KEY
from tests.streaming import publish_model, send_training_rows, send_votes, versioned, wait_for
from tests.test_label_shift_loop import AFTER, BEFORE, label_shift_committee
from tests.test_loop_kafka import TrainerThread, committed_models
from tests.test_scorer_kafka import ScorerThread

pytestmark = pytest.mark.kafka


def test_label_shift_retune_before_any_outcome_on_the_broker(
    kafka: tuple[KafkaTransport, Topics], committee: Committee, artifact_body: dict
) -> None:
    transport, topics = kafka
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    send_training_rows(transport, topics, committee, committee.labels)
    pool = generate_committee(n_events=300_000, positive_rate=0.03, seed=21)
    rates = np.where(np.arange(BEFORE + AFTER) < BEFORE, 0.03, 0.09)
    live = label_shift_committee(pool, rates, seed=22)
    with (
        ScorerThread(
            transport,
            topics,
            group_id=f"{topics.prefix}scorer",
            exactly_once=True,
            transactional_id=f"{topics.prefix}scorer-0",
            track_outcomes=False,
        ) as scorer,
        TrainerThread(transport, topics, window_rows=20_000) as trainer,
    ):
        # Sent as a live stream that the scorer keeps up with, so it reads the votes in about
        # their time order; a backlog may be read a partition at a time (librdkafka hands out
        # whole fetches), which replays the step once per partition.
        for start in range(0, len(live), 500):
            end = min(start + 500, len(live))
            send_votes(transport, topics, live, start, end)
            assert wait_for(lambda: scorer.stats.votes >= end)  # noqa: B023 (called here)
        assert wait_for(lambda: bool(trainer.verdicts), timeout=240), (
            scorer.stats.votes,
            scorer.stats.drift_requests,
            scorer.feedback.policy.not_label_shift,
        )
        assert wait_for(lambda: 2 in scorer.stats.model_versions, timeout=60), trainer.verdicts
    assert [r["source"] for r in scorer.stats.drift_requests] == ["label_free"]
    (verdict,) = trainer.verdicts
    assert verdict.outcome == "published", verdict.detail
    models = committed_models(transport, topics)
    assert [m["model"]["version"] for m in models] == [1, 2]
    assert models[1]["request"]["kind"] == "label_shift"
    assert models[1]["request"]["evidence"] == "label_free"
