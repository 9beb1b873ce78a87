"""`argus up`: Ray head (found or started), Serve, then the API and UI until a signal."""

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

from argus.cluster.job_client import JobClient
from argus.cluster.ray_client import RayServeClient
from argus.cluster.ray_jobs import RayJobClient
from argus.cluster.serve_client import ServeClient
from argus.config import Settings
from argus.runtime.bootstrap import (
    build_context,
    build_loop,
    ensure_admin_token,
    open_database,
)
from argus.runtime.head import LocalHead, start_local_head, stop_local_head
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
            "                   (no auth on this port: keep it on a trusted network)",
            f"  Admin token:     {admin_source}",
            "  Try:",
            f'    curl -H "Authorization: Bearer {token_hint}" {api}/api/v2/me',
            "  Stop with Ctrl-C or `argus down`.",
            "",
        ]
    )


class UpClient(ServeClient, Protocol):
    def disconnect(self) -> None: ...


@dataclass(frozen=True)
class RayHooks:
    """How `argus up` reaches Ray; tests hand in a fake client and a pretend head."""

    client: Callable[[str, Settings], UpClient]
    jobs: Callable[[Settings], JobClient] = lambda s: RayJobClient(s.ray.jobs_url)
    start_head: Callable[[int, str], LocalHead] = start_local_head
    stop_head: Callable[[], None] = stop_local_head


def _ray_client(address: str, settings: Settings) -> UpClient:
    serve = settings.serving.serve
    return RayServeClient(address, serve.http_host, serve.http_port, serve.proxy_location)


REAL_RAY = RayHooks(client=_ray_client)


def run_up(
    settings: Settings,
    keep_ray: bool = False,
    say: Callable[[str], object] = print,
    ray: RayHooks = REAL_RAY,
) -> int:
    settings.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    emit = say
    if settings.ray.address:
        head = LocalHead(settings.ray.address, started_by_us=False)
        emit(f"argus: connecting to the Ray cluster at {head.address}")
    else:
        emit("argus: looking for a local Ray head (starting one if none runs) ...")
        head = ray.start_head(settings.ray.num_cpus, settings.ray.dashboard_host)
        emit(f"argus: Ray head {'started' if head.started_by_us else 'found'} at {head.address}")
    state = RunState(os.getpid(), head.started_by_us, keep_ray)
    state.write(settings)
    client = ray.client(head.address, settings)
    try:
        client.ensure_serve()
        db = open_database(settings)
        loop = build_loop(settings, db, client, ray.jobs(settings))
        ctx = build_context(settings, ray=client, status=loop.status, db=db)
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
        client.disconnect()
        if head.started_by_us and not keep_ray:
            emit("argus: stopping the Ray head it started (pass --keep-ray to keep it)")
            ray.stop_head()
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
        if state.started_ray and not state.keep_ray:
            stop_local_head()
            return "argus was not running; stopped the Ray head it had started"
        return "argus was not running; removed its stale pid file"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(state.pid):
            return f"argus (pid {state.pid}) stopped"
        time.sleep(0.2)
    return f"argus (pid {state.pid}) did not stop within {timeout_s:.0f} s"
