"""What became of one control request, or of one shadow judgement (:class:`Verdict`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
