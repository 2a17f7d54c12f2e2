"""deploy/docker-compose.yml, checked structurally (no Docker engine here).

Every service, image, port, mounted file and dependency is checked against the repository: the
Kafka listeners hang together, the topic set-up runs first, Prometheus scrapes every metasignal
process on its real port and finds its rules, Grafana finds its datasource and dashboard.
"""

from __future__ import annotations

import importlib
import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from metasignal.stream.config import Setting
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
METASIGNAL_IMAGE = re.compile(r"metasignal:\d+\.\d+\.\d+")


def known_settings() -> dict[str, Setting]:
    """Every METASIGNAL_* environment variable the scorer and the trainer read."""
    found: dict[str, Setting] = {}
    for module_name in (
        "metasignal.stream.config",
        "metasignal.stream.options",
        "metasignal.trainer.service",
    ):
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, Setting):
                    found[item.env] = item
    assert "METASIGNAL_BOOTSTRAP" in found and "METASIGNAL_SIGNING_KEY" in found
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def metasignal_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: s for name, s in services.items() if METASIGNAL_IMAGE.fullmatch(s.get("image", ""))
    }


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def partitions_of(command: list[str]) -> int:
    assert command[:2] == ["topics", "create"], command
    return int(command[command.index("--partitions") + 1])


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of the service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_FILE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of ``service`` shows, if it is bind-mounted."""
    wanted = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        if wanted == target:
            return source
        if target in wanted.parents:
            return source / wanted.relative_to(target)
    return None


def listeners(value: str) -> dict[str, tuple[str, int]]:
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


# -- services ----------------------------------------------------------------------------------
def test_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    ours = metasignal_services(services)
    commands = {name: command_of(s)[0] for name, s in ours.items()}
    assert sorted(commands.values()) == ["scorer", "scorer", "topics", "trainer"]
    assert {"kafka", "prometheus", "grafana"} <= set(services)


def test_images_are_pinned_and_ours_is_built_from_the_repo(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        image = service["image"]
        _, sep, tag = image.rpartition(":")
        assert sep and tag and tag != "latest", f"{name}: pin {image} by tag"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name, service in metasignal_services(services).items():
        assert service["image"] == f"metasignal:{version}", name
        build = service["build"]
        context = (COMPOSE_FILE.parent / build["context"]).resolve()
        assert context == REPO, name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")


def test_kafka_is_the_version_the_tests_run_against(services: dict[str, dict[str, Any]]) -> None:
    pom = ET.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.find("m:properties/m:kafka.version", ns)
    assert version is not None and version.text
    assert services["kafka"]["image"] == f"apache/kafka:{version.text}"


def test_kafka_is_a_consistent_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(bound) <= set(protocols) and set(advertised) <= set(bound)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == bound[controller][1]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # One broker: internal topics (offsets, transactions) cannot have more replicas than that,
    # or consumer groups and exactly-once transactions never start.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    # The data directory is the persistent volume.
    volumes = [v.split(":") for v in services["kafka"]["volumes"]]
    assert [env["KAFKA_LOG_DIRS"]] == [target for _, target in volumes]
    # Our services reach the broker on an advertised listener, the host on 127.0.0.1:9092.
    internal = {f"{h}:{p}" for h, p in advertised.values()}
    for name, service in metasignal_services(services).items():
        assert env_of(service)["METASIGNAL_BOOTSTRAP"] in internal, name
    assert "127.0.0.1:9092" in internal
    assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]


def test_metasignal_containers_are_locked_down(services: dict[str, dict[str, Any]]) -> None:
    for name, service in metasignal_services(services).items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], f"{name}: a writable /tmp"
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service, f"{name}: the image's non-root USER applies"


def test_metasignal_env_is_made_of_real_settings(services: dict[str, dict[str, Any]]) -> None:
    settings = known_settings()
    for name, service in metasignal_services(services).items():
        env = env_of(service)
        unknown = {k for k in env if k.startswith("METASIGNAL_")} - set(settings)
        assert not unknown, f"{name}: {unknown} are not settings of stream/ or trainer/"
        assert env["METASIGNAL_SIGNING_KEY"].startswith("${METASIGNAL_SIGNING_KEY")


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        targets = depends if isinstance(depends, list) else list(depends)
        assert set(targets) <= set(services), f"{name} depends on a missing service"
        if isinstance(depends, dict):
            for target, spec in depends.items():
                condition = spec.get("condition", "service_started")
                assert condition in (
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully",
                ), condition
                if condition == "service_healthy":
                    assert "test" in services[target].get("healthcheck", {}), target
    ours = metasignal_services(services)
    (topics,) = [n for n, s in ours.items() if command_of(s)[0] == "topics"]
    assert ours[topics]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert ours[topics]["restart"] == "no"
    for name, service in ours.items():
        if name != topics:
            assert service["depends_on"] == {
                topics: {"condition": "service_completed_successfully"}
            }, name


def test_scorers_do_not_outnumber_partitions(services: dict[str, dict[str, Any]]) -> None:
    ours = metasignal_services(services)
    (topics,) = [s for s in ours.values() if command_of(s)[0] == "topics"]
    scorers = [s for s in ours.values() if command_of(s)[0] == "scorer"]
    assert 2 <= len(scorers) <= partitions_of(command_of(topics))
    # Stable, distinct hostnames: the default transactional id is <group>-<hostname>.
    hostnames = [s.get("hostname") for s in scorers]
    assert None not in hostnames and len(set(hostnames)) == len(hostnames)


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    published: dict[str, str] = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            parts = str(mapping).split(":")
            host = ":".join(parts[:-1])
            assert host not in published, f"{name} and {published.get(host)} both publish {host}"
            published[host] = name
            assert parts[0] == "127.0.0.1", f"{name}: publish on loopback only ({mapping})"
    for name, service in metasignal_services(services).items():
        port = env_of(service)["METASIGNAL_METRICS_PORT"]
        for mapping in service.get("ports", []):
            assert str(mapping).endswith(f":{port}"), f"{name}: {mapping} misses the metrics port"
    assert published["127.0.0.1:9108"].startswith("scorer")
    assert published["127.0.0.1:9090"] == "prometheus"
    assert published["127.0.0.1:3000"] == "grafana"


def test_every_mounted_file_exists_and_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    mounted = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} is missing"
                mounted += 1
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
    assert mounted >= 4


# -- Prometheus and Grafana in compose ----------------------------------------------------------
def test_prometheus_scrapes_every_metasignal_process_and_finds_its_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    flags = dict(f.lstrip("-").partition("=")[::2] for f in prometheus["command"])
    config_path = host_path(prometheus, flags["config.file"])
    assert config_path == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    config_dir = PurePosixPath(flags["config.file"]).parent
    for pattern in config["rule_files"]:
        directory = host_path(prometheus, str(config_dir / PurePosixPath(pattern).parent))
        assert directory is not None, f"{pattern} is not mounted into the container"
        assert list(directory.glob(PurePosixPath(pattern).name)), f"{pattern} matches nothing"
    targets = {
        job["job_name"]: {t for sc in job["static_configs"] for t in sc["targets"]}
        for job in config["scrape_configs"]
    }
    expected: dict[str, set[str]] = {"metasignal-scorer": set(), "metasignal-trainer": set()}
    for name, service in metasignal_services(services).items():
        kind = command_of(service)[0]
        if kind in ("scorer", "trainer"):
            host = service.get("hostname", name)
            port = env_of(service)["METASIGNAL_METRICS_PORT"]
            expected[f"metasignal-{kind}"].add(f"{host}:{port}")
    for job, wanted in expected.items():
        assert targets[job] == wanted, job


def test_grafana_gets_its_datasource_and_dashboard(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    url = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", datasource["url"])
    assert url and url.group(1) == "prometheus" and url.group(2) == "9090"
    assert any(f.endswith("9090") for f in map(str, services["prometheus"]["ports"]))
    for provider in yaml.safe_load((provisioning / "dashboards" / "metasignal.yml").read_text())[
        "providers"
    ]:
        directory = host_path(grafana, provider["options"]["path"])
        assert directory is not None and list(directory.glob("*.json")), provider
    home = env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = host_path(grafana, home)
    assert home_file is not None and home_file.is_file(), home
