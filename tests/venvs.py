"""Fresh virtual environments for the install tests, fast and offline.

A fresh venv gets no pip and no packages of its own; a ``.pth`` line adds a folder of links to
the test venv's installed distributions (pip, setuptools and the runtime dependencies) minus
metasignal itself, so whatever ``metasignal`` the fresh venv imports is the one the test
installed into it.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import venv
from collections.abc import Sequence
from pathlib import Path

# Left out of the shared folder: this checkout's own install (an editable finder and its
# metadata), which would otherwise satisfy or shadow the install under test.
_OWN = ("metasignal", "__editable__", "_metasignal")


def _is_own(name: str) -> bool:
    return name.startswith(_OWN) or name.endswith(".pth")


def create(root: Path) -> Path:
    """A venv at ``root`` sharing the test venv's dependencies; returns its python."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    shared = root / "shared-dependencies"
    shared.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not _is_own(entry.name):
            (shared / entry.name).symlink_to(entry)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=root)
    Path(site.stdout.strip(), "zz_shared_dependencies.pth").write_text(f"{shared}\n")
    return python


def run(
    args: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run without the caller's PYTHONPATH (it would leak this checkout into the fresh venv)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
