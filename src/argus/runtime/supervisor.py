"""Keeps argus's link to Ray alive: the Ray agent process, and the local head argus owns.

argus's own process holds no Ray connection (design D14): the agent does
(`argus.cluster.agent`). The supervisor starts it once the head's GCS port answers,
starts it again (after a short backoff) whenever it exits, and ends it when the GCS has
stopped answering, so that it reconnects at once when the head is back instead of
waiting out Ray's one-minute timeout. In the embedded default it also starts the local
head again, with backoff, if the head that argus owns (the one recorded in its data dir)
is gone; against an external cluster it only waits for the cluster to return.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from argus.cluster.agent import GCS_LOST_AFTER_S
from argus.cluster.probe import address_answers
from argus.config import Settings
from argus.runtime.head import (
    ARGUS_ENV_PREFIX,
    LocalHead,
    RayHeadError,
    ray_env,
    scrubbed_env,
    start_local_head,
)

log = logging.getLogger(__name__)

CHECK_EVERY_S = 0.5
AGENT_BACKOFF_S = (0.5, 1.0, 2.0)  # short: argus reconnects within two ticks of the head
HEAD_BACKOFF_S = (2.0, 5.0, 10.0, 30.0)


def agent_socket(settings: Settings) -> Path:
    return settings.data_path / "agent.sock"


def agent_command(settings: Settings, address: str) -> list[str]:
    serve = settings.serving.serve
    return [
        sys.executable,
        "-m",
        "argus.cluster.agent",
        "--address",
        address,
        "--listen",
        f"unix:{agent_socket(settings)}",
        "--serve-host",
        serve.http_host,
        "--serve-port",
        str(serve.http_port),
        "--proxy-location",
        serve.proxy_location,
    ]


@dataclass
class RaySupervisor:
    settings: Settings
    head: LocalHead
    owns_head: bool  # the embedded default: argus starts this head again when it is gone
    say: Callable[[str], object] = print
    start_head: Callable[[Settings], LocalHead] = start_local_head
    command: Callable[[Settings, str], list[str]] = agent_command
    answers: Callable[[str], bool] = address_answers  # the GCS port takes a connection
    agent: subprocess.Popen[bytes] | None = None
    agent_starts: int = 0
    head_restarts: int = 0
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _gcs_down_since: float | None = None
    _next_agent_at: float = 0.0
    _next_head_at: float = 0.0
    _agent_failures: int = 0
    _head_failures: int = 0

    # -- the thread -----------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="argus-ray-supervisor", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """True once an agent has answered (the cluster is reachable through it)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        self._end_agent()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(time.monotonic())
            except Exception:  # the supervisor must outlive anything one look meets
                log.exception("the Ray supervisor's check failed")
            self._stop.wait(CHECK_EVERY_S)

    # -- one look ---------------------------------------------------------------------
    def step(self, now: float) -> None:
        if self.answers(self.head.address):
            self._gcs_down_since = None
            self._head_failures = 0
            self._keep_agent(now)
            return
        if self._gcs_down_since is None:
            self._gcs_down_since = now
            self.say(f"argus: the Ray head at {self.head.address} does not answer")
        if now - self._gcs_down_since >= GCS_LOST_AFTER_S:
            self._end_agent()  # it cannot serve; it reconnects fresh when the head is back
        if self.owns_head and now >= self._next_head_at:
            self._restart_head(now)

    def _keep_agent(self, now: float) -> None:
        if self.agent is not None and self.agent.poll() is None:
            if not self._ready.is_set() and agent_socket(self.settings).exists():
                self._ready.set()
            return
        if self.agent is not None:
            code = self.agent.returncode
            self.agent = None
            self._agent_failures += 1
            delay = AGENT_BACKOFF_S[min(self._agent_failures, len(AGENT_BACKOFF_S)) - 1]
            self._next_agent_at = now + delay
            self.say(f"argus: the Ray agent exited (code {code}); starting it again")
        if now < self._next_agent_at:
            return
        self._start_agent()

    def _start_agent(self) -> None:
        sock = agent_socket(self.settings)
        sock.unlink(missing_ok=True)
        log_file = open(self.settings.data_path / "agent.log", "ab")  # noqa: SIM115 - the child's
        try:
            self.agent = subprocess.Popen(
                self.command(self.settings, self.head.address),
                # The agent is a driver, not a Ray worker: no secret of argus's, but it
                # may carry a coverage run's variables (nothing it starts inherits them).
                env=scrubbed_env(os.environ, ray_env(self.settings), drop=(ARGUS_ENV_PREFIX,)),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        finally:
            log_file.close()
        self.agent_starts += 1

    def _end_agent(self) -> None:
        agent, self.agent = self.agent, None
        self._ready.clear()
        if agent is None or agent.poll() is not None:
            return
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)

    def _restart_head(self, now: float) -> None:
        self._head_failures += 1
        delay = HEAD_BACKOFF_S[min(self._head_failures, len(HEAD_BACKOFF_S)) - 1]
        self._next_head_at = now + delay
        # A head started again is a new cluster: an agent still connected to the old one
        # would hang in every Serve call, and a head back within GCS_LOST_AFTER_S never
        # lets that end it.
        self._end_agent()
        self.say("argus: starting the local Ray head again")
        try:
            head = self.start_head(self.settings)
        except (RayHeadError, OSError) as e:
            self.say(f"argus: the Ray head did not start ({e}); trying again in {delay:.0f} s")
            return
        self.head = head
        self.head_restarts += 1
        self.say(f"argus: Ray head started again at {head.address}")

    # -- what the status view shows -------------------------------------------------------
    def describe(self) -> dict[str, object]:
        return {
            "head": {
                "address": self.head.address,
                "managed_by_argus": self.owns_head,
                "restarts": self.head_restarts,
            },
            "agent": {
                "running": self.agent is not None and self.agent.poll() is None,
                "starts": self.agent_starts,
            },
        }
