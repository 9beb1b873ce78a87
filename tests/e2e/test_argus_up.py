"""`argus up` for real: a Ray head, Serve's proxy, the API; then `argus down` stops it all."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from argus.runtime.head import find_local_head
from tests.e2e.conftest import ARGUS, argus, argus_env, free_port

pytestmark = pytest.mark.e2e


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"argus up exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return r
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout} s: {last}")


def test_up_serves_the_api_and_down_stops_everything(tmp_path: Path) -> None:
    head_before = find_local_head()
    api_port, serve_port = free_port(), free_port()
    env = argus_env(
        tmp_path / "data",
        ARGUS_PORT=str(api_port),
        ARGUS_SERVE_PORT=str(serve_port),
        ARGUS_RAY_NUM_CPUS="4",
    )
    proc = subprocess.Popen(
        [ARGUS, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        r = _wait_ready(f"http://127.0.0.1:{api_port}/readyz", proc, timeout=240)
        assert r.json()["checks"] == {"database": "ok", "ray": "ok"}
        token_file = tmp_path / "data" / "admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        me = httpx.get(
            f"http://127.0.0.1:{api_port}/api/v2/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.json() == {"user_id": "admin", "is_admin": True}
        # Serve's proxy answers on its port (no app yet, so 404 or 503, not a refused connection)
        proxy = httpx.get(f"http://127.0.0.1:{serve_port}/v1/models", timeout=10)
        assert proxy.status_code in (404, 503)
        assert find_local_head() is not None
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
    ):
        assert needle in out, out
    if head_before is None:
        assert "stopping the Ray head" in out
        assert find_local_head() is None
    else:
        assert find_local_head() == head_before  # an adopted head is left alone
