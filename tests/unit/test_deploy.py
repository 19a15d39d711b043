"""deploy/ as a platform team would apply it: the Kubernetes manifests pass the Kubernetes
API's own OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), the
compose file passes the Compose Specification's JSON schema (tests/support/schemas,
compose-spec/compose-spec at 170098b) and refers only to what exists, and the pieces agree
with each other and with cascade (the policy in the ConfigMap loads, the environment is
valid Settings, probes hit real endpoints, the image runs as non-root without a compiler)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from router.keys.file import read_keys
from router.policy import parse_policy
from router.settings import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES = "1.31.0"
COMPOSE_SCHEMA = Path(__file__).parents[1] / "support" / "schemas" / "compose-spec.json"


def manifests() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def kind(name: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == name]


@pytest.mark.parametrize(
    "manifest", manifests(), ids=lambda m: f"{m['kind']}/{m['metadata']['name']}"
)
def test_each_manifest_is_valid_for_the_kubernetes_api(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)


def _container() -> dict[str, Any]:
    (deployment,) = kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_deployment_is_probed_bounded_and_unprivileged() -> None:
    (deployment,) = kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for other in (*kind("Service"), *kind("PodDisruptionBudget")):
        selector = other["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        if selector.get("app.kubernetes.io/name") == "cascade":
            assert selector.items() <= labels.items()
    (hpa,) = kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (pdb,) = kind("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_the_policy_and_keys_are_mounted_where_cascade_reads_them(tmp_path: Path) -> None:
    container = _container()
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    settings = Settings.from_env(env)  # every variable valid
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert all("subPath" not in m for m in container["volumeMounts"])  # updates must reach
    assert str(settings.policy_path.parent) == mounts["policy"]
    assert settings.keys_path is not None and str(settings.keys_path.parent) == mounts["keys"]
    (config,) = kind("ConfigMap")
    loaded = parse_policy(config["data"][settings.policy_path.name].encode(), env={})
    assert loaded.policy.cache.store is None and loaded.policy.routes["auto"].cache is not None
    (secret,) = kind("Secret")
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(secret["stringData"][settings.keys_path.name])
    assert read_keys(keys_file) == []


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_the_compose_file_is_valid_compose() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # the spec names draft-07 by an https URL jsonschema does not know: say it directly
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(_compose())


def test_the_compose_file_refers_only_to_what_exists() -> None:
    compose = _compose()
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for needed in service.get("depends_on", ()):
            assert needed in services, f"{name} depends on unknown {needed}"
        for mount in service.get("volumes", ()):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
    cascade = services["cascade"]
    assert cascade["deploy"]["replicas"] == 2
    assert (DEPLOY.parent / cascade["build"]["dockerfile"]).exists()
    assert services["vllm"]["profiles"] == ["gpu"]
    defaults = {
        key: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        for key, value in cascade["environment"].items()
    }
    settings = Settings.from_env(defaults)
    assert settings.cache_store == "redis" and settings.redis_url
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["dns_sd_configs"][0]["names"] == ["cascade"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "http://cascade:8080" in nginx and "location = /metrics { return 404; }" in nginx
    assert "proxy_buffering off" in nginx  # streams go out as they come


def test_the_image_is_multi_stage_unprivileged_and_without_a_compiler() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2
    final = stages[-1]
    assert re.search(r"^USER (?!root)\S+", final, flags=re.MULTILINE)
    assert "HEALTHCHECK" in final and "/readyz" in final
    assert not re.search(r"build-essential|\bgcc\b|\bcmake\b", final)
    assert "COPY --from=build /opt/cascade" in final  # the model comes baked in the venv


def test_the_large_model_name_agrees_under_every_profile() -> None:
    """cascade's large tier asks for CASCADE_LARGE_MODEL; under `--profile gpu` vLLM must
    answer to that name, whatever it is set to (its default included)."""
    services = _compose()["services"]
    asked = services["cascade"]["environment"]["CASCADE_LARGE_MODEL"]
    command = services["vllm"]["command"]
    served = command[command.index("--served-model-name") + 1 : command.index("--max-model-len")]
    assert asked in served  # the same expression, so the same value, set or defaulted


def test_what_compose_publishes_is_on_loopback_and_the_policy_comes_from_the_host() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", ()):
            assert port.startswith("${CASCADE_PUBLISH_ADDRESS:-127.0.0.1}:"), (name, port)
    mounts = services["cascade"]["volumes"]
    assert any(m.startswith("../policies:/etc/cascade/policies") for m in mounts)
    assert (DEPLOY.parent / "policies" / "default.yaml").exists()
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "${GRAFANA_ANONYMOUS:-false}"


def test_every_image_can_be_named_otherwise_with_the_official_one_by_default() -> None:
    services = _compose()["services"]
    for name in ("proxy", "redis", "redis-cache", "prometheus", "grafana"):
        assert re.fullmatch(r"\$\{[A-Z_]+_IMAGE:-[a-z/]+:[\w.-]+\}", services[name]["image"]), name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile


def test_the_keys_volume_mounts_where_the_image_made_a_folder_its_user_owns() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    env = _compose()["services"]["cascade"]["environment"]
    keys_folder = str(Path(env["CASCADE_KEYS"]).parent)
    assert f"mkdir -p {keys_folder}" in dockerfile or keys_folder in dockerfile
    assert "chown -R cascade /var/lib/cascade" in dockerfile
    assert f"cascade-keys:{keys_folder}" in _compose()["services"]["cascade"]["volumes"]


def test_a_build_ca_bundle_stays_in_the_build_stage() -> None:
    """CA_BUNDLE (a corporate proxy's CA for pip) is read by the build stage only: the final
    stage neither declares it nor copies anything of it."""
    stages = re.split(r"^FROM ", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)[1:]
    build, final = stages[0], stages[-1]
    assert "ARG CA_BUNDLE" in build and "rm -f /tmp/extra-ca.pem /tmp/ca.pem" in build
    assert "CA_BUNDLE" not in final and "ca.pem" not in final
    assert "--no-index --find-links /wheels" in build  # the wheelhouse, when it has wheels
