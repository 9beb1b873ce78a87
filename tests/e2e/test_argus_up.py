"""`argus up` for real: its own Ray head, the Ray agent, Serve's proxy, the API; then
`argus down` stops all of it, and only it.

The session's shared stack stands in for a user's `make run` on the same machine: a
second argus comes and goes beside it, and the first one's head, model and replica are
untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from argus.runtime.head import alive, descendants, kernel_cache_env
from tests.e2e.conftest import ARGUS, Stack, argus, isolated_env

pytestmark = pytest.mark.e2e


def _wait_ready(
    http: httpx.Client, url: str, proc: subprocess.Popen[str], timeout: float
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"argus up exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            r = http.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout} s: {last}")


def test_up_and_down_touch_only_their_own_head(
    tmp_path: Path, stack: Stack, smol_posted: tuple[str, str]
) -> None:
    """The second argus starts while the first one's model starts (a second head beside an
    engine starting: 40 s of the line overlap), and goes down once that model serves."""
    key, model_id = smol_posted
    bystander_head = stack.head_pid()
    env = isolated_env(tmp_path / "data", ARGUS_RAY_NUM_CPUS="4")
    api_port, serve_port = env["ARGUS_PORT"], env["ARGUS_SERVE_PORT"]
    proc = subprocess.Popen(
        [ARGUS, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        r = _wait_ready(stack.http, f"http://127.0.0.1:{api_port}/readyz", proc, timeout=240)
        assert r.json()["checks"] == {"database": "ok", "ray": "ok"}
        data = tmp_path / "data"
        assert data.stat().st_mode & 0o777 == 0o700
        assert (data / "argus.db").stat().st_mode & 0o777 == 0o600
        token_file = data / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        me = httpx.get(
            f"http://127.0.0.1:{api_port}/api/v2/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert (me.json()["user_id"], me.json()["is_admin"]) == ("admin", True)
        # Serve's proxy answers on its port (no app yet, so 404 or 503, not a refused connection)
        proxy = httpx.get(f"http://127.0.0.1:{serve_port}/v1/models", timeout=10)
        assert proxy.status_code in (404, 503)
        head = int(__import__("json").loads((data / "ray-head.json").read_text())["pid"])
        tree = [p for p in descendants(head) if alive(p)]
        stack.wait(key, "RUNNING", timeout=600)  # what `argus down` must leave alone
        bystander_tree = {p for p in descendants(bystander_head) if alive(p)}
        bystander_replicas = stack.settled_pids(model_id, 1)
        assert bystander_replicas <= bystander_tree
        assert len(tree) > 3 and not set(tree) & bystander_tree
        down = argus(env, "down")
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    for needle in (
        f"http://127.0.0.1:{api_port}/ui",
        f"http://127.0.0.1:{serve_port}/v1",
        str(token_file),
        "curl -H",
        "stopping the Ray head it runs",
    ):
        assert needle in out, out
    assert not any(alive(p) for p in tree)  # its head's whole tree is gone ...
    assert not (data / "ray-head.json").exists()
    # ... and the other argus on this machine did not notice
    assert alive(bystander_head) and stack.head_pid() == bystander_head
    assert stack.replica_pids(model_id) == bystander_replicas
    assert "Paris" in stack.chat(model_id)
    assert os.path.exists(stack.data / "agent.sock")
    shutil.rmtree(env["ARGUS_RAY_TEMP_DIR"])  # its head's files: nothing runs there now


def test_the_engines_temp_files_stay_in_their_heads_temp_dir(
    stack: Stack, smol: tuple[str, str]
) -> None:
    """vLLM's IPC sockets and the like go to the head's own temp dir, not /tmp: a killed
    engine leaves them behind, and they go with that dir. The kernels torch compiles for the
    engine are a cache, shared with every head on the machine."""
    (replica,) = stack.settled_pids(smol[1], 1)
    own = Path(stack.env["ARGUS_RAY_TEMP_DIR"]) / "tmp"
    engines = [p for p in descendants(replica) if p != replica]
    assert engines  # the engine core and its worker
    kernels = kernel_cache_env({})["TORCHINDUCTOR_CACHE_DIR"]  # the machine's, shared
    for pid in (replica, *engines):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"TMPDIR={own}".encode() in environ, pid
        assert f"TORCHINDUCTOR_CACHE_DIR={kernels}".encode() in environ, pid
    assert any(p.is_socket() for p in own.iterdir())  # the running engine's
    assert any(Path(kernels).iterdir())  # what its worker compiled, for the next engine
