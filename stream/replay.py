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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

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


class ReplayProgress:
    """Progress of a replay on ``stream`` (stderr), never on stdout.

    On a terminal one line is rewritten in place twice a second; in a log or a pipe a new
    line is written every ``every_s`` seconds (10 by default) so the output stays short.

    >>> import io
    >>> clock = iter([0.0, 1.0, 11.0, 12.0]).__next__
    >>> out = io.StringIO()
    >>> progress = ReplayProgress(2000, stream=out, clock=clock)
    >>> progress.update(100); progress.update(1100); progress.finish(2000)
    >>> print(out.getvalue(), end="")
    replay: 1100/2000 votes (55%), 100/s, about 9 s left
    replay: 2000/2000 votes (100%), 167/s, done in 12 s
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        every_s: float | None = None,
    ) -> None:
        self.total, self._stream, self._clock = total, stream, clock
        self._tty = stream.isatty()
        self._every_s = every_s if every_s is not None else (0.5 if self._tty else 10.0)
        self._started = clock()
        self._last = self._started

    def update(self, sent: int) -> None:
        """Report ``sent`` if the last report is old enough (cheap to call per record)."""
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            self._write(self._line(sent, now, done=False))

    def finish(self, sent: int) -> None:
        self._write(self._line(sent, self._clock(), done=True))
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def _line(self, sent: int, now: float, *, done: bool) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = sent / elapsed
        share = f"{sent / self.total:.0%}" if self.total else "100%"
        head = f"replay: {sent}/{self.total} votes ({share}), {rate:.0f}/s"
        if done:
            return f"{head}, done in {elapsed:.0f} s"
        left = (self.total - sent) / rate if rate > 0 else float("inf")
        return f"{head}, about {left:.0f} s left"

    def _write(self, line: str) -> None:
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")  # rewrite in place, clear the rest
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
