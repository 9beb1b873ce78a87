"""End-to-end helpers: free ports, the real `argus` command, and the shared stack.

`stack` is one argus (`argus up` for real) with its own Ray head, shared by every
end-to-end module that asks for it and started the first time one does. It keeps to its
own ports (a block of `ray.port_base`), its own Ray temp dir and its own data dir, and
stops only what it started (`argus down` ends its head's process tree): a user's
`make run` on the same machine is never touched. Ray's token auth is on for the whole
session; this process (which asks Ray's state API for replica pids) holds the token too.

`smol` is the demo model deployed once for the session as alice's; modules that need a
RUNNING model share it and leave it RUNNING. The demo model is converted once per session
(`demo_storage`), and that storage root is the stack's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from argus.cluster.serve_app import INGRESS_DEPLOYMENT, deployment_name
from argus.config import HEAD_PORT_SPAN
from argus.demo import DEMO_MODEL_DIRNAME, prepare_demo_model
from tests.e2e.multinode import make_tiny_model
from tests.ports import free_ports, port_blocks

ARGUS = str(Path(sys.executable).with_name("argus"))
DEMO = f"$HOME/common/hf/{DEMO_MODEL_DIRNAME}"
TINY = "$HOME/common/hf/tiny-llama"


# Ray starts every worker process (replicas, engines, Serve's actors) 15 nice steps below
# its raylet. For the clusters of the e2e line that put the line's own engines below the
# other worker's tiers (nice 10, tests/conftest.py), which were meant to yield to them: the
# line's clusters start their workers at their raylet's priority. A cluster beside the line
# (test_multinode, on the niced worker) keeps Ray's default: its engines yield to both.
LINE_PRIORITY = {"RAY_worker_niceness": "0"}


def argus_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
    env.update({"ARGUS_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra})
    return env


def isolated_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An argus of its own: its ports, Ray ports and Ray temp dir apart from anything else."""
    (base,) = port_blocks(1, HEAD_PORT_SPAN)
    api_port, serve_port = free_ports(2)
    # Ray's unix sockets live under the temp dir (108 bytes at most): keep it short.
    ray_tmp = tempfile.mkdtemp(prefix="argus-t-", dir="/tmp")
    own = {
        "ARGUS_PORT": str(api_port),
        "ARGUS_SERVE_PORT": str(serve_port),
        "ARGUS_RAY_PORT_BASE": str(base),
        "ARGUS_RAY_TEMP_DIR": ray_tmp,
        "ARGUS_RAY_NUM_CPUS": "16",
        "ARGUS_RECONCILE_INTERVAL_S": "1",
        **LINE_PRIORITY,
    }
    return argus_env(data_dir, **{**own, **extra})


@dataclass(frozen=True)
class BesideTheHead:
    """argus against a cluster of its own, in the deployment's shape (deploy/ray-node/
    head.sh): the Ray agent runs beside the head, argus calls it and is no Ray node."""

    env: dict[str, str]  # argus's
    agent_command: list[str]
    agent_env: dict[str, str]


def beside_the_head(
    data: Path, address: str, dashboard_url: str, proxy_location: str = "HeadOnly"
) -> BesideTheHead:
    """Ports, the agent token and argus's settings (CPU engine on logical H20 GPUs)."""
    api_port, serve_port, agent_port = free_ports(3)
    token = secrets.token_hex(16)
    env = argus_env(
        data,
        ARGUS_RAY_AGENT_URL=f"tcp:127.0.0.1:{agent_port}",
        ARGUS_AGENT_TOKEN=token,
        ARGUS_RAY_ADDRESS=address,
        ARGUS_RAY_DASHBOARD_URL=dashboard_url,
        ARGUS_ENGINE="cpu",
        ARGUS_CPU_HOLDS_GPUS="true",
        ARGUS_ACCELERATOR_TYPE="H20",
        ARGUS_PORT=str(api_port),
        ARGUS_SERVE_PORT=str(serve_port),
        ARGUS_STORAGE_ROOT=str(data / "storage"),
        ARGUS_RECONCILE_INTERVAL_S="1",
    )
    command = [
        sys.executable,
        "-m",
        "argus.cluster.agent",
        "--address",
        address,
        "--listen",
        f"tcp:127.0.0.1:{agent_port}",
        "--serve-port",
        str(serve_port),
        "--proxy-location",
        proxy_location,
    ]
    agent_env = {k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")}
    return BesideTheHead(env, command, {**agent_env, "ARGUS_AGENT_TOKEN": token})


def argus(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARGUS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session", autouse=True)
def ray_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One Ray token for the session's clusters, in this process's environment too."""
    path = tmp_path_factory.mktemp("ray-auth") / "token"
    path.write_text(secrets.token_hex(32))
    os.chmod(path, 0o600)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)})
    _refresh_ray_auth()
    yield path
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _refresh_ray_auth()


def _refresh_ray_auth() -> None:
    """Ray reads its auth mode and token once per process; make it read them again (the
    test process asks Ray's state API for replica pids)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@dataclass
class Stack:
    data: Path
    env: dict[str, str]
    admin: str = ""
    token: str = ""  # alice's
    proc: subprocess.Popen[str] | None = None
    keys: dict[str, str] = field(default_factory=dict)  # suffix -> model_key
    ids: dict[str, str] = field(default_factory=dict)  # suffix -> public model id
    _http: httpx.Client | None = field(default=None, repr=False)
    _openai: dict[str, OpenAI] = field(default_factory=dict, repr=False)

    @property
    def http(self) -> httpx.Client:
        """One HTTP client for every call of the session, which keeps no cookie: a new httpx
        client costs 45 ms of CPU here (its SSL context), and the waits poll twice a second
        (the test process took 162 s of CPU in the end-to-end tier with one a call)."""
        if self._http is None:
            no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
            self._http = httpx.Client(timeout=30, cookies=no_cookies, trust_env=False)
        return self._http

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ARGUS_PORT']}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.env['ARGUS_SERVE_PORT']}/v1"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{int(self.env['ARGUS_RAY_PORT_BASE']) + 1}"

    @property
    def storage(self) -> Path:
        return Path(self.env["ARGUS_STORAGE_ROOT"])

    def head_pid(self) -> int:
        return int(json.loads((self.data / "ray-head.json").read_text())["pid"])

    def argus_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start_argus(self) -> None:
        log = (self.data / "argus.log").open("a")
        self.proc = subprocess.Popen(
            [ARGUS, "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data / "argus.log").read_text()[-3000:]
            try:
                if self.http.get(f"{self.api_url}/readyz", timeout=5).status_code == 200:
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
        return self.http.request(method, f"{self.api_url}{path}", headers=headers, **kw)

    def new_user(self, user_id: str, **patch: object) -> str:
        r = self.call("POST", "/api/v2/users", self.admin, json={"user_id": user_id})
        assert r.status_code == 201, r.text
        if patch:
            r = self.call("PATCH", f"/api/v2/users/{user_id}", self.admin, json=patch)
            assert r.status_code == 200, r.text
        token: str = self.call("POST", f"/api/v2/users/{user_id}/tokens", self.admin).json()[
            "token"
        ]
        return token

    def post_spec(self, text: str, token: str | None = None) -> dict[str, Any]:
        r = self.call(
            "POST",
            "/api/v2/serve/models",
            token,
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def model(self, key: str) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"/api/v2/serve/models/{key}", self.admin).json()
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
            time.sleep(0.5)  # the line waits on this: a state seen half a second sooner
        raise AssertionError(f"not {state} in {timeout} s: {json.dumps(got)[:3000]}")

    def delete(self, key: str) -> None:
        r = self.call("DELETE", f"/api/v2/serve/models/{key}", self.admin)
        assert r.status_code in (202, 409), r.text
        self.wait(key, "DELETED", timeout=300)

    def post_task(self, text: str, token: str | None = None) -> dict[str, Any]:
        r = self.call(
            "POST",
            "/api/v2/tasks",
            token,
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/v2/tasks/{task_id}", self.admin)
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

    def openai(self, key: str | None = None) -> OpenAI:
        """The official client with a key (alice's token unless another is given), one per
        key (each new one costs 35 ms of CPU)."""
        key = key or self.token
        if key not in self._openai:
            self._openai[key] = OpenAI(
                base_url=self.openai_url, api_key=key, max_retries=0, timeout=120
            )
        return self._openai[key]

    def chat(self, model_id: str, question: str = "What is the capital of France?") -> str:
        reply = self.openai().chat.completions.create(
            model=model_id,
            temperature=0,
            max_tokens=24,
            messages=[{"role": "user", "content": question}],
        )
        return reply.choices[0].message.content or ""

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
        return self._replica_pids(deployment_name(model_id))

    def ingress_pids(self) -> set[int]:
        return self._replica_pids(INGRESS_DEPLOYMENT)

    def _replica_pids(self, deployment: str) -> set[int]:
        from ray.util.state import list_actors

        name = f"ServeReplica:argus-llm:{deployment}"
        actors = list_actors(
            address=self.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000
        )
        return {int(a.pid) for a in actors if a.class_name == name}


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="session")
def demo_storage(storage_root: Path) -> Path:
    """A storage root with the demo model converted (once a session) and the tiny model."""
    root = storage_root
    result = prepare_demo_model(root)
    print(f"demo conversion took {result.seconds:.1f} s")
    make_tiny_model(root / "hf" / "tiny-llama")
    return root


_STACKS: list[Stack] = []  # the session's shared stack, once started


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, storage_root: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("argus-e2e")
    env = isolated_env(data, ARGUS_STORAGE_ROOT=str(storage_root))
    s = Stack(data, env)
    _STACKS.append(s)
    try:
        request.getfixturevalue("demo_storage")  # converted first: beside argus's start
        s.start_argus()  # on two busy cores, both took longer than one after the other
        s.admin = (data / "admin-token").read_text().strip()
        s.token = s.new_user("alice", allow_commands=True)
        yield s
    finally:
        s.stop_argus()
        if request.session.testsfailed == 0:  # a failed run keeps Ray's logs to read
            shutil.rmtree(env["ARGUS_RAY_TEMP_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def smol_posted(stack: Stack) -> tuple[str, str]:
    """alice's demo model, posted and maybe still starting: (model_key, model_id). A test
    that can do its own work while the engine starts (test_argus_up) asks for this one."""
    posted = stack.post_spec(
        f"model_id: smol\nmodel_source: {DEMO}\nengine_kwargs:\n  max_model_len: 1024\n"
    )
    stack.keys["smol"], stack.ids["smol"] = posted["model_key"], posted["model_id"]
    return posted["model_key"], posted["model_id"]


@pytest.fixture(scope="session")
def smol(stack: Stack, smol_posted: tuple[str, str]) -> tuple[str, str]:
    """alice's demo model, RUNNING: (model_key, model_id). Tests leave it RUNNING."""
    stack.wait(smol_posted[0], "RUNNING", timeout=600)
    return smol_posted


@pytest.fixture(scope="module")
def quiet_machine() -> None:
    """Stop the shared stack before a module that brings a cluster of its own, when this
    worker has one (they run last, tests/conftest.py): its Ray head, Serve and smol's engine
    were still up beside those clusters, and with them the chats through a worker's proxy
    during a head outage timed out in three runs of four, where the module alone answered
    every one. test_multinode mostly runs on the other worker, niced, beside the line: that
    worker has no stack, and the line keeps its own."""
    for s in _STACKS:
        s.stop_argus()
