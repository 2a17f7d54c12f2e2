"""Turn a vote file (CSV) into vote and outcome messages for ``metasignal replay``.

Columns: an event id (default ``id``; the row number when absent), the event
time (default ``ts``), an optional label, and one column per member. An empty
cell means the member did not vote.

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "votes.csv"
>>> _ = path.write_text("id,ts,a,b,label\\ne1,1000,0.2,,1\\n")
>>> event = read_vote_file(path)[0]
>>> event.vote
b'{"id": "e1", "ts": 1000, "votes": {"a": 0.2}}'
>>> event.outcome
b'{"id": "e1", "ts": 1000, "label": 1}'
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from metasignal.stream.errors import MetasignalError


@dataclass(frozen=True)
class ReplayEvent:
    key: bytes
    vote: bytes
    outcome: bytes | None


def _ts(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # ISO-8601: the scorer validates it


def read_vote_file(
    path: Path, *, id_column: str = "id", time_column: str = "ts", label: str = "label"
) -> list[ReplayEvent]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise MetasignalError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        if time_column not in header:
            raise MetasignalError(f"time column {time_column!r} not in {path.name}")
        members = [c for c in header if c not in (id_column, time_column, label)]
        if not members:
            raise MetasignalError(f"no member columns in {path.name}")
        events = []
        for row_number, row in enumerate(reader):
            event_id = row.get(id_column) or f"row-{row_number}"
            ts = _ts(row[time_column])
            votes = {}
            for member in members:
                cell = row[member]
                if cell is None or cell.strip() == "":
                    continue
                try:
                    votes[member] = float(cell)
                except ValueError:
                    raise MetasignalError(
                        f"{path.name} row {row_number + 2}: member {member!r} is not a number"
                    ) from None
            vote = json.dumps({"id": event_id, "ts": ts, "votes": votes}).encode()
            outcome = None
            if label in row and row[label] not in (None, ""):
                outcome = json.dumps({"id": event_id, "ts": ts, "label": int(row[label])}).encode()
            events.append(ReplayEvent(key=event_id.encode(), vote=vote, outcome=outcome))
    return events
