"""A real single-node Apache Kafka broker for tests, driven by deploy/kafka/local-kafka.sh.

Tests and users share one code path: this module only shells out to the script, which fetches
the broker jars once (Maven), formats a KRaft data dir and starts ``kafka.Kafka`` in the
background. Requires ``java`` (17+) and, for the first fetch only, ``mvn``.

Example::

    kafka = LocalKafka(data_dir=tmp_path / "kafka")
    bootstrap = kafka.start()  # "127.0.0.1:<free port>"
    ...
    kafka.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "local-kafka.sh"

# Exit code of local-kafka.sh when --port/--controller-port is already taken.
_EXIT_PORT_BUSY = 3
# The one-time jar download is not part of start()'s timeout.
_FETCH_TIMEOUT_S = 900.0
_STOP_TIMEOUT_S = 90.0
_LOG_TAIL_LINES = 30


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _two_free_ports() -> tuple[int, int]:
    # Hold both sockets open while choosing so the two ports are distinct.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b,
    ):
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return int(a.getsockname()[1]), int(b.getsockname()[1])


class LocalKafka:
    """One broker (KRaft combined broker+controller) bound to 127.0.0.1.

    ``port=None`` picks a free port (and a free controller port) at :meth:`start`; a start that
    loses the race for an auto-picked port is retried with new ports. ``data_dir`` holds
    ``server.properties``, ``kafka.log``, ``kafka.pid`` and the topic data; it is reused (not
    reformatted) across restarts.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path,
        script: Path = DEFAULT_SCRIPT,
        controller_port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port
        self.data_dir = Path(data_dir).resolve()
        self.script = Path(script).resolve()
        self._env = env
        self._bootstrap: str | None = None
        self._atexit_registered = False

    # ------------------------------------------------------------------ public API
    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker; raises if not started."""
        if self._bootstrap is None:
            raise RuntimeError("LocalKafka is not started")
        return self._bootstrap

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kafka.log"

    def start(self, timeout: float = 120) -> str:
        """Start the broker and wait until it answers metadata requests.

        ``timeout`` bounds the broker start-up; the one-time jar fetch has its own, longer
        limit. Returns the bootstrap address; raises RuntimeError (with the broker log tail)
        on failure.
        """
        self._check_prerequisites()
        self._run(["fetch"], timeout=_FETCH_TIMEOUT_S, what="fetching the Kafka jars")
        attempts = 3 if self.port is None or self.controller_port is None else 1
        last = ""
        for _ in range(attempts):
            port, cport = self._choose_ports()
            args = [
                "start",
                "--port",
                str(port),
                "--controller-port",
                str(cport),
                "--timeout",
                str(max(1, int(timeout))),
            ]
            proc = self._exec(args, timeout=timeout + 30)
            if proc.returncode == 0:
                self.port, self.controller_port = port, cport
                self._bootstrap = self._parse_bootstrap(proc.stdout) or f"127.0.0.1:{port}"
                if not self._atexit_registered:
                    atexit.register(self.stop)
                    self._atexit_registered = True
                return self._bootstrap
            last = self._describe_failure(proc)
            if proc.returncode != _EXIT_PORT_BUSY:
                break
        raise RuntimeError(f"local Kafka broker failed to start:\n{last}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after a timeout). Safe to call repeatedly."""
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        self._bootstrap = None
        if not self.data_dir.exists():
            return
        self._run(["stop"], timeout=_STOP_TIMEOUT_S, what="stopping the broker")

    def is_running(self) -> bool:
        if not self.data_dir.exists():
            return False
        return self._exec(["status"], timeout=30).returncode == 0

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _check_prerequisites(self) -> None:
        if not self.script.is_file():
            raise RuntimeError(f"local Kafka script not found: {self.script}")
        java_home = os.environ.get("JAVA_HOME")
        has_java = bool(java_home and (Path(java_home) / "bin" / "java").exists())
        if not (has_java or shutil.which("java")):
            raise RuntimeError("java not found: a JDK/JRE 17+ is needed for the local Kafka broker")

    def _choose_ports(self) -> tuple[int, int]:
        if self.port is not None and self.controller_port is not None:
            return self.port, self.controller_port
        if self.port is not None:
            cport = free_port()
            while cport == self.port:
                cport = free_port()
            return self.port, cport
        port, cport = _two_free_ports()
        if self.controller_port is not None:
            while port == self.controller_port:
                port = free_port()
            cport = self.controller_port
        return port, cport

    def _exec(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        if self._env:
            env.update(self._env)
        cmd = ["bash", str(self.script), *args, "--data", str(self.data_dir)]
        try:
            return subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            if args and args[0] == "start":
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run(
                        ["bash", str(self.script), "stop", "--data", str(self.data_dir)],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=_STOP_TIMEOUT_S,
                        env=env,
                        check=False,
                    )
            raise RuntimeError(
                f"{' '.join(cmd)} timed out after {timeout:.0f}s\n"
                f"---- last lines of {self.log_path} ----\n{self.log_tail()}"
            ) from err

    def _run(self, args: list[str], *, timeout: float, what: str) -> str:
        proc = self._exec(args, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"local Kafka: {what} failed:\n{self._describe_failure(proc)}")
        return proc.stdout

    def _describe_failure(self, proc: subprocess.CompletedProcess[str]) -> str:
        parts = [f"exit code {proc.returncode}"]
        if proc.stdout.strip():
            parts.append(proc.stdout.strip())
        if proc.stderr.strip():
            parts.append(proc.stderr.strip())
        # The script prints the log tail itself on start failures; add it if it did not.
        if "---- last 30 lines" not in proc.stderr:
            tail = self.log_tail()
            if tail:
                parts.append(f"---- last lines of {self.log_path} ----\n{tail}")
        return "\n".join(parts)

    @staticmethod
    def _parse_bootstrap(stdout: str) -> str | None:
        for line in stdout.splitlines():
            if line.startswith("bootstrap="):
                return line.partition("=")[2].strip()
        return None
