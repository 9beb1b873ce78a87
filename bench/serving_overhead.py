"""What argus costs on top of Ray Serve LLM and vLLM, measured side by side in one run.

1. Deploy overhead: time from POST /api/v2/serve/models to the first successful chat
   completion, against a bare `serve.run` of the same LLMConfig (argus's own builder)
   to its first completion. Target ratio <= 1.10.
2. Inference overhead: p50/p95 of 50 identical short chat completions through the
   argus-deployed model, against bare `vllm serve` (python -m
   vllm.entrypoints.openai.api_server) of the same model and engine settings. Target
   p50 ratio <= 1.15.

The bare run gets a Ray cluster of its own (ray.init with its own temp dir); argus is
`argus up` with a temporary data directory, its own head, ports and Ray temp dir; nothing
else on the machine is touched (a `make run` beside it goes on). Both deploy the same
LLMConfig, the one argus gives Ray. One thing at a time, so the two cores are not shared
between what is compared.

    .venv/bin/python bench/serving_overhead.py
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from argus.cluster.ray_client import for_ray
from argus.cluster.serve_app import EngineMode
from argus.config import HEAD_PORT_SPAN
from argus.demo import DEMO_MODEL_DIRNAME, prepare_demo_model
from argus.runtime.doctor import port_free
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import ResolvedServingSpec

ARGUS = str(Path(sys.executable).with_name("argus"))
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
ENGINE_KWARGS = {"max_model_len": 1024}


def chat(base: str, model: str, key: str = "", timeout: float = 120) -> httpx.Response:
    """A short chat; `key` for argus's endpoint, which answers the model's callers only."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{base}/chat/completions", timeout=timeout, headers=headers, json={
        "model": model, "messages": PROMPT, "temperature": 0, "max_tokens": 16})


def first_completion(
    base: str, model: str, since: float, key: str = "", limit: float = 900
) -> float:
    while time.monotonic() - since < limit:
        try:
            if chat(base, model, key).status_code == 200:
                return time.monotonic() - since
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{model} never answered")


def latencies(base: str, model: str, key: str = "", n: int = 50) -> list[float]:
    chat(base, model, key)  # warm-up, not counted
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = chat(base, model, key)
        out.append(time.perf_counter() - t)
        r.raise_for_status()
    return out


def settle(limit_s: float = 120) -> None:
    """Wait until no vLLM engine process is left, so the next run has both cores."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and _engine_processes():
        time.sleep(1)
    time.sleep(5)


def _engine_processes() -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(VLLM::" in text and text.rpartition(")")[2].split()[0] != "Z":
            found.append(stat.parent.name)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(size: int) -> int:
    """The base of `size` free ports below the ephemeral range, for argus's own Ray head."""
    for base in random.sample(range(20000, 32768 - size, size), k=(32768 - 20000) // size - 1):
        if all(port_free("127.0.0.1", port) for port in range(base, base + size)):
            return base
    raise RuntimeError("no free port range for the Ray head")


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    made_dirs: list[str] = []

    def made(path: str) -> str:  # removed at the end: the converted model, Ray's files
        made_dirs.append(path)
        return path

    tmp = Path(made(tempfile.mkdtemp(prefix="argus-bench-")))
    storage = tmp / "storage"
    prepare_demo_model(storage)
    source = storage / "hf" / DEMO_MODEL_DIRNAME
    serve_port = free_port()
    base = f"http://127.0.0.1:{serve_port}/v1"
    engine = EngineSettings(EngineMode.CPU, None, 1, str(storage / ".hf-home"))
    spec = ResolvedServingSpec.from_stored(
        {"model_id": "x", "model_source": str(source), "num_replicas": 1,
         "gpus_per_replica": 1, "engine_kwargs": ENGINE_KWARGS})
    argus_proc = None
    vllm_proc = None
    try:
        ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False,
                 _temp_dir=made(tempfile.mkdtemp(prefix="argus-t-", dir="/tmp")))
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port},
                    proxy_location="HeadOnly")

        # 1a. bare serve.run of the same LLMConfig
        config = LLMConfig.model_validate(for_ray(build_llm_config("bare-smol", spec, engine)))
        t0 = time.monotonic()
        serve.run(build_openai_app({"llm_configs": [config]}), name="bench-bare",
                  route_prefix="/bare")
        bare_deploy = first_completion(f"http://127.0.0.1:{serve_port}/bare/v1", "bare-smol", t0)
        serve.shutdown()
        ray.shutdown()
        settle()

        # 1b. argus: POST to first completion
        api_port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ARGUS_")},
               "ARGUS_DATA_DIR": str(tmp / "data"), "ARGUS_STORAGE_ROOT": str(storage),
               "ARGUS_PORT": str(api_port), "ARGUS_SERVE_PORT": str(serve_port),
               "ARGUS_RAY_PORT_BASE": str(free_port_block(HEAD_PORT_SPAN)),
               "ARGUS_RAY_TEMP_DIR": made(tempfile.mkdtemp(prefix="argus-t-", dir="/tmp")),
               "ARGUS_RAY_NUM_CPUS": "16"}
        argus_proc = subprocess.Popen([ARGUS, "up"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT)
        api = f"http://127.0.0.1:{api_port}"
        while True:
            try:
                if httpx.get(f"{api}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        admin = {"Authorization": "Bearer " + (tmp / "data" / "admin-token").read_text().strip()}
        httpx.post(f"{api}/api/v2/users", headers=admin, json={"user_id": "bench"})
        token = httpx.post(f"{api}/api/v2/users/bench/tokens", headers=admin).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        spec_yaml = (f"model_id: smol\nmodel_source: $HOME/common/hf/{DEMO_MODEL_DIRNAME}\n"
                     "engine_kwargs:\n  max_model_len: 1024\n")
        t0 = time.monotonic()
        posted = httpx.post(f"{api}/api/v2/serve/models", content=spec_yaml,
                            headers={**auth, "Content-Type": "application/yaml"}).json()
        argus_deploy = first_completion(base, posted["model_id"], t0, token)
        print(f"deploy to first completion: bare serve.run {bare_deploy:.1f} s, "
              f"argus {argus_deploy:.1f} s, ratio {argus_deploy / bare_deploy:.2f} "
              "(target <= 1.10)")

        # 2a. inference through argus
        via_argus = latencies(base, posted["model_id"], token)
        httpx.delete(f"{api}/api/v2/serve/models/{posted['model_key']}", headers=auth)
        while httpx.get(f"{api}/api/v2/serve/models/{posted['model_key']}",
                        headers=auth).json()["model"]["state"] != "DELETED":
            time.sleep(1)

        settle()

        # 2b. bare vllm serve of the same model and engine settings
        vllm_port = free_port()
        vllm_env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
        vllm_proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
             str(source), "--served-model-name", "bare", "--dtype", "float32",
             "--max-model-len", "1024", "--enforce-eager", "--host", "127.0.0.1",
             "--port", str(vllm_port)],
            env=vllm_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        vllm_base = f"http://127.0.0.1:{vllm_port}/v1"
        first_completion(vllm_base, "bare", time.monotonic())
        bare = latencies(vllm_base, "bare")
        a50, b50 = statistics.median(via_argus), statistics.median(bare)
        print(f"50 short chat completions: argus p50 {a50 * 1000:.0f} ms p95 "
              f"{p(via_argus, 0.95) * 1000:.0f} ms; bare vllm p50 {b50 * 1000:.0f} ms p95 "
              f"{p(bare, 0.95) * 1000:.0f} ms; p50 ratio {a50 / b50:.2f} (target <= 1.15)")
        deploy_ok = argus_deploy / bare_deploy <= 1.10
        infer_ok = a50 / b50 <= 1.15
        print("targets:", "deploy met" if deploy_ok else "deploy MISSED", "/",
              "inference met" if infer_ok else "inference MISSED")
        return 0 if deploy_ok and infer_ok else 1
    finally:
        if vllm_proc is not None:
            vllm_proc.terminate()
            vllm_proc.wait(60)
        if argus_proc is not None:
            subprocess.run([ARGUS, "down"], env=env, check=False, capture_output=True)
            argus_proc.wait(120)
        for path in made_dirs:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
