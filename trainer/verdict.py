"""What became of one control request, or of one shadow judgement (:class:`Verdict`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metasignal.stream.status import trainer_status


@dataclass(frozen=True)
class Verdict:
    """What became of one request.

    ``retry`` is not committed: the request is read again once the broker answers.

    Examples
    --------
    >>> Verdict("r-1", "skipped", "duplicate: request already answered").outcome
    'skipped'
    """

    request_id: str
    outcome: str  # published, refused, skipped, failed or retry
    detail: str
    version: int | None = None
    gate: dict[str, Any] | None = None


def status_line(verdicts: Sequence[Verdict], *, champion: int | None) -> str:
    """The trainer's periodic status: requests answered by outcome, what it last published."""
    outcomes = [verdict.outcome for verdict in verdicts]
    published = [verdict.version for verdict in verdicts if verdict.outcome == "published"]
    return trainer_status(
        published=len(published),
        refused=outcomes.count("refused"),
        skipped=outcomes.count("skipped"),
        failed=outcomes.count("failed"),
        last_published=published[-1] if published else None,
        champion=champion,
    )
