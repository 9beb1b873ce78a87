"""End-to-end helpers: free ports, the real `argus` command, and the shared stack.

`stack` is one Ray head, one argus (`argus up` for real) and the demo model, shared by
every end-to-end test that asks for it; it is started the first time one does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from argus.cluster.serve_app import deployment_name
from argus.demo import DEMO_MODEL_DIRNAME, prepare_demo_model
from argus.runtime.head import find_local_head, start_local_head, stop_local_head

ARGUS = str(Path(sys.executable).with_name("argus"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def argus_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
    env.update({"ARGUS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra})
    return env


def argus(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARGUS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


DEMO = f"$HOME/common/hf/{DEMO_MODEL_DIRNAME}"


@dataclass
class Stack:
    data: Path
    env: dict[str, str]
    api_url: str
    openai_url: str
    admin: str = ""
    token: str = ""
    proc: subprocess.Popen[str] | None = None
    keys: dict[str, str] = field(default_factory=dict)  # suffix -> model_key
    ids: dict[str, str] = field(default_factory=dict)  # suffix -> public model id

    @property
    def storage(self) -> Path:
        return Path(self.env["ARGUS_STORAGE_ROOT"])

    def start_argus(self) -> None:
        log = (self.data / "argus.log").open("a")
        self.proc = subprocess.Popen(
            [ARGUS, "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data / "argus.log").read_text()
            try:
                if httpx.get(f"{self.api_url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("argus did not become ready")

    def kill_argus(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop_argus(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            argus(self.env, "down")
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kw)

    def post_spec(self, text: str) -> dict[str, Any]:
        r = self.call(
            "POST",
            "/api/v2/serve/models",
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def model(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"/api/v2/serve/models/{key}").json()
        return body

    def wait(
        self, key: str, state: str, timeout: float = 600, ready: int | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        got: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = self.model(key)
            m = got["model"]
            if m["state"] == state and (ready is None or m["ready_replicas"] == ready):
                return got
            if m["state"] == "FAILED" and state != "FAILED":
                raise AssertionError(f"model failed: {m['error_summary']}")
            time.sleep(1)
        raise AssertionError(f"not {state} in {timeout} s: {json.dumps(got)[:3000]}")

    def post_task(self, text: str) -> dict[str, Any]:
        r = self.call(
            "POST",
            "/api/v2/tasks",
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/v2/tasks/{task_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait_task(self, task_id: str, state: str, timeout: float = 300) -> dict[str, Any]:
        """The task's detail once it is in `state`; fails at once if it finishes otherwise."""
        deadline = time.monotonic() + timeout
        got: dict[str, Any] = {}
        while time.monotonic() < deadline:
            got = self.task(task_id)
            now = got["task"]["state"]
            if now == state:
                return got
            if now in ("SUCCEEDED", "FAILED", "CANCELED"):
                break
            time.sleep(0.5)
        raise AssertionError(f"task not {state}: {got.get('task')} {got.get('events')}")

    def openai(self) -> OpenAI:
        return OpenAI(base_url=self.openai_url, api_key="unused", max_retries=0, timeout=120)

    def settled_pids(self, model_id: str, count: int, timeout: float = 120) -> set[int]:
        """The replica pids once exactly `count` replica actors are alive (stopped ones gone)."""
        deadline = time.monotonic() + timeout
        pids = self.replica_pids(model_id)
        while len(pids) != count and time.monotonic() < deadline:
            time.sleep(1)
            pids = self.replica_pids(model_id)
        assert len(pids) == count, pids
        return pids

    def replica_pids(self, model_id: str) -> set[int]:
        from ray.util.state import list_actors

        name = f"ServeReplica:argus-llm:{deployment_name(model_id)}"
        actors = list_actors(
            address="http://127.0.0.1:8265", filters=[("state", "=", "ALIVE")], limit=1000
        )
        return {int(a.pid) for a in actors if a.class_name == name}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("argus-e2e")
    started_head = find_local_head() is None
    start_local_head(num_cpus=16, dashboard_host="127.0.0.1")
    storage = data / "storage"
    prepare_demo_model(storage)
    api_port = free_port()
    env = argus_env(
        data,
        ARGUS_PORT=str(api_port),
        ARGUS_SERVE_PORT=os.environ.get("ARGUS_E2E_SERVE_PORT", str(free_port())),
        ARGUS_STORAGE_ROOT=str(storage),
        ARGUS_RECONCILE_INTERVAL_S="1",
    )
    s = Stack(
        data, env, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{env['ARGUS_SERVE_PORT']}/v1"
    )
    try:
        s.start_argus()
        s.admin = (data / "admin-token").read_text().strip()
        assert (
            s.call("POST", "/api/v2/users", s.admin, json={"user_id": "alice"}).status_code == 201
        )
        s.token = s.call("POST", "/api/v2/users/alice/tokens", s.admin).json()["token"]
        yield s
    finally:
        s.stop_argus()
        if started_head:
            stop_local_head()
