"""CPU of one apply in the Ray agent: build the app and hand it to Serve, for N models.

Starts a Ray of its own (its own temp dir, 4 logical CPUs, nothing else on the machine
touched) and Serve on a free port, then applies N models at zero replicas (autoscaled,
`min_replicas: 0`: no engine starts, so only the apply is measured). Each apply changes
the gate, as a key change does. First with Ray's own config build, then through
`RayServeClient.apply`, which pickles Serve's request router once per class path.

    .venv/bin/python bench/apply_cpu.py [--models 6] [--applies 5]

Measured here (2 cores, Ray 2.60, 2026-12-07; median of five applies, then the range):
- two models: 0.38 s of CPU an apply with Ray's build (0.29-0.52), 0.38 s through argus's
  (0.36-0.39): what is left is mostly Serve pickling the ingress's FastAPI routes by value;
- six models: 0.58 s (0.46-0.74) against 0.35 s (0.30-0.41, and one apply of 0.9 s);
- twelve models: 0.76 s (0.61-1.08) against 0.43 s (0.26-0.88).
Ray's own build grows by about 40 ms a model; argus's hardly grows.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from argus.cluster.serve_app import EngineMode
from argus.cluster.serve_client import ModelDeployment
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import ResolvedServingSpec

APP = "apply-cpu"


def models(n: int) -> list[ModelDeployment]:
    engine = EngineSettings(EngineMode.CPU, None, 1, "/nonexistent/hf")
    scaling = {"min_replicas": 0, "max_replicas": 1, "idle_seconds": 10}
    made = []
    for i in range(n):
        model_id = f"bench-202612070000-m{i}"
        spec = ResolvedServingSpec.model_validate(
            {"model_id": f"m{i}", "model_source": "/nonexistent/m", "autoscaling": scaling}
        )
        made.append(ModelDeployment(model_id, build_llm_config(model_id, spec, engine)))
    return made


def cpu_per_apply(apply: Callable[[dict[str, Any]], None], applies: int) -> list[float]:
    apply({"bench": "warm"})
    seconds = []
    for k in range(applies):
        started = time.process_time()
        apply({"bench": k})  # a new gate each time, as a key change makes
        seconds.append(time.process_time() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--applies", type=int, default=5)
    args = parser.parse_args()
    deployments = models(args.models)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="argus-bench-", dir="/tmp") as temp:
        # Ray's token auth with a token of this run's (else Ray writes one to ~/.ray); Ray
        # reads these when it is imported.
        token = Path(temp) / "ray-token"
        token.write_text(secrets.token_hex(32))
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        import ray
        from ray import serve

        from argus.cluster import ray_client

        ray.init(num_cpus=4, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})

            def rays_own(gate: dict[str, Any]) -> None:
                with ray_client._SERVE_CONFIG_LOCK:
                    app = ray_client.build(deployments, gate)
                    serve._run(app, name=APP, route_prefix="/", _blocking=False)

            client = ray_client.RayServeClient("auto", "127.0.0.1", port, "HeadOnly")
            for name, apply in (
                ("Ray's config build", rays_own),  # first: argus's patch stays once made
                ("RayServeClient.apply", lambda gate: client.apply(APP, deployments, gate)),
            ):
                seconds = cpu_per_apply(apply, args.applies)
                figures = ", ".join(f"{s:.2f}" for s in seconds)
                print(f"{args.models} models, {name}: CPU s an apply: {figures}")
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
