"""Prometheus rules and the Grafana dashboard against what the code really exports.

deploy/metric_names.txt is the one list of exported series: it must equal the metrics declared
in stream/ and trainer/, and every PromQL expression under deploy/ (rules, dashboard) may only
name those and the recording rules defined in deploy/prometheus/rules. promtool checks the rule
files and config and runs the rule unit tests (deploy/prometheus/tests.yml); it must be
installed (`make prometheus-tools`, a step of `make test`, installs them), never skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
METRIC_NAMES = DEPLOY / "metric_names.txt"
RULES_DIR = DEPLOY / "prometheus" / "rules"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
OPERATIONS = REPO / "docs" / "operations.md"
RULE_TESTS = [DEPLOY / "prometheus" / "tests.yml", DEPLOY / "prometheus" / "tests-days.yml"]

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_METRIC = re.compile(r"(?<![A-Za-z0-9_:])metasignal_[a-z0-9_]+")
_RECORDED = re.compile(r"(?<![A-Za-z0-9_:])metasignal:[a-z0-9_:]+")
_DECLARED = re.compile(
    r"\b(Counter|Gauge|Histogram|BatchHistogram|Summary)\(\s*['\"](metasignal_[a-z0-9_]+)['\"]"
)


# -- the list and the code -------------------------------------------------------------------------
def read_metric_names(path: Path = METRIC_NAMES) -> dict[str, str]:
    """name -> type from deploy/metric_names.txt."""
    names: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, kind = line.split()
        assert kind in ("counter", "gauge", "histogram"), f"line {number}: {kind}"
        assert name not in names, f"line {number}: {name} twice"
        assert (kind == "counter") == name.endswith("_total"), f"line {number}: {name} {kind}"
        names[name] = kind
    return names


def declared_in_code() -> dict[str, str]:
    """Exposed name -> type of every metasignal_* metric constructed in stream/ and trainer/."""
    found: dict[str, str] = {}
    for package in ("stream", "trainer"):
        for path in sorted((REPO / package).rglob("*.py")):
            for kind, name in _DECLARED.findall(path.read_text()):
                # BatchHistogram (stream/metrics.py) exposes a plain histogram.
                kind = kind.lower().removeprefix("batch")
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"  # prometheus_client exposes counters with _total
                found[name] = kind
    return found


def test_metric_names_list_is_what_the_code_declares() -> None:
    listed = read_metric_names()
    declared = declared_in_code()
    assert {n: k for n, k in declared.items() if n in listed} == {
        n: k for n, k in listed.items() if n in declared
    }, "types differ"
    assert not set(declared) - set(listed), "declared in code, missing from metric_names.txt"
    assert not set(listed) - set(declared), "in metric_names.txt, declared nowhere in the code"


def test_the_scorer_registry_exports_listed_names_only() -> None:
    from metasignal.stream.metrics import ScorerMetrics

    listed = read_metric_names()
    families = {m.name: m.type for m in ScorerMetrics().registry.collect()}
    assert families
    for family, kind in families.items():
        exposed = family + "_total" if kind == "counter" else family
        assert listed.get(exposed) == kind, exposed


# -- names inside PromQL -----------------------------------------------------------------------
def names_in(expr: str) -> tuple[set[str], set[str]]:
    """(raw metasignal_* series, metasignal:* recording rules) an expression refers to."""
    return set(_METRIC.findall(expr)), set(_RECORDED.findall(expr))


def unknown_names(expr: str, exported: dict[str, str], recorded: set[str]) -> set[str]:
    raw, rules = names_in(expr)
    unknown = rules - recorded
    for name in raw:
        if name in exported:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or exported.get(base) != "histogram":
            unknown.add(name)
    return unknown


def test_name_checker_catches_what_it_should() -> None:
    exported = {"metasignal_a_total": "counter", "metasignal_h_seconds": "histogram"}
    recorded = {"metasignal:a:rate1m"}
    ok = (
        'sum(rate(metasignal_a_total{job="metasignal-scorer"}[5m])) / metasignal:a:rate1m'
        " + histogram_quantile(0.9, rate(metasignal_h_seconds_bucket[5m]))"
        " + metasignal_h_seconds_count"
    )
    assert unknown_names(ok, exported, recorded) == set()
    assert unknown_names("rate(metasignal_a[5m])", exported, recorded) == {"metasignal_a"}
    assert unknown_names("metasignal_a_total_bucket", exported, recorded) == {
        "metasignal_a_total_bucket"
    }
    assert unknown_names("metasignal:b:rate5m", exported, recorded) == {"metasignal:b:rate5m"}
    assert names_in("job:metasignal_x:rate + metasignal:y") == (set(), {"metasignal:y"})


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def recording_rules() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def dashboard_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for inner in [panel, *panel.get("panels", [])]:
                for target in inner.get("targets", []):
                    yield path.name, inner, target


def test_rules_name_only_exported_metrics_and_defined_recordings() -> None:
    exported = read_metric_names()
    recorded = recording_rules()
    assert len(recorded) >= 5
    for rule in all_rules():
        name = rule.get("record") or rule["alert"]
        assert not unknown_names(rule["expr"], exported, recorded), name
        if "record" in rule:
            assert re.fullmatch(r"metasignal:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_dashboard_names_only_exported_metrics_and_defined_recordings() -> None:
    exported = read_metric_names()
    recorded = recording_rules()
    exprs = [target["expr"] for _, _, target in dashboard_targets()]
    assert len(exprs) >= 15
    for expr in exprs:
        assert not unknown_names(expr, exported, recorded), expr
    # The panels: throughput, decisions, latency, positive rates, F1, drift and
    # retraining, model versions, dead letters, lag.
    used = set().union(*(names_in(e)[0] | names_in(e)[1] for e in exprs))
    for wanted in (
        "metasignal:votes_consumed:rate1m",
        "metasignal:signals:rate1m",
        "metasignal:vote_to_signal_latency_seconds:p99_5m",
        "metasignal_predicted_positive_rate",
        "metasignal_realized_positive_rate",
        "metasignal_rolling_f1",
        "metasignal_drift_events_total",
        "metasignal_trainer_retrains_total",
        "metasignal_model_version",
        "metasignal:dlq_messages:rate5m",
        "metasignal_consumer_lag",
        "metasignal_estimated_positive_rate",
        "metasignal_expected_precision",
        "metasignal_expected_recall",
        "metasignal_expected_f1",
        "metasignal_label_shift_statistic_ratio",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_label_free_estimates_are_drawn_beside_their_realized_figures() -> None:
    """Each label-free estimate shares a panel with the realized figure it anticipates."""
    panels: dict[tuple[str, str], set[str]] = {}
    for name, panel, target in dashboard_targets():
        panels.setdefault((name, panel["title"]), set()).update(names_in(target["expr"])[0])
    pairs = [
        ("metasignal_estimated_positive_rate", "metasignal_realized_positive_rate"),
        ("metasignal_expected_precision", "metasignal_rolling_precision"),
        ("metasignal_expected_recall", "metasignal_rolling_recall"),
        ("metasignal_expected_f1", "metasignal_rolling_f1"),
    ]
    for estimate, realized in pairs:
        assert any({estimate, realized} <= names for names in panels.values()), estimate
    # Requests are shown by evidence, so a label-free re-tune is told from an outcome one.
    exprs = [t["expr"] for _, _, t in dashboard_targets()]
    assert any("metasignal_drift_events_total" in e and "source" in e for e in exprs)


def test_dashboard_is_valid_and_uses_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files
    for path in files:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
        panels = [q for p in dashboard["panels"] for q in [p, *p.get("panels", [])]]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_alerts_are_labelled_annotated_and_have_a_runbook() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), flags=re.M)
    }
    alerts = [r for r in all_rules() if "alert" in r]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for wanted in (
        "MetasignalScorerDown",
        "MetasignalConsumerLagHigh",
        "MetasignalVoteToSignalLatencyHigh",
        "MetasignalModelStale",
        "MetasignalDLQRateHigh",
        "MetasignalDriftStorm",
        "MetasignalNoSignals",
        "MetasignalTrainerFailing",
    ):
        assert wanted in names
    for alert in alerts:
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), name
        page, _, anchor = alert["annotations"]["runbook"].partition("#")
        assert (REPO / page).resolve() == OPERATIONS.resolve(), name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no runbook section"


def test_operations_doc_links_resolve() -> None:
    text = OPERATIONS.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)
    }
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) >= 10
    assert not set(links) - anchors, "links to missing sections"
    for path in re.findall(r"`((?:deploy|docs|tests)/[A-Za-z0-9_./-]+)`", text):
        if "*" not in path:
            assert (REPO / path).exists(), path


def test_every_alert_has_a_firing_unit_test() -> None:
    tests = [t for path in RULE_TESTS for t in yaml.safe_load(path.read_text())["tests"]]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    recorded_tested = {case["expr"] for test in tests for case in test.get("promql_expr_test", [])}
    assert {r["alert"] for r in all_rules() if "alert" in r} <= fired
    assert len(recorded_tested & recording_rules()) >= 5


# -- promtool -------------------------------------------------------------------------------------
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run `make prometheus-tools`"
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_promtool_check_rules_and_config() -> None:
    rules = run_promtool("check", "rules", *sorted(RULES_DIR.glob("*.yml")))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = run_promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "2 rule files found" in config.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests can fail: move one threshold and they do."""
    (tmp_path / "rules").mkdir()
    for path in RULES_DIR.glob("*.yml"):
        text = path.read_text()
        if path.name == "alerts.yml":
            assert "dlq_ratio:rate5m > 0.01" in text
            text = text.replace(
                "metasignal:dlq_ratio:rate5m > 0.01", "metasignal:dlq_ratio:rate5m > 0.1"
            )
        (tmp_path / "rules" / path.name).write_text(text)
    tests = yaml.safe_load((DEPLOY / "prometheus" / "tests.yml").read_text())
    tests["tests"] = [
        t
        for t in tests["tests"]
        if any(c["alertname"] == "MetasignalDLQRateHigh" for c in t.get("alert_rule_test", []))
    ]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", tmp_path / "tests.yml")
    assert result.returncode != 0
    assert "MetasignalDLQRateHigh" in result.stdout + result.stderr


def test_promtool_version_is_recent_enough() -> None:
    result = subprocess.run([promtool(), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"version (\d+)\.(\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    assert (int(match.group(1)), int(match.group(2))) >= (2, 37)


@pytest.mark.parametrize("name", ["prometheus.yml"])
def test_scrape_config_has_the_jobs_the_rules_use(name: str) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / name).read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    used = set(re.findall(r'job="([^"]+)"', (RULES_DIR / "alerts.yml").read_text()))
    assert used and used <= jobs
