"""The installed package: one import name, ``metasignal``, and a working console script.

The wheel is built from this checkout as the Dockerfile builds it (no build isolation, so no
network) and installed into a fresh venv that shares only the runtime dependencies
(:mod:`tests.venvs`).
"""

from __future__ import annotations

import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from metasignal import version
from tests import venvs
from tests.conftest import REPO

pytestmark = pytest.mark.slow


# Built from a copy of the sources: an in-tree build would leave build/ behind, whose stale
# files a later wheel could pick up.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", ".*_cache", "lib", "target"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sources = tmp_path_factory.mktemp("sources") / "metasignal"
    shutil.copytree(REPO, sources, symlinks=True, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    pip: list[str | Path] = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", out, sources]
    built = venvs.run(build, cwd=out)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("metasignal-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    root = tmp_path_factory.mktemp("venv")
    python = venvs.create(root)
    installed = venvs.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=root
    )
    assert installed.returncode == 0, installed.stderr
    return root


def test_wheel_holds_only_the_metasignal_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {name for name in top if not name.endswith(".dist-info")} == {"metasignal"}
    assert "metasignal/stream/scorer.py" in names
    assert "metasignal/trainer/cli.py" in names


def test_installed_wheel_imports_as_metasignal_only(fresh_venv: Path, tmp_path: Path) -> None:
    python = fresh_venv / "bin" / "python"
    for generic in ("stream", "trainer"):
        result = venvs.run([python, "-c", f"import {generic}"], cwd=tmp_path)
        assert f"No module named '{generic}'" in result.stderr
        assert result.returncode != 0
    result = venvs.run(
        [python, "-c", "import metasignal.stream.scorer, metasignal; print(metasignal.__file__)"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(fresh_venv)


def test_console_script_prints_the_version(fresh_venv: Path, tmp_path: Path) -> None:
    result = venvs.run([fresh_venv / "bin" / "metasignal", "--version"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"metasignal {version()}\n"
    assert version() == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
