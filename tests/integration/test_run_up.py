"""`argus up` and `argus down` in-process: a fake ServeClient and a pretend Ray head."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from argus.cluster.serve_client import ServeClient
from argus.config import Settings
from argus.runtime.head import LocalHead
from argus.runtime.server import RayHooks, RunState, run_down, run_up
from tests.conftest import make_settings
from tests.fake_cluster import FakeServeClient
from tests.ports import free_ports

pytestmark = pytest.mark.integration


class PretendHead:
    def __init__(self, started: bool) -> None:
        self.started, self.stopped = started, False

    def start(self, settings: Settings) -> LocalHead:
        return LocalHead("127.0.0.1:6379", owned=self.started, fresh=self.started)

    def stop(self, head: LocalHead) -> None:
        self.stopped = True


class FakeLink:
    """What `argus up` keeps its Ray link with, without an agent process."""

    def __init__(self, client: FakeServeClient) -> None:
        self.fake = client
        self.started = self.stopped = False

    @property
    def client(self) -> ServeClient:
        return self.fake

    def start(self) -> None:
        self.started = True

    def wait_ready(self, timeout: float) -> bool:
        return True

    def stop(self) -> None:
        self.stopped = True

    def describe(self) -> dict[str, object]:
        return {"agent": {"running": self.started and not self.stopped}}


def hooks_for(head: PretendHead, fake: FakeServeClient) -> tuple[RayHooks, FakeLink]:
    link = FakeLink(fake)
    return RayHooks(link=lambda s, h, say: link, start_head=head.start, stop_head=head.stop), link


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _up_until_ready_then_sigterm(
    settings: Settings, hooks: RayHooks, keep_ray: bool = False
) -> tuple[int, list[str], dict[str, str]]:
    lines: list[str] = []
    seen: dict[str, str] = {}

    def stopper() -> None:
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{settings.server.port}"
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{url}/readyz", timeout=2)
                if r.status_code == 200:
                    seen["readyz"] = r.text
                    seen["status"] = httpx.get(
                        f"{url}/api/v2/serve/status",
                        headers={"Authorization": f"Bearer {settings.admin_token}"},
                    ).text
                    seen["pidfile"] = RunState.path(settings).read_text()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stopper, daemon=True).start()
    code = run_up(settings, keep_ray=keep_ray, say=lines.append, ray=hooks)
    return code, lines, seen


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("keep_ray", [False, True])
def test_up_serves_until_sigterm_then_cleans_up(tmp_path: Path, keep_ray: bool) -> None:
    settings = make_settings(
        tmp_path / "data", ARGUS_PORT=str(free_ports(1)[0]), ARGUS_RECONCILE_INTERVAL_S="0.05"
    )
    head, fake = PretendHead(started=True), FakeServeClient()
    hooks, link = hooks_for(head, fake)
    code, lines, seen = _up_until_ready_then_sigterm(settings, hooks, keep_ray)
    assert code == 0
    assert '"ray":"ok"' in seen["readyz"]
    assert '"reconciler"' in seen["status"]
    assert str(os.getpid()) in seen["pidfile"]
    out = "\n".join(lines)
    assert "Ray head started at 127.0.0.1:6379" in out
    assert f"UI:              http://127.0.0.1:{settings.server.port}/ui" in out
    assert "OpenAI base URL: http://127.0.0.1:8000/v1" in out
    assert '"ray_link"' in seen["status"]
    assert link.started and link.stopped  # the agent is ended on the way out
    assert head.stopped is (not keep_ray)
    assert not RunState.path(settings).exists()


@pytest.mark.usefixtures("restore_signals")
def test_up_leaves_a_head_it_found(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", ARGUS_PORT=str(free_ports(1)[0]))
    head = PretendHead(started=False)
    hooks, _ = hooks_for(head, FakeServeClient())
    code, lines, _ = _up_until_ready_then_sigterm(settings, hooks)
    assert code == 0 and not head.stopped
    assert any("Ray head found" in line for line in lines)


@pytest.mark.usefixtures("restore_signals")
def test_up_with_a_busy_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = make_settings(
            tmp_path / "data", ARGUS_PORT=str(port), ARGUS_RAY_ADDRESS="127.0.0.1:6379"
        )
        lines: list[str] = []
        hooks, _ = hooks_for(PretendHead(started=False), FakeServeClient())
        assert run_up(settings, say=lines.append, ray=hooks) == 1
    assert any("could not start" in line for line in lines)
    assert any("connecting to the Ray cluster at 127.0.0.1:6379" in line for line in lines)


def test_down_stops_a_running_argus(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_path.mkdir(parents=True)
    proc = subprocess.Popen(["python3", "-c", "import time; time.sleep(60)", "argus-standin"])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 30
    while b"argus-standin" not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the child has exec'd: a busy machine takes its time
    RunState(proc.pid, started_ray=False, keep_ray=False).write(settings)
    try:
        assert run_down(settings, timeout_s=30) == f"argus (pid {proc.pid}) stopped"
    finally:
        proc.kill()
        proc.wait()


def test_down_never_signals_a_reused_pid(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_path.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])  # not argus: the pid was reused
    RunState(other.pid, started_ray=False, keep_ray=False).write(settings)
    try:
        assert "removed its stale pid file" in run_down(settings)
        assert other.poll() is None  # untouched
    finally:
        other.kill()
        other.wait()


def test_down_with_a_stale_pid_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_path.mkdir(parents=True)
    proc = subprocess.Popen(["true"])
    proc.wait()
    RunState(proc.pid, started_ray=False, keep_ray=False).write(settings)
    assert "removed its stale pid file" in run_down(settings)
    assert not RunState.path(settings).exists()
