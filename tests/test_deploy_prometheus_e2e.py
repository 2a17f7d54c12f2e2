"""A real Prometheus scrapes a real scorer on the real broker and evaluates our rules.

The scorer runs in a thread with its MetricsServer on a free loopback port; a model is published
and votes keep flowing. Prometheus (the `prometheus` binary, from Debian's package) runs on
another free loopback port with deploy/prometheus/prometheus.yml's scorer job re-pointed at that
port, 1 s scrape and evaluation intervals, a temporary TSDB and the repository's rule files. We
then ask its HTTP API whether the target is up, the vote counter and a recording rule have
values, and every rule evaluates without error. Fails (never skips) if prometheus is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from metasignal.stream.metrics import MetricsServer
from metasignal.stream.scorer import Scorer, ScorerOptions
from metasignal.stream.topics import Topics, topic_specs
from metasignal.stream.transport.kafka import KafkaTransport
from metasignal.trainer.synthetic import Committee
from tests.conftest import REPO, TEST_KEY
from tests.kafka_broker import free_port
from tests.streaming import publish_model, send_votes, versioned

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
SCORER_JOB = "metasignal-scorer"


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as exc:  # not listening yet, or a partial answer
            last = exc
        else:
            if last:
                return last
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class PrometheusServer:
    def __init__(self, workdir: Path, scorer_port: int) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run `make prometheus-tools`"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(
            {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        )
        config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
        (scorer_job,) = [j for j in config["scrape_configs"] if j["job_name"] == SCORER_JOB]
        scorer_job["static_configs"] = [{"targets": [f"127.0.0.1:{scorer_port}"]}]
        config["scrape_configs"] = [scorer_job]
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return dict(body["data"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/query", query=expr)["result"])

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited {self.process.returncode}:\n{self.log_tail()}")
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)

        eventually(ready, "prometheus /-/ready", timeout)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_handle.close()


@pytest.fixture
def running_scorer(
    kafka_bootstrap: str, committee: Committee, artifact_body: dict
) -> Iterator[tuple[Scorer, int]]:
    """A serving scorer with /metrics on a free loopback port and votes flowing into it."""
    transport = KafkaTransport(bootstrap=kafka_bootstrap)
    topics = Topics(prefix=f"p{uuid.uuid4().hex[:8]}.")
    transport.create_topics(topic_specs(topics, partitions=2))
    publish_model(transport, topics, versioned(artifact_body, 1, TEST_KEY))
    scorer = Scorer(
        transport=transport,
        options=ScorerOptions(topics=topics, group_id=f"{topics.prefix}g", poll_timeout_ms=100),
        keys=[TEST_KEY],
    )
    server = MetricsServer(
        registry=scorer.metrics.registry,
        port=0,
        is_alive=scorer.heartbeat.alive,
        is_ready=lambda: scorer.ready,
        host="127.0.0.1",
    ).start()
    stop = threading.Event()
    loop = threading.Thread(target=scorer.run, args=(stop,), daemon=True)
    loop.start()

    def produce() -> None:  # ~200 votes every 0.5 s, for at most ~60 s
        for i in range(120):
            if stop.wait(0.5):
                return
            start = (i * 200) % (len(committee.ids) - 200)
            send_votes(transport, topics, committee, start, start + 200)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        yield scorer, server.port
    finally:
        stop.set()
        producer.join(timeout=30)
        loop.join(timeout=30)
        server.stop()
        transport.close()
    assert not loop.is_alive(), "the scorer loop did not stop"


def test_prometheus_scrapes_the_scorer_and_evaluates_the_rules(
    running_scorer: tuple[Scorer, int], tmp_path: Path
) -> None:
    scorer, metrics_port = running_scorer
    prometheus = PrometheusServer(tmp_path, metrics_port)
    try:
        prometheus.wait_ready()

        def scorer_target_up() -> bool:
            targets = prometheus.get("/api/v1/targets")["activeTargets"]
            return any(
                t["labels"]["job"] == SCORER_JOB
                and t["scrapeUrl"] == f"http://127.0.0.1:{metrics_port}/metrics"
                and t["health"] == "up"
                for t in targets
            )

        eventually(scorer_target_up, "the scorer target to be up")

        def votes_counted() -> float:
            result = prometheus.query(f'metasignal_votes_consumed_total{{job="{SCORER_JOB}"}}')
            return float(result[0]["value"][1]) if result else 0.0

        counted = eventually(votes_counted, "metasignal_votes_consumed_total > 0")
        assert counted <= scorer.stats.votes, "Prometheus saw more votes than were consumed"
        assert prometheus.query("metasignal_ready")[0]["value"][1] == "1"

        def recorded_rate() -> float:
            result = prometheus.query("metasignal:votes_consumed:rate1m")
            return float(result[0]["value"][1]) if result else 0.0

        assert eventually(recorded_rate, "the recording rule metasignal:votes_consumed:rate1m") > 0

        def signals_by_decision() -> set[str]:
            return {r["metric"]["decision"] for r in prometheus.query("metasignal:signals:rate1m")}

        assert "0" in eventually(signals_by_decision, "metasignal:signals:rate1m by decision")

        # Every rule (recording and alerting) has been evaluated, and none failed.
        def all_rules_evaluated() -> list[dict[str, Any]]:
            rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
            return rules if rules and all(r["health"] != "unknown" for r in rules) else []

        rules = eventually(all_rules_evaluated, "every rule to be evaluated")
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken, broken
        alerts = {r["name"]: r["state"] for r in rules if r["type"] == "alerting"}
        assert len(alerts) >= 8
        # The scorer is up and ready: its alerts stay quiet. No trainer is scraped here, so
        # the trainer-absent alert is on its way (pending for 5 minutes).
        assert alerts["MetasignalScorerDown"] == "inactive"
        assert alerts["MetasignalScorerNotReady"] == "inactive"
        assert alerts["MetasignalTrainerDown"] == "pending"
    except BaseException:
        print(prometheus.log_tail())
        raise
    finally:
        prometheus.stop()
