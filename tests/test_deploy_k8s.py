"""deploy/k8s, checked structurally: kinds, selectors, ports, probes, security, env, sizing.

No cluster is needed: the manifests are parsed and cross-checked (a selector that matches no
pod, a probe on a port that does not exist, an env var from a key nobody defines, a root
container, a scorer replica with no partition to read all fail here).
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.test_deploy_compose import known_settings, partitions_of

K8S = REPO / "deploy" / "k8s"
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def kustomization() -> Doc:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def docs(kustomization: Doc) -> list[Doc]:
    out: list[Doc] = []
    for name in kustomization["resources"]:
        out.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return out


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet", "Job")
    }


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def quantity(text: str | int) -> float:
    """Kubernetes quantity -> number (bytes for memory, cores for cpu)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match, text
    return float(match.group(1)) * units.get(match.group(2), 1)


def deployment(docs: list[Doc], command: str) -> Doc:
    (found,) = [
        d
        for d in of_kind(docs, "Deployment").values()
        if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == command
    ]
    return found


# -- the set of files and kinds -----------------------------------------------------------------
def test_kustomization_lists_every_manifest_and_they_parse(
    kustomization: Doc, docs: list[Doc]
) -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "Job",
            "Namespace",
            "PodDisruptionBudget",
            "PrometheusRule",
            "Secret",
            "Service",
            "Service",
            "ServiceMonitor",
        ]
    )
    (namespace,) = of_kind(docs, "Namespace")
    assert kustomization["namespace"] == namespace
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"], d
        assert "namespace" not in d["metadata"], "kustomization sets the namespace"


def test_selectors_match_their_pods(docs: list[Doc]) -> None:
    deployments = of_kind(docs, "Deployment")
    for name, d in deployments.items():
        selector = d["spec"]["selector"]["matchLabels"]
        assert matches(selector, d["spec"]["template"]["metadata"]["labels"]), name
    for name, service in of_kind(docs, "Service").items():
        selected = [
            d
            for d in deployments.values()
            if matches(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        containers = selected[0]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"] for c in containers for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"
    for name, pdb in of_kind(docs, "PodDisruptionBudget").items():
        wanted = pdb["spec"]["selector"]["matchLabels"]
        selected = [
            d
            for d in deployments.values()
            if matches(wanted, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"PodDisruptionBudget {name}"
        assert selected[0]["spec"]["replicas"] > pdb["spec"]["minAvailable"], name


def test_servicemonitor_scrapes_both_services_under_the_job_names_the_alerts_use(
    docs: list[Doc],
) -> None:
    (monitor,) = of_kind(docs, "ServiceMonitor").values()
    services = of_kind(docs, "Service")
    scraped = {
        name
        for name, s in services.items()
        if matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    }
    assert scraped == {"metasignal-scorer", "metasignal-trainer"}
    for endpoint in monitor["spec"]["endpoints"]:
        for name in scraped:
            assert endpoint["port"] in {p["name"] for p in services[name]["spec"]["ports"]}
        assert endpoint.get("path", "/metrics") == "/metrics"
    # The operator names the job after the Service: the alert rules' job matchers must agree.
    rules = (REPO / "deploy" / "prometheus" / "rules" / "alerts.yml").read_text()
    jobs = set(re.findall(r'job="([^"]+)"', rules))
    assert jobs and jobs <= scraped


def test_replicas(docs: list[Doc]) -> None:
    (job,) = of_kind(docs, "Job").values()
    partitions = partitions_of(job["spec"]["template"]["spec"]["containers"][0]["args"])
    scorer = deployment(docs, "scorer")
    assert 2 <= scorer["spec"]["replicas"] <= partitions, "idle scorers past the partition count"
    trainer = deployment(docs, "trainer")
    assert trainer["spec"]["replicas"] == 2, "one active trainer and one standby"
    text = (K8S / "scorer.yaml").read_text()
    assert re.search(r"#.*replicas <= partitions", text), "explain the bound next to it"


# -- pods ------------------------------------------------------------------------------------------
def test_pods_run_unprivileged(docs: list[Doc]) -> None:
    specs = pod_specs(docs)
    assert len(specs) == 3
    for name, spec in specs.items():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        mounts_tmp = False
        for container in spec["containers"]:
            sc = container.get("securityContext", {})
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            assert uid is not None and uid != 0, f"{name}: a non-root uid"
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            mounts_tmp = any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts", []))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert mounts_tmp and "emptyDir" in volumes["tmp"], f"{name}: a writable /tmp"


def test_pods_use_the_image_user_and_one_pinned_image(docs: list[Doc]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    image_uid = int(re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1])
    images = set()
    for name, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsUser"] == image_uid, name
        for container in spec["containers"]:
            images.add(container["image"])
            assert container["args"][0] in ("scorer", "trainer", "topics"), name
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert images == {f"metasignal:{version}"}


def test_probes_hit_the_metrics_port(docs: list[Doc]) -> None:
    (config,) = of_kind(docs, "ConfigMap").values()
    metrics_port = int(config["data"]["METASIGNAL_METRICS_PORT"])
    for command in ("scorer", "trainer"):
        (container,) = deployment(docs, command)["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [metrics_port], command
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{command} {probe}"
            assert get["port"] in ports or get["port"] == metrics_port, f"{command} {probe}"
        # Liveness must tolerate the scorer's 60 s heartbeat window.
        live = container["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 60, command


def test_resources(docs: list[Doc]) -> None:
    for name, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            resources = container["resources"]
            requests, limits = resources["requests"], resources["limits"]
            assert {"cpu", "memory"} <= set(requests), name
            assert quantity(requests["memory"]) <= quantity(limits["memory"]), name
            if "cpu" in limits:
                assert quantity(requests["cpu"]) <= quantity(limits["cpu"]), name
    (scorer,) = deployment(docs, "scorer")["spec"]["template"]["spec"]["containers"]
    # Measured RSS: ~120 MiB idle, ~185 MiB with the outcome-join cache full (scorer.yaml).
    assert quantity(scorer["resources"]["requests"]["memory"]) >= 256 * 2**20
    assert quantity(scorer["resources"]["limits"]["memory"]) >= 512 * 2**20


def test_env_comes_from_keys_that_exist_and_are_real_settings(docs: list[Doc]) -> None:
    settings = known_settings()
    config_maps = {n: set(d["data"]) for n, d in of_kind(docs, "ConfigMap").items()}
    secrets = {
        n: set(d.get("stringData", {})) | set(d.get("data", {}))
        for n, d in of_kind(docs, "Secret").items()
    }
    for keys in [*config_maps.values(), *secrets.values()]:
        unknown = keys - set(settings)
        assert not unknown, f"{unknown} are not settings of stream/ or trainer/"
    for keys in config_maps.values():
        leaked = {k for k in keys if settings[k].secret}
        assert not leaked, f"{leaked} are secrets: put them in the Secret"
    for name, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            names: set[str] = set()
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                    names |= config_maps[source["configMapRef"]["name"]]
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
                    names |= secrets[source["secretRef"]["name"]]
            for var in container.get("env", []):
                assert var["name"] in settings, f"{name}: {var['name']} is not a setting"
                names.add(var["name"])
                ref = var.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets.get(key["name"], set()), f"{name}: {key}"
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in config_maps.get(key["name"], set()), f"{name}: {key}"
            assert "METASIGNAL_BOOTSTRAP" in names, name
            if container["args"][0] != "topics":
                assert "METASIGNAL_SIGNING_KEY" in names, f"{name} must verify artifacts"


def test_secret_holds_placeholders_only(docs: list[Doc]) -> None:
    (secret,) = of_kind(docs, "Secret").values()
    assert "data" not in secret, "no base64 blobs that could hide a real value"
    for key, value in secret["stringData"].items():
        assert value.startswith("REPLACE-ME"), key


# -- the PrometheusRule ------------------------------------------------------------------------
def test_prometheusrule_is_the_rule_files(docs: list[Doc]) -> None:
    spec = importlib.util.spec_from_file_location(
        "render_rules", REPO / "deploy" / "render_rules.py"
    )
    assert spec and spec.loader
    render_rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_rules)
    (rule,) = of_kind(docs, "PrometheusRule").values()
    assert rule["spec"]["groups"] == render_rules.rule_groups(), "run `make k8s-rules`"
    assert Path(K8S / "prometheusrule.yaml").read_text() == render_rules.render()
