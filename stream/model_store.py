"""Which model serves: the latest verified version, swapped in between batches.

Artifacts arrive on the compacted ``models`` topic. Each is verified (signature,
schema) before it is compiled; a refused artifact is counted and logged and the
current model keeps serving. Only a strictly newer version of the configured
model name replaces the current one, so replaying the topic from the start
ends on the newest version.

Examples
--------
>>> from metasignal.stream.artifact import example_artifact, sign_artifact, dumps_artifact
>>> store = ModelStore(keys=[b"k"], model_name="meta")
>>> store.offer(dumps_artifact(sign_artifact(example_artifact(), b"k")).encode())
'swapped'
>>> store.offer(b'{"schema_version": 1}')
'refused'
>>> store.current.version
1
>>> store.offer(dumps_artifact(sign_artifact(example_artifact(), b"k")).encode())  # again
'other'
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from metasignal.stream.artifact import (
    Artifact,
    dumps_artifact,
    load_artifact,
    model_identity,
    sign_artifact,
)
from metasignal.stream.decisions import DecisionError, is_decision, load_decision
from metasignal.stream.errors import ArtifactError
from metasignal.stream.lineup import Lineup, Refused, Role
from metasignal.stream.messages import Vote
from metasignal.stream.scoring import CompiledModel
from metasignal.stream.topics import Topics, model_key
from metasignal.stream.transport.base import Transport

log = logging.getLogger("metasignal.scorer")


def refusal_reason(error: ArtifactError) -> str:
    """A short, bounded label for the refused-models counter."""
    text = str(error)
    for needle, label in (
        ("unsigned", "unsigned"),
        ("signature", "bad_signature"),
        ("JSON", "invalid_json"),
        ("schema_version", "incompatible_schema"),
    ):
        if needle in text:
            return label
    return "invalid_artifact"


class LiveMembers:
    """The committee members that recent votes carried (a sample of them, see
    :class:`metasignal.stream.step.ScoredBatch`), counted in observed votes.

    A new model is checked against them: a model for other members would impute them for
    every vote and give every vote one constant score.

    >>> from metasignal.stream.messages import Vote
    >>> live = LiveMembers(window_votes=4, min_votes=2)
    >>> live.observe([Vote("e1", 0, {"a": 0.1})]); sorted(live.members())
    []
    >>> live.observe([Vote("e2", 0, {"a": 0.1, "b": 0.2})]); sorted(live.members())
    ['a', 'b']
    """

    MAX_NAMES = 4096  # bounds the memory a flood of made-up member names can take

    def __init__(self, *, window_votes: int = 500, min_votes: int = 20) -> None:
        self.window = window_votes
        self.min_votes = min_votes
        self._seen = 0
        self._last_seen: dict[str, int] = {}

    def observe(self, votes: Sequence[Vote]) -> None:
        last_seen = self._last_seen
        for vote in votes:
            self._seen += 1
            for member in list(vote.votes)[:64]:
                last_seen[member] = self._seen
        if len(last_seen) > self.MAX_NAMES:
            newest = sorted(last_seen.items(), key=lambda item: item[1])[-self.MAX_NAMES // 2 :]
            self._last_seen = dict(newest)

    def members(self) -> frozenset[str]:
        """Members seen within the window; empty until enough votes were seen to judge."""
        if self._seen < self.min_votes:
            return frozenset()
        cutoff = self._seen - self.window
        return frozenset(m for m, seen in self._last_seen.items() if seen > cutoff)


class ModelStore:
    """Holds the model being served, and the shadow scored beside it (:class:`Lineup`)."""

    def __init__(
        self,
        *,
        keys: Sequence[bytes],
        model_name: str,
        allow_unsigned: bool = False,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self._keys = list(keys)
        self.model_name = model_name
        self.allow_unsigned = allow_unsigned
        self._on_refused = on_refused
        self.lineup = Lineup(model_name=model_name)
        self.current: CompiledModel | None = None
        self.artifact: Artifact | None = None
        self.shadow: CompiledModel | None = None
        self._shadow_source: Artifact | None = None

    @property
    def shadow_role(self) -> Role | None:
        """``challenger`` (may be promoted) or ``predecessor`` (the rollback watch)."""
        return self.lineup.role

    def offer(self, raw: bytes | None, *, live_members: Collection[str] = ()) -> str:
        """Consider one ``models`` message: ``swapped`` (a new champion), ``shadow`` (only the
        shadow slot changed), ``refused`` or ``other``.

        Refused, besides what :func:`load_artifact` refuses: a version not newer than the
        one serving (``not_newer``; the same record read again is ``other``), and a model
        with a member that ``live_members`` (the members recent votes carried; empty: not
        known yet) lacks (``member_mismatch``): it would impute that member for every vote.
        Decision records (:mod:`metasignal.stream.decisions`) are verified, then applied.
        """
        if raw is None:
            return "other"  # a compaction tombstone
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            document = None  # load_artifact says why
        if is_decision(document):
            return self._decide(document)
        try:
            artifact = load_artifact(raw, keys=self._keys, allow_unsigned=self.allow_unsigned)
            compiled = CompiledModel.from_artifact(artifact)
        except Exception as exc:  # any bytes are refused one record at a time
            reason = refusal_reason(exc) if isinstance(exc, ArtifactError) else "invalid_artifact"
            return self._refuse(reason, str(exc))
        if compiled.name != self.model_name:
            return "other"
        absent = [m for m in compiled.members if m not in live_members] if live_members else []
        known = artifact in (self.artifact, self.shadow_artifact)  # read again
        if self.current is not None and absent and not known:
            return self._refuse(
                "member_mismatch",
                f"model {compiled.name} v{compiled.version} has member(s) "
                f"{', '.join(absent[:5])} that the live votes do not carry",
            )
        try:
            change = self.lineup.offer_artifact(artifact)
        except Refused as refused:
            return self._refuse(refused.reason, refused.detail)
        return self._changed(change, (artifact, compiled))

    @property
    def shadow_artifact(self) -> Artifact | None:
        return self.lineup.shadow

    def _decide(self, document: Any) -> str:
        try:
            record = load_decision(document, keys=self._keys)
            change = self.lineup.offer_decision(record)
        except (DecisionError, Refused) as refused:
            return self._refuse(refused.reason, refused.detail)
        if change != "none":
            log_decision = log.warning if record["decision"] == "rollback" else log.info
            log_decision(
                "%s of %s (champion v%d, shadow v%d) applied: %s",
                record["decision"],
                record["model"],
                record["champion"],
                record["shadow"],
                self.lineup.describe(),
            )
        return self._changed(change)

    def _changed(self, change: str, offered: tuple[Artifact, CompiledModel] | None = None) -> str:
        """Compile what the lineup now holds, reusing what is compiled already."""
        if change == "none":
            return "other"
        known = [(self.artifact, self.current), (self._shadow_source, self.shadow)]
        if offered is not None:
            known.append(offered)

        def compiled(artifact: Artifact) -> CompiledModel:
            for source, model in known:
                if source is artifact and model is not None:
                    return model
            return CompiledModel.from_artifact(artifact)

        previous = None if self.current is None else self.current.version
        champion, shadow = self.lineup.champion, self.lineup.shadow
        assert champion is not None  # a change always leaves a champion
        self.current, self.artifact = compiled(champion), champion
        self.shadow = None if shadow is None else compiled(shadow)
        self._shadow_source = shadow
        if change == "champion":
            log.info(
                "serving model %s v%d (was %s)",
                champion["model"]["name"],
                self.current.version,
                previous,
            )
            return "swapped"
        return "shadow"

    def _refuse(self, reason: str, detail: str) -> str:
        log.warning("refused model artifact (%s): %.300s", reason, detail)
        if self._on_refused:
            self._on_refused(reason, detail)
        return "refused"

    @property
    def created_at(self) -> float | None:
        """Creation time of the served model, epoch seconds."""
        if self.artifact is None:
            return None
        return datetime.fromisoformat(
            self.artifact["created_at"].replace("Z", "+00:00")
        ).timestamp()


def published_versions(
    transport: Transport,
    topic: str,
    *,
    keys: Sequence[bytes],
    allow_unsigned: bool = False,
    timeout_s: float = 30.0,
) -> dict[str, int]:
    """The highest verified version of each model name on the ``models`` topic."""
    highest: dict[str, int] = {}
    for artifact in read_published(
        transport, topic, keys=keys, allow_unsigned=allow_unsigned, timeout_s=timeout_s
    ):
        name, version = model_identity(artifact)
        highest[name] = max(version, highest.get(name, 0))
    return highest


def read_published(
    transport: Transport,
    topic: str,
    *,
    keys: Sequence[bytes],
    allow_unsigned: bool = False,
    timeout_s: float = 30.0,
) -> list[Artifact]:
    """Every artifact on the ``models`` topic that verifies, in topic order."""
    consumer = transport.consumer(assign_all=[topic], from_beginning=True)
    found: list[Artifact] = []
    try:
        ends = consumer.end_offsets(sorted(consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while not all(consumer.position(tp) >= end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise ArtifactError(f"could not read {topic} to its end in {timeout_s:.0f} s")
            for record in consumer.poll(timeout_ms=200, max_records=500):
                try:
                    found.append(
                        load_artifact(record.value or b"", keys=keys, allow_unsigned=allow_unsigned)
                    )
                except Exception:  # others' refusals are the scorers' business
                    continue
    finally:
        consumer.close()
    return found


def publish_artifact(
    transport: Transport,
    topics: Topics,
    raw: bytes,
    *,
    keys: Sequence[bytes],
    allow_unsigned: bool = False,
) -> tuple[str, int]:
    """Verify ``raw`` and put it on ``models`` under its own ``name@version`` key.

    Refused (:class:`ArtifactError`, one line): what every scorer would refuse, and a
    version that is not above the highest already published under that name (a different
    model under an existing version, or a silent downgrade).
    """
    artifact = load_artifact(raw, keys=keys, allow_unsigned=allow_unsigned)
    name, version = model_identity(artifact)
    highest = published_versions(
        transport, topics.models, keys=keys, allow_unsigned=allow_unsigned
    ).get(name)
    if highest is not None and version <= highest:
        raise ArtifactError(
            f"{topics.models} already holds {name} v{highest}: publish a version above "
            f"{highest} (refusing v{version})"
        )
    producer = transport.producer()
    try:
        producer.send(topics.models, key=model_key(name, version), value=raw)
        producer.flush()
    finally:
        producer.close()
    return name, version


def rollback_artifact(
    transport: Transport, topics: Topics, *, name: str, to_version: int, keys: Sequence[bytes]
) -> tuple[str, int]:
    """Serve version ``to_version`` of ``name`` again, as a new, higher version.

    Versions only go up, so a downgrade is the old model re-published under the next
    version, signed with the operator's key (the first of ``keys``) and marked
    ``rollback: {"to", "from"}``. Returns ``(name, new version)``.
    """
    if not keys:
        raise ArtifactError("a rollback is signed: a signing key is required")
    published = [
        a for a in read_published(transport, topics.models, keys=keys) if a["model"]["name"] == name
    ]
    if not published:
        raise ArtifactError(f"{topics.models} holds no verified model named {name!r}")
    highest = max(a["model"]["version"] for a in published)
    chosen = [a for a in published if a["model"]["version"] == to_version]
    if not chosen:
        versions = ", ".join(str(v) for v in sorted({a["model"]["version"] for a in published}))
        raise ArtifactError(f"{name} v{to_version} is not on {topics.models} (found {versions})")
    if to_version == highest and chosen[-1].get("stage") != "shadow":
        # (The newest may be a shadow that never served: then serving it is no no-op.)
        raise ArtifactError(f"{name} v{to_version} is already the newest version")
    document = copy.deepcopy(chosen[-1])
    document.pop("signature", None)
    document.pop("stage", None)  # a rollback serves at once, even a model once in shadow
    document["model"] = {"name": name, "version": highest + 1}
    document["created_at"] = (
        datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    document["rollback"] = {"to": to_version, "from": highest}
    raw = dumps_artifact(sign_artifact(document, keys[0])).encode()
    return publish_artifact(transport, topics, raw, keys=keys)
