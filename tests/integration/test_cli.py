"""The CLI: admin commands offline (on the database) and online (against a real server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from argus.cli.main import app
from argus.runtime.bootstrap import build_context
from argus.web import create_app
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.integration.conftest import FakeRayProbe

pytestmark = pytest.mark.integration
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ARGUS_DATA_DIR": str(tmp_path / "data"),
        "ARGUS_ADMIN_TOKEN": ADMIN_TOKEN,
        "ARGUS_CONFIG": "",
        "ARGUS_PORT": str(_free_port()),
    }


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[None]:
    settings = make_settings(Path(env["ARGUS_DATA_DIR"]), ARGUS_PORT=env["ARGUS_PORT"])
    ctx = build_context(settings, ray=FakeRayProbe())
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), host="127.0.0.1", port=settings.server.port, log_level="warning"
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield
    srv.should_exit = True
    thread.join(10)
    ctx.db.dispose()


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_user_and_token_lifecycle(
    request: pytest.FixtureRequest, env: dict[str, str], mode: str
) -> None:
    extra = ["--offline"] if mode == "offline" else []
    if mode == "online":
        request.getfixturevalue("server")
    code, out = run(env, "admin", "user", "create", "alice", *extra)
    assert code == 0, out
    assert json.loads(out)["user_id"] == "alice"
    code, out = run(env, "admin", "user", "create", "alice", *extra)
    assert code == 1 and "already exists" in out
    code, out = run(env, "admin", "token", "issue", "alice", *extra)
    assert code == 0, out
    issued = json.loads(out)
    assert issued["token"].startswith("argus_")
    code, out = run(env, "admin", "user", "list", *extra)
    users = {u["user_id"]: u for u in json.loads(out)}
    assert users["alice"]["active_tokens"] == 1
    code, out = run(env, "admin", "token", "revoke", issued["token_id"], *extra)
    assert code == 0 and json.loads(out)["revoked_at"]
    code, out = run(env, "admin", "user", "disable", "alice", *extra)
    assert code == 0 and json.loads(out)["disabled"] is True
    code, out = run(env, "admin", "user", "disable", "alice", "--enable", *extra)
    assert json.loads(out)["disabled"] is False
    code, out = run(env, "admin", "user", "create", "Bad", *extra)
    assert code == 1 and "lowercase letter first" in out


def test_online_without_a_server_says_how_to_fix(env: dict[str, str]) -> None:
    code, out = run(env, "admin", "user", "list")
    assert code == 1
    assert "cannot reach argus" in out and "--offline" in out


def test_bad_config_stops_with_the_key(env: dict[str, str]) -> None:
    code, out = run({**env, "ARGUS_PORT": "http"}, "admin", "user", "list", "--offline")
    assert code == 2
    assert "server.port (from ARGUS_PORT)" in out
    assert "Traceback" not in out


def test_help_is_there_for_a_newcomer() -> None:
    code, out = run({}, "--help")
    assert code == 0
    for word in ("up", "down", "models", "admin"):
        assert word in out
    code, out = run({}, "admin", "token", "--help")
    assert "issue" in out and "revoke" in out


def test_down_when_nothing_runs(env: dict[str, str]) -> None:
    code, out = run(env, "down")
    assert code == 0 and "not running" in out


def test_serve_commands_as_a_user(env: dict[str, str], server: None, tmp_path: Path) -> None:
    code, out = run(env, "admin", "user", "create", "alice")
    code, out = run(env, "admin", "token", "issue", "alice")
    user_env = {**env, "ARGUS_TOKEN": json.loads(out)["token"]}
    from tests.conftest import make_model_folder, spec_yaml

    storage = Path(env["ARGUS_DATA_DIR"]) / "storage"
    make_model_folder(storage / "users" / "alice" / "m")
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_yaml(source="$HOME/m"))
    code, out = run(user_env, "serve", "apply", "-f", str(spec))
    assert code == 0, out
    posted = json.loads(out)
    assert posted["state"] == "QUEUED" and posted["model_id"].startswith("alice-")
    code, out = run(user_env, "serve", "ls")
    assert code == 0 and posted["model_key"] in out and "QUEUED" in out and "0/1" in out
    assert "OpenAI base URL: http://127.0.0.1:8000/v1" in out
    code, out = run(user_env, "serve", "scale", posted["model_key"], "3")
    assert code == 0 and json.loads(out)["target_replicas"] == 3
    code, out = run(user_env, "serve", "autoscale", posted["model_key"], "--min", "0", "--max", "2")
    assert code == 0 and json.loads(out)["replicas"] == {"current": 0, "min": 0, "max": 2}
    code, out = run(user_env, "serve", "ls")
    assert code == 0 and "0(0-2)" in out
    code, out = run(user_env, "serve", "autoscale", posted["model_key"], "--min", "3", "--max", "2")
    assert code == 1 and "min_replicas (3) is more than max_replicas (2)" in out
    code, out = run(user_env, "serve", "share", posted["model_key"], "--with", "bob")
    assert code == 0, out
    code, out = run(user_env, "serve", "share", posted["model_key"], "--private", "--all-users")
    assert code == 2 and "exactly one of" in out
    code, out = run(user_env, "serve", "get", posted["model_key"])
    got = json.loads(out)
    assert [e["event_type"] for e in reversed(got["events"])] == [
        "CREATED",
        "SCALED",
        "SCALED",
        "ACCESS_CHANGED",
    ]
    assert got["model"]["access"] == {"users": ["bob"]}
    code, out = run(user_env, "serve", "delete", posted["model_key"])
    assert code == 0 and json.loads(out)["state"] == "DELETING"
    spec.write_text("model_id: x\nmodel_source: /etc\n")
    code, out = run(user_env, "serve", "apply", "-f", str(spec))
    assert code == 1 and "outside the folders you may use" in out
    code, out = run(user_env, "serve", "get", "nope")
    assert code == 1 and "no model with key" in out


def test_a_new_data_directory_is_private(env: dict[str, str]) -> None:
    code, out = run(env, "admin", "user", "list", "--offline")
    assert code == 0, out
    assert Path(env["ARGUS_DATA_DIR"]).stat().st_mode & 0o777 == 0o700


def test_key_commands_as_a_user(env: dict[str, str], server: None) -> None:
    run(env, "admin", "user", "create", "alice")
    code, out = run(env, "admin", "token", "issue", "alice")
    user_env = {**env, "ARGUS_TOKEN": json.loads(out)["token"]}
    code, out = run(user_env, "key", "create", "laptop", "--expires-at", "2030-01-01T00:00:00Z")
    assert code == 0, out
    made = json.loads(out)
    assert made["key"].startswith("argus_key_") and "only time" in made["note"]
    code, out = run(user_env, "key", "ls")
    assert code == 0 and made["key_id"] in out and "live" in out and "2030-01-01" in out
    assert made["key"] not in out
    code, out = run(user_env, "key", "create", "x", "--model", "carol-202611281200-big")
    assert code == 1 and "no model" in out
    code, out = run(user_env, "key", "revoke", made["key_id"])
    assert code == 0 and json.loads(out)["state"] == "revoked"
    code, out = run(env, "key", "ls")  # the admin's list: everyone's
    assert "alice" in out and "revoked" in out


def test_usage_command_sums_a_users_own_and_the_admin_everyones(
    env: dict[str, str], server: None
) -> None:
    from datetime import UTC, datetime

    from argus.store.db import Database
    from argus.store.usage import store_batch

    run(env, "admin", "user", "create", "alice")
    code, out = run(env, "admin", "token", "issue", "alice")
    user_env = {**env, "ARGUS_TOKEN": json.loads(out)["token"]}
    minute = int(datetime.now(UTC).timestamp()) - 3600
    row = {"minute": minute, "key": "key_a", "model": "alice-m", "status": 200, "latency_ms": 9}
    db = Database(make_settings(Path(env["ARGUS_DATA_DIR"])).database_url)
    with db.write() as s:
        rows = [
            {**row, "user": "alice", "requests": 2, "prompt_tokens": 30, "completion_tokens": 7},
            {**row, "user": "bob", "requests": 1, "prompt_tokens": 5, "completion_tokens": 1},
        ]
        store_batch(s, "b1", rows, datetime.now(UTC))
    db.dispose()
    code, out = run(user_env, "usage")
    assert code == 0, out
    assert [line.split() for line in out.splitlines()[2:]] == [
        ["alice-m", "2", "30", "7"],
        ["total", "2", "30", "7"],
    ]
    code, out = run(env, "usage", "--by", "user", "--json")
    assert code == 0 and json.loads(out)["totals"]["requests"] == 3
    code, out = run(env, "usage", "--by", "minute")
    assert code == 1 and "group_by" in out


def test_task_commands_as_a_user(env: dict[str, str], server: None, tmp_path: Path) -> None:
    run(env, "admin", "user", "create", "alice")
    code, out = run(env, "admin", "user", "update", "alice", "--allow-commands")
    assert code == 0 and json.loads(out)["allow_commands"] is True, out
    code, out = run(env, "admin", "token", "issue", "alice")
    user_env = {**env, "ARGUS_TOKEN": json.loads(out)["token"]}
    spec = tmp_path / "task.yaml"
    spec.write_text("name: hello\nworkload: command\nentrypoint: echo hi\n")
    code, out = run(user_env, "task", "submit", "-f", str(spec))
    assert code == 0, out
    task = json.loads(out)
    assert task["state"] == "QUEUED" and task["name"] == "hello"
    code, out = run(user_env, "task", "ls")
    assert code == 0 and task["task_id"] in out and "QUEUED" in out and "command" in out
    code, out = run(user_env, "task", "ls", "--state", "running")
    assert code == 0 and task["task_id"] not in out
    log = Path(env["ARGUS_DATA_DIR"]) / "storage/users/alice/tasks" / task["task_id"] / "task.log"
    log.parent.mkdir(parents=True)
    log.write_text("one\ntwo\nthree\n")
    code, out = run(user_env, "task", "logs", task["task_id"], "--tail", "2")
    assert code == 0 and out == "two\nthree\n"
    code, out = run(user_env, "task", "cancel", task["task_id"])
    assert code == 0 and json.loads(out)["state"] == "CANCELED"
    # Followed after the end: the whole tail, then the outcome, and a non-zero exit.
    code, out = run(user_env, "task", "logs", task["task_id"], "-f")
    assert code == 1 and "three" in out and f"task {task['task_id']} CANCELED" in out
    code, out = run(user_env, "task", "get", task["task_id"])
    assert [e["event_type"] for e in reversed(json.loads(out)["events"])] == ["CREATED", "CANCELED"]
    code, out = run(user_env, "task", "cancel", task["task_id"])
    assert code == 1 and "already CANCELED" in out
    spec.write_text("name: x\nworkload: sft\n")
    code, out = run(user_env, "task", "submit", "-f", str(spec))
    assert code == 1 and "model_source: is required" in out
