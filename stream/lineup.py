"""Which versions serve: the champion that trades, and the shadow scored beside it.

The ``models`` topic holds artifacts (stage ``champion``, or ``shadow``) and signed
decision records (:mod:`metasignal.stream.decisions`). :class:`Lineup` applies them
in topic order, so every scorer and the trainer, live or replaying the topic after
a restart, end on the same champion and shadow:

* a champion artifact newer than the champion replaces it (a shadow not newer than
  it is dropped: it was challenging a model that no longer serves);
* a shadow artifact newer than every version seen takes the shadow slot as a
  ``challenger``;
* ``promote`` (champion C, challenger S): S serves, C stays in shadow as the
  ``predecessor`` for the rollback watch;
* ``retire`` (C, S): the shadow slot empties (a challenger that was not better, or
  a predecessor whose watch ended without a rollback);
* ``rollback`` (C, predecessor P): P serves again and the slot empties, so a
  promotion is rolled back at most once.

A decision about another state than the current one is refused (``decision_stale``).
Artifacts and records are verified before they get here.

Examples
--------
>>> from metasignal.stream.artifact import example_artifact
>>> def artifact(version, stage="champion"):
...     doc = example_artifact(); doc["model"]["version"] = version; doc["stage"] = stage
...     return doc
>>> def decision(kind, champion, shadow):
...     return {"decision": kind, "model": "meta", "champion": champion, "shadow": shadow}
>>> lineup = Lineup(model_name="meta")
>>> lineup.offer_artifact(artifact(1)), lineup.offer_artifact(artifact(2, "shadow"))
('champion', 'shadow')
>>> lineup.versions
(1, 2, 'challenger')
>>> lineup.offer_decision(decision("promote", 1, 2)); lineup.versions
'champion'
(2, 1, 'predecessor')
>>> lineup.offer_decision(decision("rollback", 2, 1)); lineup.versions
'champion'
(1, None, None)
>>> lineup.offer_decision(decision("rollback", 2, 1))  # the same record read again
'none'
>>> lineup.offer_decision(decision("retire", 1, 2))
Traceback (most recent call last):
...
metasignal.stream.lineup.Refused: decision_stale: retire is about champion v1 and shadow v2; \
serving champion v1, no shadow
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from metasignal.stream.artifact import Artifact, model_identity, sign_artifact
from metasignal.stream.errors import ArtifactError

log = logging.getLogger("metasignal.lineup")

Role = Literal["challenger", "predecessor"]
Change = Literal["champion", "shadow", "none"]


class Refused(ValueError):
    """An artifact or decision the lineup does not apply; ``reason`` labels a counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def as_shadow(artifact: Artifact, keys: list[bytes]) -> Artifact:
    """``artifact`` (verified) staged as a shadow, signed again with the first of ``keys``
    (``metasignal publish --shadow``: the stage is part of what the signature covers)."""
    if not keys:
        raise ArtifactError("--shadow signs the artifact again: a signing key is required")
    staged = {**artifact, "stage": "shadow"}
    staged.pop("signature", None)
    return sign_artifact(staged, keys[0])


def _version(artifact: Artifact | None) -> int | None:
    return None if artifact is None else int(artifact["model"]["version"])


class Lineup:
    """The champion and the shadow of one model name (module docstring)."""

    def __init__(self, *, model_name: str) -> None:
        self.model_name = model_name
        self.champion: Artifact | None = None
        self.shadow: Artifact | None = None
        self.role: Role | None = None
        self.highest = 0  # the highest version of any stage seen: versions only go up
        self._applied: set[tuple[str, int, int]] = set()

    @property
    def versions(self) -> tuple[int | None, int | None, Role | None]:
        """``(champion version, shadow version, shadow role)``."""
        return _version(self.champion), _version(self.shadow), self.role

    def describe(self) -> str:
        champion, shadow, role = self.versions
        serving = "no champion" if champion is None else f"champion v{champion}"
        return f"serving {serving}, " + ("no shadow" if shadow is None else f"{role} v{shadow}")

    def offer_artifact(self, artifact: Artifact) -> Change:
        """Apply a verified artifact; :class:`Refused` when it may not serve."""
        name, version = model_identity(artifact)
        if name != self.model_name or artifact in (self.champion, self.shadow):
            return "none"  # another model, or the same artifact read again
        if artifact.get("stage") == "shadow":
            return self._offer_shadow(artifact, version)
        current = _version(self.champion)
        if current is not None and version <= current:
            raise Refused(
                "not_newer",
                f"model {name} v{version} is not newer than the serving v{current} "
                "(a downgrade needs a new, higher version)",
            )
        self.champion = artifact
        self.highest = max(self.highest, version)
        shadow = _version(self.shadow)
        if shadow is not None and shadow <= version:
            log.info("shadow v%d dropped: champion v%d is newer", shadow, version)
            self.shadow = self.role = None
        return "champion"

    def _offer_shadow(self, artifact: Artifact, version: int) -> Change:
        if self.champion is None:
            raise Refused("no_champion", f"shadow v{version} has no champion to be compared with")
        if version <= self.highest:
            raise Refused(
                "not_newer",
                f"shadow {self.model_name} v{version} is not newer than v{self.highest}, "
                "the highest version published",
            )
        if self.shadow is not None:
            log.info("%s v%d leaves the shadow slot for v%d", self.role, self.versions[1], version)
        self.shadow, self.role = artifact, "challenger"
        self.highest = version
        return "shadow"

    def offer_decision(self, record: Mapping[str, Any]) -> Change:
        """Apply a verified decision record; :class:`Refused` when it is about another state."""
        if record["model"] != self.model_name:
            return "none"
        kind = str(record["decision"])
        about = (kind, int(record["champion"]), int(record["shadow"]))
        if about in self._applied:
            return "none"  # the same decision read again
        champion, shadow, role = self.versions
        wanted_role = {"promote": "challenger", "rollback": "predecessor"}.get(kind, role)
        if (champion, shadow) != about[1:] or role != wanted_role:
            raise Refused(
                "decision_stale",
                f"{kind} is about champion v{about[1]} and shadow v{about[2]}; {self.describe()}",
            )
        self._applied.add(about)
        if kind == "promote":
            self.champion, self.shadow, self.role = self.shadow, self.champion, "predecessor"
            return "champion"
        if kind == "retire":
            self.shadow = self.role = None
            return "shadow"
        self.champion, self.shadow, self.role = self.shadow, None, None  # rollback
        return "champion"
