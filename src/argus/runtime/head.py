"""The embedded default's local Ray head: found, or started with `ray start --head`.

argus starts the head as a separate process tree (not `ray.init()` in-process) so
that stopping or restarting argus never stops a model (design D7).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Ray writes the address of the newest head started on this machine here.
RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # noqa: S108


class RayHeadError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalHead:
    address: str
    started_by_us: bool


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _reachable(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def find_local_head() -> str | None:
    """The GCS address of a Ray head running on this machine, or None."""
    try:
        address = RAY_CURRENT_CLUSTER.read_text().strip()
    except OSError:
        return None
    return address if address and _reachable(address) else None


def start_local_head(num_cpus: int, dashboard_host: str) -> LocalHead:
    running = find_local_head()
    if running:
        return LocalHead(running, started_by_us=False)
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--dashboard-host={dashboard_host}",
        "--disable-usage-stats",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        raise RayHeadError(
            "`ray start --head` failed; its output:\n" + (proc.stdout + proc.stderr)[-3000:]
        )
    address = find_local_head()
    if address is None:
        raise RayHeadError("`ray start --head` returned but no head answers on this machine")
    return LocalHead(address, started_by_us=True)


def stop_local_head() -> None:
    """Stop the local head, then the vLLM engine processes it leaves behind.

    vLLM's engine core and its workers are processes of their own, outside Ray's
    bookkeeping: when `ray stop` ends a replica, they are re-parented to init and
    keep their memory (measured here: 2.5 GB each, until Ray killed live replicas
    for lack of memory). Orphaned `VLLM::` processes of this user are ended too.
    """
    cli = _ray_cli()
    subprocess.run(
        [cli, "stop", "--grace-period", "20"], capture_output=True, timeout=120, check=False
    )
    subprocess.run([cli, "stop", "--force"], capture_output=True, timeout=120, check=False)
    reap_orphan_engines()


def orphan_engine_pids(proc: Path = Path("/proc")) -> list[int]:
    """Live `VLLM::` processes of this user whose parent is gone (re-parented to 1)."""
    found = []
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            owner = entry.stat().st_uid
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm.startswith("VLLM::") and ppid == "1" and state != "Z" and owner == uid:
            found.append(int(entry.name))
    return found


def reap_orphan_engines(grace_s: float = 5.0) -> list[int]:
    """End orphaned engines: SIGTERM, then SIGKILL what is left after `grace_s`."""
    pids = orphan_engine_pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            if not set(pids) & set(orphan_engine_pids()):
                return pids
            time.sleep(0.2)
    return pids
