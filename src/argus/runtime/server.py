"""`argus up`: the Ray head (found or started), the supervised Ray agent, the API and UI.

argus's own process keeps no Ray connection (design D14): the Ray agent holds it, and the
supervisor keeps the agent (and, in the embedded default, the head) alive. When the
cluster is gone, the API and UI go on answering from the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import uvicorn

from argus.cluster.agent import TOKEN_ENV as AGENT_TOKEN_ENV
from argus.cluster.agent_client import AgentServeClient
from argus.cluster.job_client import JobClient
from argus.cluster.ray_jobs import RayJobClient
from argus.cluster.serve_client import ServeClient
from argus.config import Settings
from argus.runtime.bootstrap import (
    build_context,
    build_loop,
    ensure_admin_token,
    ensure_data_dir,
    open_database,
)
from argus.runtime.head import LocalHead, forget_head, ray_env, start_local_head, stop_head
from argus.runtime.supervisor import RaySupervisor, agent_socket
from argus.web import create_app


@dataclass(frozen=True)
class RunState:
    pid: int
    started_ray: bool
    keep_ray: bool

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.data_path / "argus.pid"

    def write(self, settings: Settings) -> None:
        self.path(settings).write_text(json.dumps(self.__dict__))

    @classmethod
    def read(cls, settings: Settings) -> RunState | None:
        try:
            return cls(**json.loads(cls.path(settings).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def banner(settings: Settings, admin_source: str) -> str:
    api = settings.api_url
    token_hint = (
        "$ARGUS_ADMIN_TOKEN" if admin_source == "ARGUS_ADMIN_TOKEN" else f"$(cat {admin_source})"
    )
    return "\n".join(
        [
            "",
            "argus is up.",
            f"  UI:              {api}/ui",
            f"  API:             {api}/api/v2   (reference: {api}/docs)",
            f"  OpenAI base URL: {settings.openai_base_url}",
            "                   (every call carries a key: a token, or `argus key create`)",
            f"  Admin token:     {admin_source}",
            "  Try:",
            f'    curl -H "Authorization: Bearer {token_hint}" {api}/api/v2/me',
            "  Stop with Ctrl-C or `argus down`.",
            "",
        ]
    )


class RayLink(Protocol):
    """argus's link to Ray: a ServeClient, and what keeps it connected."""

    @property
    def client(self) -> ServeClient: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def stop(self) -> None: ...

    def describe(self) -> dict[str, object]: ...


@dataclass
class AgentLink:
    """The real link: the supervised Ray agent process, and the client that calls it."""

    supervisor: RaySupervisor
    client: AgentServeClient

    def start(self) -> None:
        self.supervisor.start()

    def wait_ready(self, timeout: float) -> bool:
        return self.supervisor.wait_ready(timeout)

    def stop(self) -> None:
        self.supervisor.stop()
        self.client.close()

    def describe(self) -> dict[str, object]:
        return self.supervisor.describe()


@dataclass
class RemoteAgentLink:
    """An agent that runs beside the head (a deployment): argus only calls it."""

    client: AgentServeClient

    def start(self) -> None:
        return None

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return True
            except ConnectionError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(min(1.0, timeout))

    def stop(self) -> None:
        self.client.close()

    def describe(self) -> dict[str, object]:
        return {"agent": {"remote": True}}


def _agent_link(settings: Settings, head: LocalHead, say: Callable[[str], object]) -> RayLink:
    if settings.ray.agent_url:
        token = os.environ.get(AGENT_TOKEN_ENV) or None
        return RemoteAgentLink(AgentServeClient(settings.ray.agent_url, token))
    supervisor = RaySupervisor(settings, head, owns_head=head.owned, say=say)
    return AgentLink(supervisor, AgentServeClient(f"unix:{agent_socket(settings)}"))


@dataclass(frozen=True)
class RayHooks:
    """How `argus up` reaches Ray; tests hand in a fake link and a pretend head."""

    link: Callable[[Settings, LocalHead, Callable[[str], object]], RayLink] = _agent_link
    jobs: Callable[[Settings], JobClient] = lambda s: RayJobClient(s.ray.jobs_url)
    start_head: Callable[[Settings], LocalHead] = start_local_head
    stop_head: Callable[[LocalHead], None] = stop_head


REAL_RAY = RayHooks()
READY_WAIT_S = 300.0  # the first agent imports Ray Serve LLM and vLLM: tens of seconds


def run_up(
    settings: Settings,
    keep_ray: bool = False,
    say: Callable[[str], object] = print,
    ray: RayHooks = REAL_RAY,
) -> int:
    ensure_data_dir(settings)
    emit = say
    # Ray's token auth for this process (the job client) and every child of it.
    os.environ.update(ray_env(settings))
    if settings.ray.address:
        head = LocalHead(settings.ray.address, owned=False)
        emit(f"argus: connecting to the Ray cluster at {head.address}")
    else:
        emit("argus: looking for its local Ray head (starting one if none runs) ...")
        head = ray.start_head(settings)
        emit(f"argus: Ray head {'started' if head.fresh else 'found'} at {head.address}")
    state = RunState(os.getpid(), head.owned, keep_ray)
    state.write(settings)
    link = ray.link(settings, head, emit)
    try:
        link.start()
        db = open_database(settings)
        loop = build_loop(settings, db, link.client, ray.jobs(settings))
        loop.status.extras = link.describe
        ctx = build_context(
            settings, ray=link.client, status=loop.status, db=db, check=link.client.check
        )
        ctx.wake = loop.wake
        admin = ensure_admin_token(settings)
        app = create_app(ctx)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.server.host,
                port=settings.server.port,
                log_level="warning",
                access_log=False,
            )
        )

        stop = threading.Event()
        # uvicorn runs in a thread, so its own signal capture (which re-raises the
        # signal after shutdown and can kill the process before clean-up) stays off;
        # the main thread owns SIGINT/SIGTERM and shuts everything down in order.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

        def _serve() -> None:
            # uvicorn exits when it cannot bind; the loop below reports it
            with contextlib.suppress(SystemExit):
                server.run()

        thread = threading.Thread(target=_serve, name="argus-api", daemon=True)
        thread.start()
        while not server.started and thread.is_alive() and not stop.is_set():
            time.sleep(0.1)
        if not server.started:
            server.should_exit = True
            thread.join(10)
            emit(f"argus: the API could not start on {settings.server.host}:{settings.server.port}")
            return 1
        # The API answers (reads, and writes that wait for the cluster) before Ray does;
        # the control loop starts once the agent is connected, so a slow start is not
        # mistaken for a lost cluster.
        deadline = time.monotonic() + READY_WAIT_S
        while not link.wait_ready(0.5) and not stop.is_set():
            if time.monotonic() > deadline:
                emit("argus: the Ray agent is not connected yet; the control loop starts anyway")
                break
        loop.start()
        emit(banner(settings, admin.source))
        while not stop.wait(0.5):
            if not thread.is_alive():
                emit("argus: the API server stopped unexpectedly")
                return 1
        emit("argus: stopping ...")
        loop.stop()
        server.should_exit = True
        thread.join(30)
        return 0
    finally:
        link.stop()
        if head.owned and not keep_ray:
            emit("argus: stopping the Ray head it runs (pass --keep-ray to keep it)")
            ray.stop_head(LocalHead.recorded(settings) or head)
            forget_head(settings)
        RunState.path(settings).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """True while the process runs; an exited child its parent has not reaped yet is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_argus(pid: int) -> bool:
    """The pid still belongs to an argus process (a stale pid file may name a reused pid)."""
    try:
        return b"argus" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask: trust the pid file


def running_pid(settings: Settings) -> int | None:
    """The pid of the `argus up` whose pid file is in the data directory, if it still runs."""
    state = RunState.read(settings)
    if state is None or not _alive(state.pid) or not _is_argus(state.pid):
        return None
    return state.pid


def run_down(settings: Settings, timeout_s: float = 120.0) -> str:
    """Signal a running `argus up` to stop, and wait for it; returns what happened."""
    state = RunState.read(settings)
    if state is None:
        return "argus is not running (no pid file in the data directory)"
    try:
        if not _is_argus(state.pid):
            raise ProcessLookupError(state.pid)
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        RunState.path(settings).unlink(missing_ok=True)
        head = LocalHead.recorded(settings)
        if state.started_ray and not state.keep_ray and head is not None:
            stop_head(head)
            forget_head(settings)
            return "argus was not running; stopped the Ray head it had started"
        return "argus was not running; removed its stale pid file"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(state.pid):
            return f"argus (pid {state.pid}) stopped"
        time.sleep(0.2)
    return f"argus (pid {state.pid}) did not stop within {timeout_s:.0f} s"
