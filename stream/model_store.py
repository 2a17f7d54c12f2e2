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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from metasignal.stream.artifact import Artifact, load_artifact
from metasignal.stream.errors import ArtifactError
from metasignal.stream.scoring import CompiledModel

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


class ModelStore:
    """Holds the model being served."""

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
        self.current: CompiledModel | None = None
        self.artifact: Artifact | None = None

    def offer(self, raw: bytes | None) -> str:
        """Consider one ``models`` message: ``swapped``, ``refused``, ``older`` or ``other``."""
        if raw is None:
            return "other"  # a compaction tombstone
        try:
            artifact = load_artifact(raw, keys=self._keys, allow_unsigned=self.allow_unsigned)
            compiled = CompiledModel.from_artifact(artifact)
        except Exception as exc:
            reason = refusal_reason(exc) if isinstance(exc, ArtifactError) else "invalid_artifact"
            log.warning("refused model artifact (%s): %.300s", reason, exc)
            if self._on_refused:
                self._on_refused(reason, str(exc))
            return "refused"
        if compiled.name != self.model_name:
            return "other"
        if self.current is not None and compiled.version <= self.current.version:
            return "older"
        previous = None if self.current is None else self.current.version
        self.current, self.artifact = compiled, artifact
        log.info("serving model %s v%d (was %s)", compiled.name, compiled.version, previous)
        return "swapped"

    @property
    def created_at(self) -> float | None:
        """Creation time of the served model, epoch seconds."""
        if self.artifact is None:
            return None
        return datetime.fromisoformat(
            self.artifact["created_at"].replace("Z", "+00:00")
        ).timestamp()
