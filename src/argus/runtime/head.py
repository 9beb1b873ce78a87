"""The embedded default's local Ray head: found, or started with `ray start --head --block`.

argus starts the head as a process tree of its own (its own session, so stopping or
killing argus never stops a model, design D7) and records it in `<data_dir>/ray-head.json`:
the pid of the `ray start --block` process, whose descendants are every Ray process of
that head, vLLM engines included. Stopping the head ends exactly that tree, never another
cluster on the machine (no `ray stop`, which ends every Ray process of the user).

The head starts with an environment that holds none of argus's own variables (the admin
token, the data dir, the database URL): Ray's jobs and replicas inherit the head's
environment, and a user's task must never find argus's secrets there. Ray's token
authentication is on (`RAY_AUTH_MODE=token`, the token in `<data_dir>/ray-token`), and
with `ray.port_base` every port the head opens comes from one block, so two argus (a
user's `make run` and the tests) never meet on one machine.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from argus.cluster.probe import address_answers
from argus.config import HEAD_WORKER_PORTS, Settings

ARGUS_ENV_PREFIX = "ARGUS_"
# argus's own instrumentation (a coverage run of the tests) stays out of Ray too.
KEPT_FROM_RAY = (ARGUS_ENV_PREFIX, "COVERAGE_")
RAY_AUTH_MODE = "RAY_AUTH_MODE"
RAY_AUTH_TOKEN = "RAY_AUTH_TOKEN"
RAY_AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
START_TIMEOUT_S = 180.0


class RayHeadError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalHead:
    address: str
    # argus started it (now, or an earlier `argus up` of this data dir, which recorded it):
    # argus starts it again if it dies, and stops it when argus stops (unless kept).
    owned: bool
    pid: int | None = None  # the `ray start --block` process of an owned head
    dashboard_url: str | None = None
    fresh: bool = False  # started by this very call

    @staticmethod
    def record_path(settings: Settings) -> Path:
        return settings.data_path / "ray-head.json"

    def record(self, settings: Settings) -> None:
        record = {k: v for k, v in asdict(self).items() if k != "fresh"}
        self.record_path(settings).write_text(json.dumps(record))

    @classmethod
    def recorded(cls, settings: Settings) -> LocalHead | None:
        """The head an argus with this data dir started, if its record is there."""
        try:
            data = json.loads(cls.record_path(settings).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else "ray"


def head_address(settings: Settings) -> str:
    return f"127.0.0.1:{settings.ray.head_port}"


def ray_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What Ray needs in the environment of argus and its children: Ray's token auth on,
    with the operator's token if they set one, else argus's own for its local head."""
    env = os.environ if environ is None else environ
    if env.get(RAY_AUTH_TOKEN) or env.get(RAY_AUTH_TOKEN_PATH):
        return {RAY_AUTH_MODE: env.get(RAY_AUTH_MODE, "token")}
    if settings.ray.address:
        return {}  # an external cluster: its operator configures Ray's auth, argus follows
    return {RAY_AUTH_MODE: "token", RAY_AUTH_TOKEN_PATH: str(ensure_ray_token(settings))}


def ensure_ray_token(settings: Settings) -> Path:
    """The local head's Ray token file (0600), made once."""
    path = settings.ray_token_file
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def scrubbed_env(
    environ: Mapping[str, str],
    extra: Mapping[str, str],
    drop: tuple[str, ...] = KEPT_FROM_RAY,
) -> dict[str, str]:
    """The environment of a process that Ray (or user work) runs under: argus's own
    variables out, and with `extra` in."""
    env = {k: v for k, v in environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


def head_command(settings: Settings) -> list[str]:
    ray = settings.ray
    cmd = [
        _ray_cli(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={ray.head_port}",
        f"--dashboard-port={ray.dashboard_port}",
        f"--num-cpus={ray.num_cpus}",
        "--num-gpus=0",
        f"--dashboard-host={ray.dashboard_host}",
        "--disable-usage-stats",
    ]
    if ray.temp_dir is not None:
        cmd.append(f"--temp-dir={ray.temp_dir}")
    if ray.port_base is not None:
        base = ray.port_base
        cmd += [
            f"--ray-client-server-port={base + 2}",
            f"--dashboard-agent-listen-port={base + 3}",
            f"--node-manager-port={base + 4}",
            f"--object-manager-port={base + 5}",
            f"--metrics-export-port={base + 6}",
            f"--dashboard-agent-grpc-port={base + 7}",
            f"--runtime-env-agent-port={base + 8}",
            f"--min-worker-port={base + 16}",
            f"--max-worker-port={base + 16 + HEAD_WORKER_PORTS - 1}",
        ]
    return cmd


def find_local_head(settings: Settings) -> LocalHead | None:
    """A head already answering on this argus's GCS port: the one it recorded, or another."""
    address = head_address(settings)
    if not address_answers(address):
        return None
    recorded = LocalHead.recorded(settings)
    if recorded is not None and recorded.address == address and alive(recorded.pid):
        return LocalHead(address, True, recorded.pid, recorded.dashboard_url)
    return LocalHead(address, False, None, settings.ray.jobs_url)  # someone else's head


def start_local_head(settings: Settings, log: Path | None = None) -> LocalHead:
    """Start a head (its own session, argus's variables left out) and wait until it answers."""
    running = find_local_head(settings)
    if running is not None:
        return running
    env = scrubbed_env(os.environ, {**ray_env(settings), **temp_env(settings)})
    out = open(log or settings.data_path / "ray-head.log", "ab")  # noqa: SIM115 - the child's
    try:
        proc = subprocess.Popen(
            head_command(settings),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # argus's signals and exit never reach the head
        )
    finally:
        out.close()
    head = LocalHead(head_address(settings), True, proc.pid, settings.ray.jobs_url, fresh=True)
    head.record(settings)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RayHeadError(
                f"`ray start --head` exited with code {proc.returncode}; its output is in "
                f"{log or settings.data_path / 'ray-head.log'}"
            )
        if address_answers(head.address) and _dashboard_answers(settings.ray.jobs_url):
            return head
        time.sleep(0.5)
    stop_head(head)
    raise RayHeadError(f"the Ray head did not answer at {head.address} in {START_TIMEOUT_S:.0f} s")


def temp_env(settings: Settings) -> dict[str, str]:
    """A head with a temp dir of its own keeps its processes' temp files in it too: vLLM's
    IPC sockets, torch's rendezvous files and multiprocessing's folders, which every killed
    engine leaves behind (over a hundred in /tmp after one run of the tests), go with it.
    Compiled kernels are a cache, not litter: they stay where torch keeps them without the
    head's TMPDIR (`kernel_cache_env`)."""
    if settings.ray.temp_dir is None:
        return {}
    tmp = settings.ray.temp_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(tmp), **kernel_cache_env()}


def kernel_cache_env(
    environ: Mapping[str, str] = os.environ, tmp: Path | None = None
) -> dict[str, str]:
    """torch's inductor cache where torch puts it by default (`<tmp>/torchinductor_<user>`,
    the machine's tmp, not the head's): vLLM's CPU engine compiles a few kernels with it
    even in eager mode. In a head temp dir of its own, every head compiled them again:
    16 s of CPU on the first engine start of each head here (28.5 s against 12.5 s for
    its worker), where a shared cache compiles them once per machine.

    The engines load what they find there, and its name in a shared /tmp is easy to guess:
    a folder that is not this user's own (another's, a link, writable by others) is not
    used, and the kernels stay in the head's temp dir as before."""
    if "TORCHINDUCTOR_CACHE_DIR" in environ:
        return {}
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid_{os.getuid()}"
    cache = Path(tmp or tempfile.gettempdir()) / f"torchinductor_{user}"
    try:
        cache.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return {}
    try:
        st = cache.lstat()
    except OSError:
        return {}
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return {}
    return {"TORCHINDUCTOR_CACHE_DIR": str(cache)}


def _dashboard_answers(url: str) -> bool:
    host_port = url.split("://", 1)[-1].rstrip("/")
    return address_answers(host_port)


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state != "Z"


def descendants(root: int, proc: Path = Path("/proc")) -> list[int]:
    """`root` and every process below it (parents before children), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def orphan_engines(raylets: set[int], proc: Path = Path("/proc")) -> list[int]:
    """vLLM engine processes re-parented to init whose Ray node is one of `raylets`.

    vLLM's engine core outlives a replica that dies before it (it keeps gigabytes of
    memory); the replica's environment, which the engine inherits, names its raylet.
    """
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if not comm.startswith("VLLM::") or ppid != "1" or state == "Z":
            continue
        for var in environ.split(b"\0"):
            if var.startswith(b"RAY_RAYLET_PID=") and var[15:].isdigit():
                if int(var[15:]) in raylets:
                    found.append(int(entry.name))
                break
    return found


def stop_head(head: LocalHead, grace_s: float = 5.0) -> None:
    """End the head's process tree: SIGTERM, then SIGKILL what is left after `grace_s`.

    The tree is read before anything is signalled, so vLLM engines that the kill
    re-parents to init are ended too, and so are engines an earlier replica left behind.
    """
    if head.pid is None:
        return
    tree = [p for p in descendants(head.pid) if alive(p)]
    tree += orphan_engines(set(tree))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pid, sig)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 10.0)
        while time.monotonic() < deadline and any(alive(p) for p in tree):
            time.sleep(0.2)
        if not any(alive(p) for p in tree):
            return


def forget_head(settings: Settings) -> None:
    LocalHead.record_path(settings).unlink(missing_ok=True)
