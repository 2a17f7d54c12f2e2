"""``metasignal synth``: write a synthetic committee vote table."""

from __future__ import annotations

import argparse
import json

import numpy as np

from metasignal.stream.errors import MetasignalError


def _synth_start_ms(text: str) -> int:
    import pandas as pd

    from metasignal.trainer.data import DataError, parse_times

    try:
        ms, _, _ = parse_times(
            pd.Series([text.strip()]), "--start", timezone="UTC", unit="ms", rows=lambda _: "value"
        )
    except DataError as exc:
        raise MetasignalError(f"--start {text!r}: {str(exc).split(': ', 1)[-1]}") from None
    return int(ms[0])


def _member_index(text: str | None, n_members: int) -> int | None:
    if text is None:
        return None
    number = text[1:] if text.startswith("m") else text
    if not number.isdigit() or not 1 <= int(number) <= n_members:
        raise MetasignalError(
            f"--decaying-member {text!r}: name a member m1..m{n_members} (or its number)"
        )
    return int(number) - 1


def command_synth(args: argparse.Namespace) -> int:
    from metasignal.trainer.synthetic import generate_committee

    start_ms = _synth_start_ms(args.start)
    stamp = np.datetime_as_string(np.datetime64(start_ms, "ms"), unit="s").replace("-", "")
    try:
        committee = generate_committee(
            n_events=args.events,
            n_members=args.members,
            positive_rate=args.positive_rate,
            rate_steps=args.rate_step,
            decaying_member=_member_index(args.decaying_member, args.members),
            decay_start=args.decay_start,
            label_shift=args.label_shift,
            start_ms=start_ms,
            step_ms=args.step_ms,
            id_prefix=f"evt-{stamp.replace(':', '')}-s{args.seed}-",
            seed=args.seed,
        )
        committee.to_csv(args.out, time_format=args.time_format)
    except ValueError as exc:
        raise MetasignalError(f"synth: {exc}") from None
    except OSError as exc:
        raise MetasignalError(f"cannot write {args.out}: {exc.strerror}") from None
    end_ms = int(committee.time_ms[-1])
    print(
        json.dumps(
            {
                "out": str(args.out),
                "events": len(committee),
                "positives": int(committee.labels.sum()),
                "start": str(np.datetime64(int(committee.time_ms[0]), "ms")) + "Z",
                "end": str(np.datetime64(end_ms, "ms")) + "Z",
                "first_id": str(committee.ids[0]),
            }
        )
    )
    return 0
