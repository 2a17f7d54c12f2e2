"""README's walkthrough runs as written: training, then the scorer on the real Kafka broker.

The ```sh blocks of the two sections are extracted and run in order, in one bash shell (so
the exported key and address carry over, as in a reader's terminal), in an empty folder.
What differs from a reader's run is listed here, and checked to be exactly that:

- ``make kafka-up`` / ``make kafka-down``: the test session's broker stands in (started by
  the same deploy/kafka/local-kafka.sh, on a free port); each line is replaced by an echo.
- The README's addresses (broker 127.0.0.1:9092, metrics port 9108) become the session
  broker's address and a free port, since other runs share this machine.
- ``METASIGNAL_TOPIC_PREFIX`` and ``METASIGNAL_GROUP_ID`` (documented settings) are set to
  fresh names so the walkthrough cannot meet other tests' topics on the shared broker.
- After the last line the shell waits for the background scorer (``kill %1`` asked it to
  finish), so nothing outlives the test, and its exit code counts.

The "Run it for real" block needs Docker, which this machine does not have; the files it
uses are checked by tests/test_deploy_*.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.kafka_broker import free_port

README = REPO / "README.md"
SECTIONS = ("Training a meta-model", "Running the scorer on Kafka")
BROKER, METRICS_PORT = "127.0.0.1:9092", "9108"


def sh_blocks(markdown: str, section: str) -> list[str]:
    """The ```sh blocks under the ``## section`` heading, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"README has no section {section!r}"
    return re.findall(r"^```sh\n(.*?)^```$", match[1], re.M | re.S)


def walkthrough_script(bootstrap: str, metrics_port: int) -> str:
    markdown = README.read_text()
    blocks = [block for section in SECTIONS for block in sh_blocks(markdown, section)]
    assert len(blocks) == 2, "one block per section: update this test with the README"
    script = "\n".join(blocks)
    stand_ins = {
        "make kafka-up": f"echo 'walkthrough: the session broker at {bootstrap} stands in'",
        "make kafka-down": "echo 'walkthrough: the session stops its broker'",
    }
    lines = []
    for line in script.splitlines():
        command = line.split("#", 1)[0].strip()
        lines.append(stand_ins.pop(command) if command in stand_ins else line)
    assert not stand_ins, f"README no longer has {sorted(stand_ins)}: update this test"
    script = "\n".join(lines)
    for text in (BROKER, f"--metrics-port {METRICS_PORT}"):
        assert script.count(text) == 1, f"{text!r} once in the walkthrough"
    script = script.replace(BROKER, bootstrap)
    script = script.replace(f"--metrics-port {METRICS_PORT}", f"--metrics-port {metrics_port}")
    return f"set -euo pipefail\n{script}\nwait %1\n"


def json_documents(text: str) -> list[Any]:
    """Every JSON object that starts a line (one-line or indented), in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) >= 0:
        if start == 0 or text[start - 1] == "\n":
            document, at = decoder.raw_decode(text, start)
            found.append(document)
        else:
            at = start + 1
    return found


@pytest.mark.kafka
@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(kafka_bootstrap: str, tmp_path: Path) -> None:
    script = walkthrough_script(kafka_bootstrap, free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METASIGNAL_", "PYTHON"))}
    run_id = uuid.uuid4().hex[:8]
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        METASIGNAL_TOPIC_PREFIX=f"readme-{run_id}.",
        METASIGNAL_GROUP_ID=f"readme-{run_id}-scorer",
    )
    (tmp_path / "walkthrough.sh").write_text(script)
    result = subprocess.run(
        ["bash", "walkthrough.sh"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=270,
    )
    assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- {result.stderr}"
    assert "Traceback" not in result.stderr
    assert "blocking the event loop" not in result.stderr
    out = json_documents(result.stdout)
    made = [(item.get("out"), item.get("events")) for item in out]  # synth
    assert ("votes.csv", 50_000) in made and ("later.csv", 10_000) in made
    assert (tmp_path / "model" / "model.json").exists()
    assert any("f1" in item and "model" in item for item in out)  # evaluate
    assert re.search(r"^signature +HMAC-SHA256 .*\(verified\)$", result.stdout, re.M)  # inspect
    assert {"published": "meta", "version": 1} in out
    assert any(item.get("sent") == 10_000 for item in out)  # replay
    signals = [item["value"] for item in out if "partition" in item]  # tail
    assert len(signals) == 5
    assert all(s["model"] == "meta" and s["decision"] in (0, 1) for s in signals)
    assert "replay: 10000/10000 votes (100%)" in result.stderr
    assert f"tail: waiting for messages on readme-{run_id}.signals" in result.stderr
