"""The files in ``deploy/`` parse, have the shape their consumers need, and agree with each other.

No Kubernetes, Helm or kubeconform here (none installs from the registries this project uses), so
these are the checks a schema would not catch anyway: the code location's module and name are
the project's, every pod runs the one image the Dockerfile builds, the Ray version is the one
installed in it, every Secret and volume a pod names is defined, and the sizes that must match
(run pod CPUs and parallel steps, Redis' memory cap and its limit) do.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from dagster_project.instance_config import PASSWORD_ENV, SCHEME
from resources.home import python_logs_settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
NAMESPACE = "playbook"
CLUSTER_SCOPED = {"Namespace"}
MEMORY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
}


def _documents(relative: str) -> list[dict[str, Any]]:
    with (DEPLOY / relative).open(encoding="utf-8") as handle:
        return [d for d in yaml.safe_load_all(handle) if d is not None]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in deploy/ (not the Helm values), with its file."""
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        relative = str(path.relative_to(DEPLOY))
        if relative != "dagster/values.yaml":
            found += [(relative, d) for d in _documents(relative)]
    return found


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in _manifests() if d["kind"] == kind]


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    (document,) = _documents("dagster/values.yaml")
    return document


@pytest.fixture(scope="module")
def location(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _image(location: dict[str, Any]) -> str:
    return f"{location['image']['repository']}:{location['image']['tag']}"


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", str(quantity)).groups()
    return int(number) * MEMORY_UNITS.get(unit, 1)


def _secret_keys() -> dict[str, set[str]]:
    return {s["metadata"]["name"]: set(s["stringData"]) for s in _by_kind("Secret")}


def _pods() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every pod template in the manifests."""
    for deployment in _by_kind("Deployment"):
        yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]
    for cluster in _by_kind("RayCluster"):
        yield "ray-head", cluster["spec"]["headGroupSpec"]["template"]["spec"]
        for group in cluster["spec"]["workerGroupSpecs"]:
            yield f"ray-{group['groupName']}", group["template"]["spec"]


def test_every_manifest_is_a_named_object_in_the_namespace() -> None:
    manifests = _manifests()
    assert {d["kind"] for _, d in manifests} >= {"Namespace", "Secret", "Deployment", "Service"}
    for path, document in manifests:
        assert document.get("apiVersion") and document.get("kind"), path
        assert document["metadata"].get("name"), path
        if document["kind"] not in CLUSTER_SCOPED:
            assert document["metadata"].get("namespace") == NAMESPACE, (path, document["kind"])
    (namespace,) = _by_kind("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE


def test_example_secrets_hold_placeholders_only() -> None:
    secrets = _by_kind("Secret")
    assert secrets
    for secret in secrets:
        assert secret["type"] == "Opaque" and "data" not in secret
        assert all("CHANGE-ME" in value for value in secret["stringData"].values()), secret


def test_code_location_serves_the_projects_definitions(
    location: dict[str, Any], values: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    dagster_tool = pyproject["tool"]["dagster"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert location["name"] == dagster_tool["code_location_name"]
    args = location["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == dagster_tool["module_name"]
    assert args[args.index("--location-name") + 1] == dagster_tool["code_location_name"]
    assert isinstance(location["port"], int)
    assert location["includeConfigInLaunchedRuns"] == {"enabled": True}


def test_instance_is_postgres_with_the_password_from_a_secret(values: dict[str, Any]) -> None:
    postgres = values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert postgres["postgresqlPassword"] == ""  # not in the values
    if not postgres["enabled"]:
        assert postgres["postgresqlHost"]
    assert postgres["postgresqlScheme"] == SCHEME  # the driver dagster-postgres is built on
    assert isinstance(postgres["service"]["port"], int)
    secret = values["global"]["postgresqlSecretName"]
    # the chart reads this key into DAGSTER_PG_PASSWORD, the variable our own instance file names
    assert "postgresql-password" in _secret_keys()[secret]
    # the chart's variable for it; a local instance file (instance_config) names the same one, so
    # one `export` serves both
    assert PASSWORD_ENV == "DAGSTER_PG_PASSWORD"


def test_run_logs_capture_the_same_loggers_as_a_local_instance(values: dict[str, Any]) -> None:
    local = python_logs_settings()
    assert values["pythonLogs"] == {
        "pythonLogLevel": local["python_log_level"],
        "managedPythonLoggers": local["managed_python_loggers"],
    }


def test_runs_are_kubernetes_jobs_with_as_many_processes_as_cpus(
    values: dict[str, Any], location: dict[str, Any]
) -> None:
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    container = launcher["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    cpus = _cpu(container["resources"]["requests"]["cpu"])
    assert _cpu(container["resources"]["limits"]["cpu"]) == cpus
    assert int(_env(location)["DAGSTER_MULTIPROCESS_EXECUTOR_MAX_CONCURRENT"]) == cpus
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"


def test_location_env_secrets_and_home_volume_are_defined(location: dict[str, Any]) -> None:
    secrets = _secret_keys()
    assert {"playbook-redis", "playbook-s3"} <= {s["name"] for s in location["envSecrets"]}
    assert all(s["name"] in secrets for s in location["envSecrets"])
    assert "PLAYBOOK_REDIS" in secrets["playbook-redis"]
    home = _env(location)["PLAYBOOK_HOME"]
    (mount,) = [m for m in location["volumeMounts"] if m["mountPath"] == home]
    (volume,) = [v for v in location["volumes"] if v["name"] == mount["name"]]
    claims = {c["metadata"]["name"]: c for c in _by_kind("PersistentVolumeClaim")}
    claim = claims[volume["persistentVolumeClaim"]["claimName"]]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # shared by the location, runs, Ray
    assert location["podSecurityContext"]["runAsNonRoot"] is True


def test_every_pod_runs_as_configured_and_names_what_exists(location: dict[str, Any]) -> None:
    secrets = _secret_keys()
    claims = {c["metadata"]["name"] for c in _by_kind("PersistentVolumeClaim")}
    pods = list(_pods())
    assert {name for name, _ in pods} >= {"redis", "ray-head", "ray-cpu"}
    for name, pod in pods:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for container in pod["containers"]:
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                parse = _cpu if kind == "cpu" else _bytes
                assert parse(request) <= parse(limit), (name, kind)
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, mount)
            for source in container.get("envFrom", []):
                assert source["secretRef"]["name"] in secrets, name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], (name, ref)


def test_ray_cluster_runs_the_project_image_at_the_installed_ray_version(
    location: dict[str, Any], dockerfile: list[str]
) -> None:
    (cluster,) = _by_kind("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    (ray_arg,) = [i for i in dockerfile if i.startswith("ARG RAY_VERSION=")]
    assert spec["rayVersion"] == ray_arg.split("=", 1)[1] == "2.60.0"
    head = spec["headGroupSpec"]
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for start, template in [
        (head["rayStartParams"], head["template"]),
        *[(g["rayStartParams"], g["template"]) for g in groups],
    ]:
        # KubeRay's rayStartParams is a map of strings
        assert all(isinstance(v, str) for v in start.values())
        (container,) = template["spec"]["containers"]
        assert container["image"] == _image(location)
        assert _env(container)["PLAYBOOK_HOME"] == _env(location)["PLAYBOOK_HOME"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/dev/shm" in mounts  # the object store needs more than the default 64 MiB
        assert _env(location)["PLAYBOOK_HOME"] in mounts


def test_redis_service_reaches_the_deployment_the_connection_names() -> None:
    (deployment,) = _by_kind("Deployment")
    (service,) = _by_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == port["port"] == 6379
    # PLAYBOOK_REDIS (Feast's connection string) points at this Service
    secret = {s["metadata"]["name"]: s for s in _by_kind("Secret")}["playbook-redis"]
    address = secret["stringData"]["PLAYBOOK_REDIS"].split(",")[0]
    host, connection_port = address.rsplit(":", 1)
    assert host.split(".")[:2] == [service["metadata"]["name"], NAMESPACE]
    assert int(connection_port) == port["port"]
    assert "password=" in secret["stringData"]["PLAYBOOK_REDIS"]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    cap = _bytes(args[args.index("--maxmemory") + 1].replace("mb", "Mi"))
    assert cap < _bytes(container["resources"]["limits"]["memory"])


def test_dockerfile_installs_cpu_torch_first_and_runs_as_a_user(
    dockerfile: list[str], pyproject: dict[str, Any], location: dict[str, Any]
) -> None:
    assert dockerfile[0] == "FROM python:3.11-slim"
    runs = [i for i in dockerfile if i.startswith("RUN ")]
    (torch_pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("torch")]
    (torch,) = [i for i, run in enumerate(runs) if torch_pin in run]
    assert "/whl/cpu" in runs[torch]
    (project,) = [i for i, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run)]
    assert torch < project
    # the Dagster libraries of the pinned dagster line: dagster 1.N <-> libraries 0.(N+16)
    (dagster_pin,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("dagster==")]
    minor = int(re.fullmatch(r"dagster==1\.(\d+)\.\*", dagster_pin).group(1))
    for library in ("dagster-postgres", "dagster-k8s"):
        assert f'"{library}==0.{minor + 16}.*"' in runs[project]
    users = [i for i in dockerfile if i.startswith("USER ")]
    assert users and users[-1].split()[1] not in ("root", "0")
    assert dockerfile.index(users[-1]) > dockerfile.index(runs[project])
    (uid_arg,) = [i for i in dockerfile if i.startswith("ARG UID=")]
    assert users[-1] == "USER ${UID}"
    # the pods that run this image run as its user (and own the shared home through fsGroup)
    uid = int(uid_arg.split("=")[1])
    contexts = [location["podSecurityContext"]]
    contexts += [pod["securityContext"] for name, pod in _pods() if name.startswith("ray-")]
    assert len(contexts) == 3
    assert all(c["runAsUser"] == c["fsGroup"] == uid for c in contexts)
