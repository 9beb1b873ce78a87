"""No user can become another: the command permission, quotas, disabling a user, file modes.

The app in-process on a real SQLite store, the control loop on the fake cluster.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from argus.cluster.serve_client import NodeResources
from argus.runtime.bootstrap import build_context, build_loop
from argus.runtime.loop import ControlLoop
from tests.conftest import make_settings, spec_yaml
from tests.fake_cluster import FakeJobClient, FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration

COMMAND = "name: t\nworkload: command\nentrypoint: echo hi\n"


def post_task(api: Api, token: str, body: str) -> Any:
    return api.client.post(
        "/api/v2/tasks",
        content=body.encode(),
        headers={**api.headers(token), "Content-Type": "application/yaml"},
    )


def patch_user(api: Api, user: str, **body: object) -> dict[str, Any]:
    r = api.client.patch(f"/api/v2/users/{user}", json=body, headers=api.headers())
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def me(api: Api, token: str) -> dict[str, Any]:
    body: dict[str, Any] = api.client.get("/api/v2/me", headers=api.headers(token)).json()
    return body


# -- running your own code is a permission -------------------------------------------------
def test_a_command_task_needs_the_admins_permission(api: Api) -> None:
    alice = api.new_user("alice")
    r = post_task(api, alice, COMMAND)
    assert r.status_code == 403
    message = r.json()["error"]["message"]
    assert "argus admin user update alice --allow-commands" in message
    assert "workload: sft" in message and "needs none" in message
    assert api.client.get("/api/v2/tasks", headers=api.headers(alice)).json()["total"] == 0
    assert patch_user(api, "alice", allow_commands=True)["allow_commands"] is True
    assert me(api, alice)["allow_commands"] is True
    assert post_task(api, alice, COMMAND).status_code == 202
    patch_user(api, "alice", allow_commands=False)
    assert post_task(api, alice, COMMAND.replace("name: t", "name: u")).status_code == 403


def test_a_queued_command_task_fails_if_the_permission_is_taken_back(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    task_id = post_task(api, alice, COMMAND).json()["task_id"]
    patch_user(api, "alice", allow_commands=False)
    loop = build_loop(api.settings, api.ctx.db, FakeServeClient(), FakeJobClient())
    loop.tick()
    got = api.client.get(f"/api/v2/tasks/{task_id}", headers=api.headers(alice)).json()["task"]
    assert got["state"] == "FAILED" and "--allow-commands" in got["error_summary"]


@pytest.mark.parametrize("name", ["LD_PRELOAD", "PATH", "PYTHONPATH", "PYTHONSTARTUP", "HOME"])
def test_an_sft_task_takes_its_environment_from_an_allowlist(api: Api, name: str) -> None:
    alice = api.new_user("alice")
    body = (
        "name: s\nworkload: sft\nmodel_source: $HOME/common/hf/tiny\n"
        "train_file: $HOME/common/datasets/demo-chat/train.jsonl\n"
        f"env: {{{name}: /tmp/x, OMP_NUM_THREADS: '2'}}\n"
    )
    r = post_task(api, alice, body)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == [f"env.{name}"]
    assert "an sft task may set only" in r.text
    ok = post_task(api, alice, body.replace(f"{name}: /tmp/x, ", ""))
    assert ok.status_code == 202, ok.text


def test_the_user_pages_grant_commands_and_set_limits(api: Api) -> None:
    api.new_user("alice")
    api.client.cookies.set("argus_token", api.headers()["Authorization"][7:], path="/ui")
    page = api.client.get("/ui/admin/users")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    assert "may not run commands" in page.text
    r = api.client.post(
        "/ui/admin/users/alice/limits",
        data={
            "csrf": csrf,
            "max_gpus": "3",
            "max_models": "",
            "max_replicas": "2",
            "allow_commands": "true",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    alice = next(
        u
        for u in api.client.get("/api/v2/users", headers=api.headers()).json()["items"]
        if u["user_id"] == "alice"
    )
    assert alice["allow_commands"] is True
    assert alice["quota"]["max_gpus"] == 3 and alice["quota"]["max_replicas"] == 2
    assert alice["quota"]["max_models"] == 8 and alice["quota"]["set_by_admin"] == [
        "max_gpus",
        "max_replicas",
    ]
    bad = api.client.post(
        "/ui/admin/users/alice/limits",
        data={"csrf": csrf, "max_gpus": "-4"},
        follow_redirects=False,
    )
    assert bad.status_code == 303 and "whole%20number" in bad.cookies["argus_flash"]


# -- quotas -----------------------------------------------------------------------------------
def test_a_spec_over_the_gpu_quota_is_409_with_the_figures(api: Api) -> None:
    alice = api.new_user("alice")
    patch_user(api, "alice", max_gpus=3)
    assert api.post_spec(alice, spec_yaml("a", num_replicas=2)).status_code == 202
    r = api.post_spec(alice, spec_yaml("b", num_replicas=2))
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        "alice holds 2 of 3 GPUs; this asks 2 (models 2, tasks 0)"
    )
    assert api.post_spec(alice, spec_yaml("b", num_replicas=1)).status_code == 202
    assert me(api, alice)["usage"] == {"models": 2, "gpus": 3, "model_gpus": 3, "task_gpus": 0}
    # an update replaces what the model held; a scale over the quota is refused the same way
    key = api.client.get("/api/v2/serve/models", headers=api.headers(alice)).json()["items"]
    a_key = next(m["model_key"] for m in key if m["model_id_suffix"] == "a")
    r = api.client.patch(
        f"/api/v2/serve/models/{a_key}", json={"num_replicas": 3}, headers=api.headers(alice)
    )
    assert r.status_code == 409 and "alice holds 1 of 3 GPUs; this asks 3" in r.text
    assert api.post_spec(alice, spec_yaml("a", num_replicas=1)).status_code == 202  # gives back


def test_models_and_replicas_per_model_have_quotas_too(api: Api) -> None:
    alice = api.new_user("alice")
    patch_user(api, "alice", max_models=1, max_replicas=2)
    assert api.post_spec(alice, spec_yaml("a")).status_code == 202
    r = api.post_spec(alice, spec_yaml("b"))
    assert r.status_code == 409
    assert "alice has 1 of 1 models; delete one before adding another" in r.text
    r = api.post_spec(alice, spec_yaml("a", num_replicas=3))
    assert r.status_code == 409
    assert "alice may run at most 2 replicas of one model; this asks 3" in r.text
    # the admin sets a limit back to the default with null
    assert patch_user(api, "alice", max_models=None)["quota"]["max_models"] == 8
    assert api.post_spec(alice, spec_yaml("b")).status_code == 202


def test_the_admin_has_no_quota(api: Api) -> None:
    for i in range(10):
        assert (
            api.post_spec(api.headers()["Authorization"][7:], spec_yaml(f"m{i}")).status_code == 202
        )


def test_two_hundred_models_of_sixteen_replicas_are_no_longer_possible(api: Api) -> None:
    alice = api.new_user("alice")
    accepted = sum(
        api.post_spec(alice, spec_yaml(f"m{i}", num_replicas=16)).status_code == 202
        for i in range(20)
    )
    assert accepted == 0  # 16 replicas pass the default of 4 per model
    accepted = sum(
        api.post_spec(alice, spec_yaml(f"m{i}", num_replicas=4)).status_code == 202
        for i in range(20)
    )
    assert accepted == 2  # 8 GPUs by default, 4 a model


@pytest.mark.parametrize(
    "body",
    [
        {"max_gpus": -1},
        {"max_models": 10**9},
        {"max_replicas": "3"},
        {"max_gpus": 1.5},
        {"quota": 3},
    ],
)
def test_quota_values_are_checked(api: Api, body: dict[str, object]) -> None:
    api.new_user("alice")
    r = api.client.patch("/api/v2/users/alice", json=body, headers=api.headers())
    assert r.status_code == 422, r.text


def test_only_the_admin_changes_users(api: Api) -> None:
    alice = api.new_user("alice")
    api.new_user("bob")
    for body in ({"allow_commands": True}, {"max_gpus": 100}, {"disabled": True}):
        for user in ("alice", "bob", "admin"):
            r = api.client.patch(f"/api/v2/users/{user}", json=body, headers=api.headers(alice))
            assert r.status_code == 403
    assert me(api, alice)["allow_commands"] is False


# -- disabling a user stops their use of the cluster ---------------------------------------
@pytest.fixture
def loop(api: Api) -> tuple[ControlLoop, FakeServeClient, FakeJobClient]:
    serve = FakeServeClient(nodes=[NodeResources("n1", {"CPU": 16.0}, {"CPU": 16.0})])
    jobs = FakeJobClient(serve=serve)
    r = build_loop(api.settings, api.ctx.db, serve, jobs)
    r.clock = lambda: datetime.now(UTC)
    api.ctx.status = r.status
    return r, serve, jobs


def test_disabling_a_user_cancels_their_tasks_and_suspends_their_models(
    api: Api, loop: tuple[ControlLoop, FakeServeClient, FakeJobClient]
) -> None:
    rec, serve, jobs = loop
    alice = api.new_user("alice", commands=True)
    bob = api.new_user("bob")
    key = api.post_spec(alice, spec_yaml("smol")).json()["model_key"]
    bob_key = api.post_spec(bob, spec_yaml("smol")).json()["model_key"]
    running = post_task(api, alice, COMMAND).json()["task_id"]
    rec.tick()
    serve.set_ready("alice-202611281200-smol")
    serve.set_ready("bob-202611281200-smol")
    jobs.start(f"argus-{running}")
    rec.tick()
    queued = post_task(api, alice, COMMAND.replace("name: t", "name: q")).json()["task_id"]

    disabled = patch_user(api, "alice", disabled=True)
    assert disabled["disabled"] is True
    assert api.client.get("/api/v2/me", headers=api.headers(alice)).status_code == 401
    admin = api.headers()
    assert (
        api.client.get(f"/api/v2/tasks/{queued}", headers=admin).json()["task"]["state"]
        == "CANCELED"
    )
    model = api.client.get(f"/api/v2/serve/models/{key}", headers=admin).json()
    assert model["model"]["state"] == "SUSPENDED"
    assert model["events"][0]["payload"]["reason"] == "its owner was disabled"
    rec.tick()
    rec.tick()
    assert not serve.is_deployed("alice-202611281200-smol")  # out of the app ...
    assert serve.is_deployed("bob-202611281200-smol")  # ... and bob's stays
    assert jobs.stop_calls == [f"argus-{running}"]
    got = api.client.get(f"/api/v2/tasks/{running}", headers=admin).json()["task"]
    assert got["state"] == "CANCELED"
    assert (
        api.client.get(f"/api/v2/serve/models/{bob_key}", headers=admin).json()["model"]["state"]
        == "RUNNING"
    )
    # suspended: kept, and neither its (disabled) owner nor anyone scales it
    r = api.client.patch(f"/api/v2/serve/models/{key}", json={"num_replicas": 2}, headers=admin)
    assert r.status_code == 409 and "suspended" in r.text

    patch_user(api, "alice", disabled=False)
    assert api.client.get("/api/v2/me", headers=api.headers(alice)).status_code == 200
    rec.tick()
    assert serve.is_deployed("alice-202611281200-smol")
    serve.set_ready("alice-202611281200-smol")
    rec.tick()
    events = [
        e["event_type"]
        for e in reversed(
            api.client.get(f"/api/v2/serve/models/{key}", headers=admin).json()["events"]
        )
    ]
    assert events[-5:] == ["READY", "SUSPENDED", "RESUMED", "APPLIED", "READY"]


def test_the_admin_can_delete_a_suspended_model(
    api: Api, loop: tuple[ControlLoop, FakeServeClient, FakeJobClient]
) -> None:
    rec, _, _ = loop
    alice = api.new_user("alice")
    key = api.post_spec(alice, spec_yaml("smol")).json()["model_key"]
    patch_user(api, "alice", disabled=True)
    r = api.client.delete(f"/api/v2/serve/models/{key}", headers=api.headers())
    assert r.status_code == 202 and r.json()["state"] == "DELETING"
    rec.tick()
    rec.tick()
    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers()).json()
    assert got["model"]["state"] == "DELETED"


# -- file modes ------------------------------------------------------------------------------
def test_the_data_dir_and_database_are_private_at_every_start(
    api_factory: Callable[..., Api], tmp_path: Any
) -> None:
    api = api_factory()
    data = api.settings.data_path
    db_file = data / "argus.db"
    os.chmod(data, 0o755)
    os.chmod(db_file, 0o644)
    settings = make_settings(data)
    ctx = build_context(settings, ray=api.ray)
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(db_file).st_mode) == 0o600
    finally:
        ctx.db.dispose()
    token_file = data / "admin-token"
    token_file.write_text("argus_admin_" + "x" * 43 + "\n")
    os.chmod(token_file, 0o644)
    from argus.config import load_settings
    from argus.runtime.bootstrap import ensure_admin_token

    ensure_admin_token(load_settings(environ={"ARGUS_DATA_DIR": str(data)}))
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600


def test_user_homes_are_private_where_the_storage_allows(api_factory: Callable[..., Api]) -> None:
    api = api_factory()
    home = api.storage_root / "users" / "alice"
    home.mkdir(parents=True)
    os.chmod(home, 0o755)
    build_context(make_settings(api.settings.data_path), ray=api.ray).db.dispose()
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
