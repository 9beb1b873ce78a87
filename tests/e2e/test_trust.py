"""No user can become another, on the real stack (issue 11): commands are a permission, no
argus secret reaches Ray, Ray refuses a client without its token, quotas say their
figures. (Disabling a user, with a real model and task, is in test_serving.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from argus.auth.tokens import hash_token
from tests.e2e.conftest import TINY, Stack

pytestmark = pytest.mark.e2e


def secrets_of(stack: Stack) -> list[str]:
    return [stack.admin, str(stack.data), "ARGUS_ADMIN_TOKEN", "ARGUS_DATA_DIR", "argus.db"]


def environ_of(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode(errors="replace")


def test_a_command_task_is_a_permission_and_its_environment_holds_no_argus_secret(
    stack: Stack,
) -> None:
    carol = stack.new_user("carol")
    spy = "name: spy\nworkload: command\nentrypoint: env; echo done\n"
    r = stack.call(
        "POST",
        "/api/v2/tasks",
        carol,
        content=spy.encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 403
    assert "argus admin user update carol --allow-commands" in r.json()["error"]["message"]
    task_id = stack.post_task(spy)["task_id"]  # alice may run commands
    got = stack.wait_task(task_id, "SUCCEEDED", timeout=300)
    log = stack.call("GET", f"/api/v2/tasks/{task_id}/logs").text
    assert "done" in log and "PATH=" in log
    for secret in secrets_of(stack):
        assert secret not in log, secret
    assert got["task"]["state"] == "SUCCEEDED"
    # the head, whose environment every job and replica inherits, holds none of them either
    head_env = environ_of(stack.head_pid())
    assert "ARGUS_" not in head_env and stack.admin not in head_env


def test_a_replica_holds_no_argus_secret(stack: Stack, smol: tuple[str, str]) -> None:
    (pid,) = stack.settled_pids(smol[1], 1)
    env = environ_of(pid)
    assert "HF_HUB_OFFLINE=1" in env  # it is the replica's environment
    for secret in secrets_of(stack):
        assert secret not in env, secret


def test_the_agents_log_holds_no_key_hash(stack: Stack, smol: tuple[str, str]) -> None:
    """Ray Serve LLM logs a built app's options, the gate (every key's hash) among them."""
    log = (stack.data / "agent.log").read_text(errors="replace")
    assert "Deployment Options" in log  # Ray Serve LLM's own INFO lines are there ...
    for token in (stack.token, stack.admin):
        assert hash_token(token) not in log  # ... the gate's principals are not
    assert "principals" not in log


def test_ray_refuses_a_client_without_its_token(stack: Stack) -> None:
    jobs = f"{stack.dashboard_url}/api/jobs/"
    assert httpx.get(jobs, timeout=10).status_code in (401, 403)
    bad = httpx.get(jobs, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    assert bad.status_code in (401, 403)
    token = Path(stack.env.get("RAY_AUTH_TOKEN_PATH") or "").read_text().strip()
    assert (
        httpx.get(jobs, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    )
    # the GCS: a driver with a wrong token is refused
    address = f"127.0.0.1:{stack.env['ARGUS_RAY_PORT_BASE']}"
    probe = (
        "import ray, sys\n"
        "try:\n"
        f"    ray.init(address='{address}', log_to_driver=False)\n"
        "except Exception as e:\n"
        "    print('refused:', type(e).__name__, e); sys.exit(3)\n"
        "print('connected'); sys.exit(0)\n"
    )
    env = {k: v for k, v in stack.env.items() if not k.startswith("RAY_AUTH")}
    # A driver asks the GCS for the cluster id once a second, 20 times by default: three
    # tries show the refusal (Ray's retry count for that wait; nothing else changes).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token", RAY_NUM_REDIS_GET_RETRIES="3")
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    said = out.stdout + out.stderr[-2000:]
    assert out.returncode == 3 and "connected" not in out.stdout, said
    assert "Unauthenticated" in out.stderr and "InvalidAuthToken" in out.stderr, said  # the token's


def test_a_spec_over_the_quota_is_refused_with_the_figures(
    stack: Stack, smol: tuple[str, str]
) -> None:
    r = stack.call("PATCH", "/api/v2/users/alice", stack.admin, json={"max_gpus": 1})
    assert r.status_code == 200
    try:
        r = stack.call(
            "POST",
            "/api/v2/serve/models",
            content=f"model_id: more\nmodel_source: {TINY}\n".encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 409
        assert r.json()["error"]["message"] == (
            "alice holds 1 of 1 GPUs; this asks 1 (models 1, tasks 0)"
        )
        me = stack.call("GET", "/api/v2/me").json()
        assert me["usage"]["gpus"] == 1 and me["quota"]["max_gpus"] == 1
    finally:
        stack.call("PATCH", "/api/v2/users/alice", stack.admin, json={"max_gpus": None})
