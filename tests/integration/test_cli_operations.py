"""`argus admin backup|restore` and `argus doctor` through the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from argus.cli.main import app
from argus.cluster.probe import tcp_answers
from argus.runtime import doctor
from argus.runtime.server import RunState
from tests.conftest import ADMIN_TOKEN, HEAD_REVISION, make_settings
from tests.unit.test_doctor import probes

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ARGUS_DATA_DIR": str(tmp_path / "data"),
        "ARGUS_ADMIN_TOKEN": ADMIN_TOKEN,
        "ARGUS_CONFIG": "",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def users(env: dict[str, str]) -> list[str]:
    code, out = run(env, "admin", "user", "list", "--offline")
    assert code == 0, out
    return sorted(u["user_id"] for u in json.loads(out))


def test_backup_then_restore(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "admin", "user", "create", "alice", "--offline")
    backup = tmp_path / "argus-backup.db"
    code, out = run(env, "admin", "backup", str(backup))
    assert code == 0, out
    assert f"backed up the database to {backup}" in out and "2 users" in out
    code, out = run(env, "admin", "backup", str(backup))
    assert code == 1 and "exists; pass --force" in out
    code, out = run(env, "admin", "backup", str(backup), "--force")
    assert code == 0, out

    run(env, "admin", "user", "create", "bob", "--offline")
    assert users(env) == ["admin", "alice", "bob"]
    code, out = run(env, "admin", "restore", str(backup))
    assert code == 0, out
    assert (
        f"schema {HEAD_REVISION} -> {HEAD_REVISION}" in out
        and "kept the replaced database as" in out
    )
    assert "argus up" in out
    assert users(env) == ["admin", "alice"]


def test_backup_of_postgresql_points_to_pg_dump(env: dict[str, str], tmp_path: Path) -> None:
    pg = {**env, "ARGUS_DATABASE_URL": "postgresql://argus:s3cret@db.example/argus"}
    code, out = run(pg, "admin", "backup", str(tmp_path / "b.db"))
    assert code == 1
    assert "pg_dump" in out and "s3cret" not in out and "Traceback" not in out


def test_restore_refuses_while_argus_runs(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "admin", "user", "create", "alice", "--offline")
    backup = tmp_path / "b.db"
    run(env, "admin", "backup", str(backup))
    settings = make_settings(Path(env["ARGUS_DATA_DIR"]))
    standin = subprocess.Popen(["python3", "-c", "import time; time.sleep(60)", "argus-up"])
    try:
        RunState(standin.pid, started_ray=False, keep_ray=False).write(settings)
        code, out = run(env, "admin", "restore", str(backup))
    finally:
        standin.kill()
        standin.wait()
    assert code == 1
    assert f"argus is running (pid {standin.pid})" in out and "argus down" in out

    gone = subprocess.Popen(["true"])
    gone.wait()
    RunState(gone.pid, started_ray=False, keep_ray=False).write(settings)  # a stale pid file
    code, out = run(env, "admin", "restore", str(backup))
    assert code == 0, out


def test_restore_refuses_a_file_that_is_not_argus(env: dict[str, str], tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    code, out = run(env, "admin", "restore", str(notes))
    assert code == 1 and "is not a SQLite database" in out


def test_doctor_on_a_healthy_machine(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "default_probes", lambda: probes(find_head=lambda s: "h:6379"))
    settings = make_settings(Path(env["ARGUS_DATA_DIR"]))
    for sub in ("hf", "users"):
        (settings.storage_root / sub).mkdir(parents=True)
    code, out = run(env, "doctor")
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == 11
    assert all(line.startswith("ok    ") for line in lines), out
    assert "ok    ray           h:6379 reachable, Ray 2.60.0 (pinned 2.60.0)" in lines


def test_doctor_fails_fast_when_the_cluster_is_away(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fakes = probes(reachable=tcp_answers)
    monkeypatch.setattr(doctor, "default_probes", lambda: fakes)
    code, out = run({**env, "ARGUS_RAY_ADDRESS": f"127.0.0.1:{port}"}, "doctor")
    assert code == 1
    assert f"FAIL  ray           nothing answers at 127.0.0.1:{port}" in out
    assert "warn  gpus          not checked: Ray is not reachable" in out
    assert fakes.ray.connected == []  # type: ignore[attr-defined]


def test_doctor_with_a_bad_config(env: dict[str, str]) -> None:
    code, out = run({**env, "ARGUS_PORT": "http"}, "doctor")
    assert code == 1
    assert out.startswith(
        "FAIL  config        invalid configuration: server.port (from ARGUS_PORT)"
    )
