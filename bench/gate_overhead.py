"""What argus's ingress costs a call: keys, access, rate limits and metering, against none.

One Ray cluster of its own (started here, stopped at the end), the demo model, and two
Serve apps side by side on the same engine settings: Ray Serve LLM's own app
(`build_openai_app`, no checks) and argus's (`argus.cluster.ray_client.build`: the gate,
the access table, the rate limiter and the usage meter, with a table of 1,000 keys).
200 short chats through each, in interleaved rounds so that drift hits both alike; it
prints p50 and p95 of each and the p50 difference (issue 13's target: at most 2 ms), then
how long a revoked key takes to be refused once Serve has the new table (argus's tick
adds up to one reconcile interval on top).

    .venv/bin/python bench/gate_overhead.py [--chats 200]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from argus.cluster.access import key_hash
from argus.cluster.serve_app import EngineMode
from argus.cluster.serve_client import ModelDeployment
from argus.demo import prepare_demo_model
from argus.serving.llm_config import EngineSettings, build_llm_config
from argus.serving.spec import ResolvedServingSpec

MODEL = "bench-smol"
ROUNDS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(keys: list[str], revoked: frozenset[str] = frozenset()) -> dict[str, Any]:
    principals = {
        key_hash(k): {
            "user": f"u{i}",
            "admin": False,
            "key": f"k{i}",
            "models": None,
            "expires": None,
        }
        for i, k in enumerate(keys)
        if k not in revoked
    }
    everyone = [f"u{i}" for i in range(len(keys))]
    return {
        "principals": principals,
        "models": {MODEL: {"owner": "u0", "users": everyone, "all": False}},
        "cors_origins": [],
        "limits": {"u0": {"rpm": 1_000_000, "tpm": 1_000_000_000}},  # counted, never hit
        "ingress_replicas": 1,
    }


def chat(client: httpx.Client, url: str, key: str | None) -> float:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    t = time.perf_counter()
    r = client.post(url, json=body, headers=headers, timeout=120)
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    return elapsed


def until_ready(client: httpx.Client, url: str, key: str | None, limit_s: float = 900) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chat(client, url, key)
            return
        except httpx.HTTPError:
            time.sleep(1)
    raise RuntimeError(f"{url} never answered")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=200)
    args = parser.parse_args()

    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    from argus.cluster.ray_client import build

    tmp = Path(tempfile.mkdtemp(prefix="argus-bench-"))
    source = prepare_demo_model(tmp / "storage").path
    engine = EngineSettings(EngineMode.CPU, None, 1, str(tmp / "hf-home"))
    spec = ResolvedServingSpec.from_stored(
        {
            "model_id": "smol",
            "model_source": str(source),
            "num_replicas": 1,
            "gpus_per_replica": 1,
            "engine_kwargs": {"max_model_len": 512},
        }
    )
    llm_config = build_llm_config(MODEL, spec, engine)
    keys = [f"argus_key_{i:012x}_{secrets.token_urlsafe(32)}" for i in range(1000)]
    port = free_port()
    ray.init(
        num_cpus=8,
        namespace="argus-bench",
        log_to_driver=False,
        _temp_dir=str(Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))),
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        plain_url = f"http://127.0.0.1:{port}/plain/v1/chat/completions"
        argus_url = f"http://127.0.0.1:{port}/argus/v1/chat/completions"
        serve._run(
            build_openai_app({"llm_configs": [LLMConfig.model_validate(llm_config)]}),
            name="plain",
            route_prefix="/plain",
            _blocking=False,
        )
        serve._run(
            build([ModelDeployment(MODEL, llm_config)], table(keys)),
            name="argus",
            route_prefix="/argus",
            _blocking=False,
        )
        key = keys[0]
        with httpx.Client() as client:
            until_ready(client, plain_url, None)
            until_ready(client, argus_url, key)
            for _ in range(10):  # warm both paths
                chat(client, plain_url, None)
                chat(client, argus_url, key)
            plain: list[float] = []
            gated: list[float] = []
            per_round = max(1, args.chats // ROUNDS)
            for _ in range(ROUNDS):
                plain += [chat(client, plain_url, None) for _ in range(per_round)]
                gated += [chat(client, argus_url, key) for _ in range(per_round)]
            p50_plain, p50_gated = statistics.median(plain), statistics.median(gated)
            diff_ms = (p50_gated - p50_plain) * 1000
            print(f"{len(plain)} short chats each (1 token, demo model, CPU engine)")
            for name, got in (("Ray Serve LLM alone", plain), ("argus's ingress", gated)):
                p50, p95 = statistics.median(got) * 1000, pct(got, 0.95) * 1000
                print(f"  {name:<20} p50 {p50:.1f} ms  p95 {p95:.1f} ms")
            print(f"  p50 difference: {diff_ms:+.1f} ms (target: at most 2 ms)")

            # Revocation: the new table as argus pushes it (serve.run with the new user_config).
            started = time.monotonic()
            serve._run(
                build([ModelDeployment(MODEL, llm_config)], table(keys, frozenset({key}))),
                name="argus",
                route_prefix="/argus",
                _blocking=False,
            )
            pushed = time.monotonic() - started
            while True:
                try:
                    chat(client, argus_url, key)
                except httpx.HTTPStatusError as e:
                    if e.response.status_code == 401:
                        break
                time.sleep(0.05)
            refused = time.monotonic() - started
            print(
                f"a revoked key refused {refused:.2f} s after the push began "
                f"(the push itself {pushed:.2f} s; argus's tick adds up to one interval)"
            )
        return 0 if diff_ms <= 2.0 else 1
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
