"""The local head's pure parts: its command, its environment, its process tree."""

from __future__ import annotations

import getpass
import tempfile
from pathlib import Path

import pytest

from argus.config import HEAD_WORKER_PORTS
from argus.runtime.head import (
    descendants,
    head_command,
    kernel_cache_env,
    orphan_engines,
    ray_env,
    scrubbed_env,
    temp_env,
)
from tests.conftest import make_settings

pytestmark = pytest.mark.unit


def _proc(root: Path, pid: int, comm: str, state: str, ppid: int, environ: str = "") -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1 4194304\n")
    (root / str(pid) / "environ").write_bytes(environ.replace("\n", "\0").encode())


def test_a_tree_is_every_process_below_its_root(tmp_path: Path) -> None:
    _proc(tmp_path, 10, "ray", "S", 1)
    _proc(tmp_path, 11, "gcs_server", "S", 10)
    _proc(tmp_path, 12, "raylet", "S", 10)
    _proc(tmp_path, 13, "ray::Serve", "S", 12)
    _proc(tmp_path, 14, "VLLM::EngineCor", "S", 13)
    _proc(tmp_path, 20, "ray", "S", 1)  # another cluster's
    _proc(tmp_path, 21, "raylet", "S", 20)
    assert sorted(descendants(10, tmp_path)) == [10, 11, 12, 13, 14]


def test_orphaned_engines_are_found_by_their_raylet(tmp_path: Path) -> None:
    _proc(tmp_path, 100, "VLLM::EngineCor", "S", 1, "RAY_RAYLET_PID=12\nX=1")  # ours, orphaned
    _proc(tmp_path, 101, "VLLM::Worker", "R", 1, "RAY_RAYLET_PID=12")
    _proc(tmp_path, 102, "VLLM::Worker", "S", 100, "RAY_RAYLET_PID=12")  # a live parent
    _proc(tmp_path, 103, "VLLM::EngineCor", "Z", 1, "RAY_RAYLET_PID=12")  # zombie
    _proc(tmp_path, 104, "VLLM::EngineCor", "S", 1, "RAY_RAYLET_PID=99")  # another cluster's
    _proc(tmp_path, 105, "python3", "S", 1, "RAY_RAYLET_PID=12")  # not an engine
    _proc(tmp_path, 106, "odd) (name", "S", 1, "RAY_RAYLET_PID=12")
    (tmp_path / "self").mkdir()
    assert sorted(orphan_engines({12}, tmp_path)) == [100, 101]


def test_the_heads_environment_holds_no_argus_variable() -> None:
    env = scrubbed_env(
        {
            "PATH": "/bin",
            "ARGUS_ADMIN_TOKEN": "secret",
            "ARGUS_DATA_DIR": "/data",
            "ARGUS_DATABASE_URL": "postgresql://u:pw@h/db",
            "HOME": "/root",
        },
        {"RAY_AUTH_MODE": "token"},
    )
    assert env == {"PATH": "/bin", "HOME": "/root", "RAY_AUTH_MODE": "token"}


def test_ray_auth_is_on_with_argus_own_token_unless_the_operator_gives_one(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_path.mkdir(parents=True)
    env = ray_env(settings, environ={})
    assert env["RAY_AUTH_MODE"] == "token"
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert token == settings.ray_token_file and token.stat().st_mode & 0o777 == 0o600
    assert len(token.read_text()) == 64
    assert ray_env(settings, environ={}) == env  # the same token every start
    given = {"RAY_AUTH_TOKEN_PATH": "/etc/ray/token"}
    assert ray_env(settings, environ=given) == {"RAY_AUTH_MODE": "token"}
    external = make_settings(tmp_path / "ext", ARGUS_RAY_ADDRESS="10.0.0.1:6379")
    assert ray_env(external, environ={}) == {}  # an external cluster's auth is its operator's


def test_with_a_port_base_every_head_port_comes_from_one_block(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data", ARGUS_RAY_PORT_BASE="23000", ARGUS_RAY_TEMP_DIR="/tmp/t"
    )
    cmd = head_command(settings)
    assert "--block" in cmd and "--head" in cmd and "--node-ip-address=127.0.0.1" in cmd
    ports = {
        flag: int(arg.split("=")[1])
        for arg in cmd
        if "port" in (flag := arg.split("=")[0]) and "=" in arg
    }
    assert ports["--port"] == 23000 and ports["--dashboard-port"] == 23001
    assert ports["--max-worker-port"] == 23000 + 16 + HEAD_WORKER_PORTS - 1
    assert all(23000 <= p < 23000 + 16 + HEAD_WORKER_PORTS for p in ports.values())
    assert "--temp-dir=/tmp/t" in cmd
    default = head_command(make_settings(tmp_path / "d2"))
    assert "--port=6379" in default and "--dashboard-port=8265" in default


def test_a_head_with_its_own_temp_dir_keeps_its_processes_temp_files_there(
    tmp_path: Path,
) -> None:
    own = make_settings(tmp_path / "data", ARGUS_RAY_TEMP_DIR=str(tmp_path / "ray"))
    assert temp_env(own) == {"TMPDIR": str(tmp_path / "ray" / "tmp"), **kernel_cache_env()}
    assert (tmp_path / "ray" / "tmp").is_dir()
    assert temp_env(make_settings(tmp_path / "data")) == {}  # Ray's /tmp/ray: /tmp as ever


def test_compiled_kernels_stay_in_the_machines_cache_whatever_the_heads_temp_dir() -> None:
    shared = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    assert kernel_cache_env({}) == {"TORCHINDUCTOR_CACHE_DIR": str(shared)}
    assert kernel_cache_env({"TORCHINDUCTOR_CACHE_DIR": "/srv/kernels"}) == {}  # the user's


def test_a_kernel_cache_that_is_not_the_users_own_is_not_used(tmp_path: Path) -> None:
    """The engines load the kernels they find there: a link another user planted, or a
    folder others may write to, is refused (the head's own temp dir keeps them instead)."""
    name = f"torchinductor_{getpass.getuser()}"
    (tmp_path / "fresh").mkdir()
    made = kernel_cache_env({}, tmp=tmp_path / "fresh")  # made now: the user's, 0700
    assert made == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "fresh" / name)}
    assert (tmp_path / "fresh" / name).stat().st_mode & 0o777 == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / name).symlink_to(tmp_path / "elsewhere")
    assert kernel_cache_env({}, tmp=tmp_path / "linked") == {}
    (tmp_path / "open" / name).mkdir(parents=True)
    (tmp_path / "open" / name).chmod(0o777)
    assert kernel_cache_env({}, tmp=tmp_path / "open") == {}
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / name).write_text("")
    assert kernel_cache_env({}, tmp=tmp_path / "file") == {}
