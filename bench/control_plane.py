"""Control-plane speed: plan() over 1,000 models, and GET of a page of 50 out of 10,000.

Targets: plan() p50 under 50 ms; the page's p99 under 50 ms (through the real HTTP
server on loopback, SQLite on disk). Prints its figures; exits 1 if a target is missed.

    .venv/bin/python bench/control_plane.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from argus.cluster.serve_app import EngineMode, deployment_name
from argus.cluster.serve_client import DeploymentStatus, NodeResources, ServeObservation
from argus.config import load_settings
from argus.runtime.bootstrap import build_context
from argus.serving.llm_config import EngineSettings
from argus.serving.plan import LastApply, ModelRecord, plan
from argus.serving.spec import ResolvedServingSpec
from argus.store.schema import ServeModel
from argus.store.states import ServeState
from argus.store.users import create_user, issue_user_token
from argus.web import create_app


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_plan() -> float:
    engine = EngineSettings(EngineMode.GPU, "H20", 1, "/hf")
    models = []
    deps = {}
    for i in range(1000):
        model_id = f"u{i % 50}-202611281200-m{i}"
        spec = ResolvedServingSpec.from_stored(
            {"model_id": f"m{i}", "model_source": f"/private/hf/m{i}", "num_replicas": 1,
             "gpus_per_replica": 1, "engine_kwargs": {"max_model_len": 4096}})
        models.append(ModelRecord(f"k{i}", model_id, ServeState.RUNNING, 1, 1, 1, spec))
        deps[deployment_name(model_id)] = DeploymentStatus("HEALTHY", "", {"RUNNING": 1})
    nodes = tuple(NodeResources(f"n{i}", {"GPU": 8.0, "CPU": 64.0}, {"GPU": 0.0, "CPU": 30.0})
                  for i in range(125))
    observed = ServeObservation("RUNNING", "", deps, nodes)
    first = plan(models, observed, None, engine, 0.0)
    last = LastApply(0.0, first.app_hash, first.versions)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        p = plan(models, observed, last, engine, 100.0)
        times.append((time.perf_counter() - t) * 1000)
        assert not p.apply and not p.changes
    p50 = statistics.median(times)
    print(f"plan() over 1,000 RUNNING models on 125 nodes: p50 {p50:.1f} ms, "
          f"p95 {pct(times, 0.95):.1f} ms (target p50 < 50 ms)")
    return p50


def bench_list(tmp: Path) -> float:
    os.environ.pop("ARGUS_CONFIG", None)
    settings = load_settings(environ={"ARGUS_DATA_DIR": str(tmp), "ARGUS_PORT": "18099",
                                      "ARGUS_ADMIN_TOKEN": "argus_admin_" + "x" * 40})

    class NoRay:
        def ping(self) -> None:
            return None

    ctx = build_context(settings, ray=NoRay())
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with ctx.db.write() as s:
        create_user(s, "alice", t0)
        token = issue_user_token(s, "alice", t0).token
        for i in range(10_000):
            now = t0 + timedelta(seconds=i)
            s.add(ServeModel(
                model_key=f"mdl_{uuid.uuid4().hex[:20]}", user_id="alice",
                model_id_suffix=f"m{i}", model_id_prefix="alice-202601010000",
                model_id=f"alice-202601010000-m{i}", spec_yaml="model_id: m\n",
                resolved_spec={"model_id": f"m{i}", "model_source": "/x", "num_replicas": 1,
                               "gpus_per_replica": 1, "engine_kwargs": {}},
                state="RUNNING", generation=1, observed_generation=1, gpus=1,
                ready_replicas=1, created_at=now, updated_at=now))
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=18099,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    times = []
    with httpx.Client(base_url="http://127.0.0.1:18099",
                      headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(300):
            t = time.perf_counter()
            r = client.get("/api/v2/serve/models", params={"limit": 50, "offset": (i * 50) % 9950})
            times.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and len(r.json()["items"]) == 50
    server.should_exit = True
    thread.join(5)
    p99 = pct(times, 0.99)
    print(f"GET /api/v2/serve/models page of 50 of 10,000 (HTTP, SQLite): "
          f"p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms (target p99 < 50 ms)")
    return p99


def main() -> int:
    plan_p50 = bench_plan()
    with tempfile.TemporaryDirectory() as tmp:
        list_p99 = bench_list(Path(tmp))
    ok = plan_p50 < 50 and list_p99 < 50
    print("control plane targets:", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
