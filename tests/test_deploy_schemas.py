"""deploy/ checked against the published schemas, beyond parsing (no container engine here).

- The compose file against the Compose Specification's JSON schema (``schema/compose-spec.json``
  of the compose-spec project, Apache-2.0), as vendored by the ``check-jsonschema`` package with
  its license (``check_jsonschema/builtin_schemas/vendor/licenses/LICENSE.compose-spec``).
- The Kubernetes manifests against Kubernetes' OpenAPI schemas in strict mode (unknown fields
  are errors), as shipped by ``kubernetes-validate``, for the oldest and newest Kubernetes
  versions we state support for (docs/operations.md). ServiceMonitor and PrometheusRule are
  prometheus-operator CRDs, not Kubernetes APIs: they have no schema there (checked by name).
- The signing-key placeholders in deploy/ cannot be used: the service refuses them.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from metasignal.stream.artifact import SIGNING_KEY_ENV, resolve_signing_keys
from metasignal.stream.errors import ArtifactError
from tests.conftest import REPO

COMPOSE = REPO / "deploy" / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
OPERATOR_CRDS = {"ServiceMonitor", "PrometheusRule"}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    assert schema["title"] == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(validator: jsonschema.protocols.Validator, doc: Doc) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def test_compose_file_follows_the_compose_specification(
    compose_validator: jsonschema.protocols.Validator,
) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert _errors(compose_validator, doc) == []
    # The schema does reject what compose would: misspelt service and healthcheck fields.
    broken = copy.deepcopy(doc)
    broken["services"]["kafka"]["healthcheck"]["retry"] = 3
    broken["services"]["kafka"]["depends"] = ["prometheus"]
    errors = _errors(compose_validator, broken)
    assert any(e.startswith("services/kafka:") and "'depends'" in e for e in errors), errors
    assert any(e.startswith("services/kafka/healthcheck:") and "'retry'" in e for e in errors)


def test_compose_signing_key_has_no_usable_fallback() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())["x-metasignal"]["environment"][SIGNING_KEY_ENV]
    match = re.fullmatch(r"\$\{" + SIGNING_KEY_ENV + r"(?P<op>:?[-?])(?P<word>[^}]*)\}", raw)
    assert match, f"{SIGNING_KEY_ENV} must come from the environment, got {raw!r}"
    if match["op"].endswith("?"):  # required: compose stops with this message when unset
        assert "32" in match["word"] and "openssl rand" in match["word"]
    else:  # a fallback must be one the service refuses
        with pytest.raises(ArtifactError, match=r"placeholder|bytes long"):
            resolve_signing_keys(environ={SIGNING_KEY_ENV: match["word"]})


def _manifests() -> list[Doc]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_follow_the_openapi_schemas(version: str) -> None:
    validated, without_schema = [], set()
    for doc in _manifests():
        try:
            assert kubernetes_validate.validate(doc, version, strict=True) == version[:4]
        except kubernetes_validate.SchemaNotFoundError:
            without_schema.add(doc["kind"])
            continue
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        validated.append(doc["kind"])
    assert without_schema == OPERATOR_CRDS
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job"} <= set(validated)


def test_kubernetes_validation_rejects_what_the_api_server_would() -> None:
    (scorer,) = [
        d for d in _manifests() if d["kind"] == "Deployment" and "scorer" in d["metadata"]["name"]
    ]
    broken = copy.deepcopy(scorer)
    broken["spec"]["template"]["spec"]["containers"][0]["envFrom"] = {"configMapRef": "x"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    typo = copy.deepcopy(scorer)
    typo["spec"]["replica"] = 2  # strict: unknown fields are errors
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[-1], strict=True)


def test_kubernetes_secret_placeholder_is_refused() -> None:
    (secret,) = [d for d in _manifests() if d["kind"] == "Secret"]
    value = secret["stringData"][SIGNING_KEY_ENV]
    assert value.startswith("REPLACE-ME")
    with pytest.raises(ArtifactError, match="is a placeholder"):
        resolve_signing_keys(environ={SIGNING_KEY_ENV: value})
