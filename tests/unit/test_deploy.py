"""The deployment artifacts (deploy/) keep the invariants docs/deploy.md promises.

The compose file is read the way `docker compose` reads it: `${VAR:-default}` and
`${VAR:?message}` interpolated, YAML merge keys resolved. Where the `docker compose`
client works, it must accept the file too; images are not built here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yaml"
DOCKERFILES = (DEPLOY / "ray-node" / "Dockerfile", DEPLOY / "argus" / "Dockerfile")
RAY_NODES = ("ray_head", "ray_gpu_worker")
OURS = (*RAY_NODES, "argus")  # built from this repository; Redis is upstream's image
NEVER_PUBLISHED = {6379: "Ray GCS", 8265: "Ray dashboard and Jobs API", 10001: "Ray Client"}
TOKEN = "argus_admin_test-token-for-compose-interpolation"
SECRETS = {
    "ARGUS_ADMIN_TOKEN": TOKEN,
    "RAY_AUTH_TOKEN": "ray-token-for-compose-interpolation",
    "ARGUS_AGENT_TOKEN": "agent-token-for-compose-interpolation",
    "REDIS_PASSWORD": "redis-password-for-compose-interpolation",
}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")
_DOLLARS = re.compile(r"\$\$|" + _VAR.pattern)


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}`; `$$` is one `$`."""

    def value(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        name, op, arg = m["name"], m["op"], m["arg"]
        given = env.get(name, "")
        if given:
            return given
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _DOLLARS.sub(value, text)


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = SECRETS if env is None else env
    data = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def dev_yaml() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "configs" / "dev.yaml").read_text())
    assert isinstance(data, dict)
    return data


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    svc = compose["services"][name]
    assert isinstance(svc, dict), name
    return svc


def published(svc: Mapping[str, Any]) -> dict[int, str]:
    """Container port -> the host address it is published on ("" for every address)."""
    out: dict[int, str] = {}
    for port in svc.get("ports", []):
        if isinstance(port, dict):
            out[int(port["target"])] = str(port.get("host_ip", ""))
            continue
        parts = str(port).split("/")[0].split(":")
        out[int(parts[-1])] = parts[0] if len(parts) == 3 else ""
    return out


def mounts(svc: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> what is mounted there (host path or volume name)."""
    out: dict[str, str] = {}
    for volume in svc.get("volumes", []):
        if isinstance(volume, dict):
            out[str(volume["target"])] = str(volume.get("source", ""))
            continue
        source, target = str(volume).split(":")[:2]
        out[target] = source
    return out


def command(svc: Mapping[str, Any]) -> str:
    cmd = svc.get("command", "")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_ray_ports_that_run_code_are_never_published(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc.get("network_mode") != "host", f"{name} would put every Ray port on the host"
        for port, what in NEVER_PUBLISHED.items():
            assert port not in published(svc), f"{name} publishes {port} ({what})"


def test_every_node_publishes_its_own_serve_proxy(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    """EveryNode: the worker's proxy answers while the head is away (GCS fault tolerance)."""
    serve = dev_yaml["serving"]["serve"]
    assert serve["proxy_location"] == "EveryNode"
    assert serve["http_port"] == 8000
    script = (DEPLOY / "ray-node" / "head.sh").read_text()
    assert '--proxy-location "${ARGUS_PROXY_LOCATION:-EveryNode}"' in script
    head, worker = service(compose, "ray_head"), service(compose, "ray_gpu_worker")
    assert published(head) == {8000: "127.0.0.1"}  # loopback unless ARGUS_SERVE_BIND says
    assert published(worker) == {8000: "127.0.0.1"}
    host_ports = {str(p["published"]) for svc in (head, worker) for p in svc["ports"]}
    assert host_ports == {"8000", "8001"}
    assert "--dashboard-port=8265" in head["environment"]["RAY_HEAD_ARGS"]
    for name in set(compose["services"]) - set(RAY_NODES):
        assert 8000 not in published(service(compose, name)), name


def test_serve_bind_address_comes_from_the_environment() -> None:
    compose = load_compose({**SECRETS, "ARGUS_SERVE_BIND": "10.1.2.3"})
    for name in RAY_NODES:
        assert published(service(compose, name)) == {8000: "10.1.2.3"}, name


def test_the_head_keeps_its_gcs_state_in_redis_behind_a_password(
    compose: dict[str, Any],
) -> None:
    head, redis = service(compose, "ray_head"), service(compose, "redis")
    assert head["environment"]["RAY_REDIS_ADDRESS"] == "redis:6379"
    assert head["environment"]["RAY_external_storage_namespace"]
    assert head["depends_on"]["redis"]["condition"] == "service_healthy"
    assert head["environment"]["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    assert redis["environment"]["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    assert '--requirepass "$REDIS_PASSWORD"' in command(redis)  # compose's $$ is one $
    assert "--appendonly yes" in command(redis) and mounts(redis)["/data"] in compose["volumes"]
    assert published(redis) == {}
    script = (DEPLOY / "ray-node" / "head.sh").read_text()
    assert '"--redis-password=${REDIS_PASSWORD}"' in script and "unset REDIS_PASSWORD" in script
    # Ray's nodes wait out a head restart instead of leaving after Ray's default 60 s.
    for name in RAY_NODES:
        wait = service(compose, name)["environment"]["RAY_gcs_rpc_server_reconnect_timeout_s"]
        assert int(wait) >= 120, name
    tag = redis["image"].rpartition(":")[2]
    assert tag and tag != "latest" and ":" in redis["image"]


def test_argus_publishes_its_api_on_the_configured_port(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    assert dev_yaml["server"]["port"] == 8080
    assert 8080 in published(service(compose, "argus"))


def test_every_node_and_argus_mount_the_storage_root(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    assert dev_yaml["storage"]["root"] == "/private"
    sources = {name: mounts(service(compose, name)).get("/private") for name in OURS}
    assert None not in sources.values(), sources
    assert len(set(sources.values())) == 1, f"one storage root for every node: {sources}"


def test_argus_mounts_dev_yaml_and_keeps_its_database_in_a_volume(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    argus = service(compose, "argus")
    config = mounts(argus)["/etc/argus/config.yaml"]
    assert (COMPOSE.parent / config).resolve() == REPO / "configs" / "dev.yaml"
    assert argus["environment"]["ARGUS_CONFIG"] == "/etc/argus/config.yaml"
    assert mounts(argus)[dev_yaml["data_dir"]] in compose["volumes"]


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_every_secret_comes_from_the_environment(name: str) -> None:
    with pytest.raises(MissingVariable, match=name):
        load_compose({k: v for k, v in SECRETS.items() if k != name})


def test_argus_secrets_live_in_argus_alone(compose: dict[str, Any]) -> None:
    """No Ray node, whose tasks and replicas inherit its environment, holds the admin token."""
    assert service(compose, "argus")["environment"]["ARGUS_ADMIN_TOKEN"] == TOKEN
    for name in RAY_NODES:
        env = service(compose, name).get("environment", {})
        assert not any(k.startswith("ARGUS_") and k != "ARGUS_AGENT_TOKEN" for k in env), name
        assert TOKEN not in json.dumps(service(compose, name)), name
        assert "/var/lib/argus" not in mounts(service(compose, name)), name


def test_argus_is_no_ray_node_and_calls_the_agent_beside_the_head(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    argus = service(compose, "argus")
    assert "command" not in argus and "entrypoint" not in argus  # `argus up`, nothing else
    dockerfile = (DEPLOY / "argus" / "Dockerfile").read_text()
    assert "ray start" not in dockerfile and "ENTRYPOINT" not in dockerfile
    assert dev_yaml["ray"]["agent_url"] == "tcp:ray_head:8765"
    assert dev_yaml["ray"]["address"] == "ray_head:6379"
    head = service(compose, "ray_head")
    assert command(head) == "/usr/local/bin/argus-ray-head"
    script = (DEPLOY / "ray-node" / "head.sh").read_text()
    assert "ray start --head" in script and "argus.cluster.agent" in script
    assert "tcp:0.0.0.0:${ARGUS_AGENT_PORT:-8765}" in script
    assert "8765" in [str(p) for p in head["expose"]] and 8765 not in published(head)
    assert head["environment"]["ARGUS_AGENT_TOKEN"] == argus["environment"]["ARGUS_AGENT_TOKEN"]
    for name in RAY_NODES[1:]:
        assert "--address=ray_head:6379" in command(service(compose, name)), name


def test_rays_token_auth_is_on_everywhere(compose: dict[str, Any]) -> None:
    for name in OURS:
        env = service(compose, name)["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == SECRETS["RAY_AUTH_TOKEN"], name


def test_jobs_api_url_is_the_heads_dashboard(dev_yaml: dict[str, Any]) -> None:
    assert dev_yaml["ray"]["dashboard_url"] == "http://ray_head:8265"


def test_gpu_workers_get_gpus_labelled_like_argus_expects(
    compose: dict[str, Any], dev_yaml: dict[str, Any]
) -> None:
    accelerator = dev_yaml["serving"]["llm"]["accelerator_type"]
    assert service(compose, "argus")["environment"]["ARGUS_ACCELERATOR_TYPE"] == accelerator
    worker = service(compose, "ray_gpu_worker")
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    found = re.search(r"--resources='([^']*)'", command(worker))
    assert found, "the worker names its accelerator type"
    assert json.loads(found[1]) == {f"accelerator_type:{accelerator}": 1}
    assert "--num-gpus=0" in service(compose, "ray_head")["environment"]["RAY_HEAD_ARGS"]


def test_argus_healthcheck_calls_the_real_health_route(compose: dict[str, Any]) -> None:
    from argus.api.routes.health import router

    check = " ".join(service(compose, "argus")["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8080(/\w+)", check)
    assert path and path[1] in {getattr(r, "path", None) for r in router.routes}


def test_every_service_restarts_and_ray_nodes_have_room_for_the_object_store(
    compose: dict[str, Any],
) -> None:
    for name, svc in compose["services"].items():
        assert svc["restart"] in ("always", "unless-stopped"), name
    for name in RAY_NODES:
        assert str(service(compose, name)["shm_size"]).endswith(("g", "gb")), name


def test_images_are_built_with_the_pinned_ray_and_tagged_with_both_versions(
    compose: dict[str, Any],
) -> None:
    argus_version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for name in OURS:
        svc = service(compose, name)
        assert str(svc["build"]["args"]["RAY_VERSION"]) == ray.__version__, name
        tag = svc["image"].rpartition(":")[2]
        assert tag == f"{argus_version}-ray{ray.__version__}", name
    node_images = {service(compose, n)["image"] for n in RAY_NODES}
    assert len(node_images) == 1, "every Ray node runs the same image"


def test_pyproject_pins_the_same_ray() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"ray[serve]=={ray.__version__}" in pyproject["dependencies"]
    assert pyproject["optional-dependencies"]["gpu"] == [f"ray[llm,serve]=={ray.__version__}"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_pin_ray_serve_llm(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    default = re.search(r"^ARG RAY_VERSION=(\S+)$", text, re.M)
    assert default and default[1] == ray.__version__
    pins = re.findall(r"ray\[([a-z,]+)\]==([^\"'\s]+)", text)
    assert ("serve,llm", "${RAY_VERSION}") in pins
    for _extras, version in pins:
        assert version in ("${RAY_VERSION}", ray.__version__), version


def test_argus_image_builds_on_the_ray_node_image(compose: dict[str, Any]) -> None:
    dockerfile = (DEPLOY / "argus" / "Dockerfile").read_text()
    assert re.search(r"^FROM ray-node$", dockerfile, re.M)
    contexts = service(compose, "argus")["build"]["additional_contexts"]
    assert contexts == {"ray-node": "service:ray_head"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerignore_lets_in_what_the_dockerfiles_copy(dockerfile: Path) -> None:
    # .dockerignore ignores everything but a list, so .venv never enters a build context.
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    allowed = {line[1:] for line in lines if line.startswith("!")}
    for copy in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", dockerfile.read_text(), re.M):
        *sources, _dest = copy.split()
        for source in sources:
            assert source in allowed, f"{source} is not in .dockerignore's list"
            assert (REPO / source).exists(), source


def test_deploy_doc_lists_every_compose_variable() -> None:
    doc = (REPO / "docs" / "deploy.md").read_text()
    table = set(re.findall(r"^\s*\| `([A-Z_]+)` \|", doc, re.M))
    used = {m["name"] for m in _VAR.finditer(COMPOSE.read_text())}
    assert used == table


def test_the_head_script_is_valid_bash() -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = DEPLOY / "ray-node" / "head.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK)


def _compose_client() -> str | None:
    """Why `docker compose` cannot be used here, or None when it works."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`docker compose version` did not run: {e}"
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines()
        return f"the docker client has no compose plugin ({said[0] if said else 'no output'})"
    return None


def _compose_config(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(env),
        cwd=REPO,
    )


def test_docker_compose_accepts_the_file() -> None:
    reason = _compose_client()
    if reason:
        pytest.skip(f"`docker compose config` not checked: {reason}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGUS_", "RAY_"))}
    ok = _compose_config({**env, **SECRETS})
    assert ok.returncode == 0, ok.stderr
    refused = _compose_config(env)
    assert refused.returncode != 0
    assert "ARGUS_ADMIN_TOKEN" in refused.stderr
