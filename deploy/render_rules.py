"""Write deploy/k8s/prometheusrule.yaml from deploy/prometheus/rules/*.yml.

    .venv/bin/python deploy/render_rules.py        # or: make k8s-rules

docker-compose's Prometheus loads the rule files directly; the Prometheus Operator wants them
wrapped in a PrometheusRule resource. The rule files are the source: a test fails when the two
differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
OUT = DEPLOY / "k8s" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules/*.yml by deploy/render_rules.py (make k8s-rules).
# Do not edit: change the rule files and regenerate. The `release` label must match your
# Prometheus' ruleSelector (kube-prometheus-stack selects release=<its release name>).
"""


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def resource() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "metasignal",
            "labels": {
                "app.kubernetes.io/part-of": "metasignal",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": rule_groups()},
    }


def render() -> str:
    return HEADER + yaml.safe_dump(resource(), sort_keys=False, width=1000, allow_unicode=True)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(DEPLOY.parent)}")
