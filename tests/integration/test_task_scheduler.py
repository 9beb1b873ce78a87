"""Training tasks through the reconciler's tick, against the fake Serve and job clients.

The two fakes share one node's resources, as Ray's do: a running job's driver and a
running replica each hold theirs, so these tests show serving and training drawing
on one count of GPUs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from argus.cluster.serve_client import NodeResources
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from tests.conftest import spec_yaml
from tests.fake_cluster import FakeJobClient, FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration

GPU_NODE = {"CPU": 16.0, "GPU": 2.0, "accelerator_type:H20": 1.0}
CHAT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}


@pytest.fixture
def gpu_api(api_factory: Callable[..., Api]) -> Api:
    api = api_factory(ARGUS_ENGINE="gpu", ARGUS_ACCELERATOR_TYPE="H20")
    path = api.storage_root / "datasets" / "demo-chat" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(CHAT) + "\n")
    return api


@pytest.fixture
def serve() -> FakeServeClient:
    return FakeServeClient(nodes=[NodeResources("node-1", dict(GPU_NODE), dict(GPU_NODE))])


@pytest.fixture
def jobs(serve: FakeServeClient) -> FakeJobClient:
    return FakeJobClient(serve=serve)


def make_rec(api: Api, serve: FakeServeClient, jobs: FakeJobClient) -> ControlLoop:
    r = build_loop(api.settings, api.ctx.db, serve, jobs)
    r.clock = lambda: datetime.now(UTC)
    api.ctx.status = r.status
    return r


@pytest.fixture
def rec(gpu_api: Api, serve: FakeServeClient, jobs: FakeJobClient) -> ControlLoop:
    return make_rec(gpu_api, serve, jobs)


def submit(api: Api, token: str, name: str = "t", **fields: object) -> str:
    body = {
        "name": name,
        "workload": "command",
        "entrypoint": "python train.py",
        "gpus_per_node": 1,
        **fields,
    }
    r = api.client.post(
        "/api/v2/tasks",
        content="".join(f"{k}: {json.dumps(v)}\n" for k, v in body.items()).encode(),
        headers={**api.headers(token), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


def task(api: Api, task_id: str) -> dict[str, Any]:
    r = api.client.get(f"/api/v2/tasks/{task_id}", headers=api.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def state(api: Api, task_id: str) -> str:
    return str(task(api, task_id)["task"]["state"])


def events(api: Api, task_id: str) -> list[str]:
    return [e["event_type"] for e in reversed(task(api, task_id)["events"])]


def job_of(task_id: str) -> str:
    return f"argus-{task_id}"


def test_a_task_runs_to_success_with_one_event_per_transition(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice, gpus_per_node=2, cpus_per_node=4, env={"SEED": "1"})
    rec.tick()
    assert state(gpu_api, t) == "SUBMITTED"
    sub = jobs.submitted[job_of(t)].submission
    assert (sub.num_gpus, sub.num_cpus) == (2.0, 4.0)
    assert sub.resources == {"accelerator_type:H20": 0.001}
    assert sub.env_vars["SEED"] == "1" and sub.env_vars["HF_HUB_OFFLINE"] == "1"
    assert sub.env_vars["ARGUS_TASK_DIR"].endswith(f"/users/alice/tasks/{t}")
    assert "argus.training.launch" in sub.entrypoint and "python train.py" in sub.entrypoint
    assert (gpu_api.storage_root / "users" / "alice" / "tasks" / t).is_dir()
    jobs.start(job_of(t))
    rec.tick()
    got = task(gpu_api, t)
    assert got["task"]["state"] == "RUNNING" and got["task"]["started_at"]
    assert got["ray_job"]["status"] == "RUNNING"
    jobs.finish(job_of(t))
    rec.tick()
    rec.tick()
    assert state(gpu_api, t) == "SUCCEEDED"
    assert events(gpu_api, t) == ["CREATED", "SUBMITTED", "STARTED", "SUCCEEDED"]
    assert task(gpu_api, t)["task"]["finished_at"]


def test_a_failed_task_shows_the_reason(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice)
    rec.tick()
    jobs.start(job_of(t))
    jobs.finish(
        job_of(t),
        exit_code=1,
        message=(
            "Job entrypoint command failed with exit code 1, last available logs (truncated "
            'to 20,000 chars):\nTraceback (most recent call last):\n  File "train.py", line 3\n'
            "ValueError: train.jsonl line 7 is not JSON\n"
        ),
    )
    rec.tick()
    got = task(gpu_api, t)["task"]
    assert got["state"] == "FAILED"
    assert "exit code 1" in got["error_summary"]
    assert "ValueError: train.jsonl line 7 is not JSON" in got["error_summary"]


def test_cancel_a_running_task_stops_its_job(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient, serve: FakeServeClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice, gpus_per_node=2)
    rec.tick()
    jobs.start(job_of(t))
    rec.tick()
    jobs.stop_takes_effect = False  # Ray takes a moment to stop a job
    r = gpu_api.client.post(f"/api/v2/tasks/{t}:cancel", headers=gpu_api.headers(alice))
    assert r.status_code == 202
    assert r.json()["state"] == "RUNNING" and r.json()["cancel_requested"] is True
    rec.tick()
    assert jobs.stop_calls == [job_of(t)] and state(gpu_api, t) == "RUNNING"
    jobs.stop_takes_effect = True
    rec.tick()  # stops it again; Ray reports STOPPED on the next look
    rec.tick()
    assert state(gpu_api, t) == "CANCELED"
    assert events(gpu_api, t)[-2:] == ["CANCEL_REQUESTED", "CANCELED"]
    assert serve.observe("argus-llm").nodes[0].available["GPU"] == 2.0  # freed
    again = gpu_api.client.post(f"/api/v2/tasks/{t}:cancel", headers=gpu_api.headers(alice))
    assert again.status_code == 409


def test_a_task_waits_while_a_model_holds_the_gpus_and_starts_when_it_is_deleted(
    gpu_api: Api, rec: ControlLoop, serve: FakeServeClient, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    r = gpu_api.post_spec(alice, spec_yaml(model_id="big", gpus_per_replica=2))
    key = r.json()["model_key"]
    rec.tick()
    serve.set_ready("alice-202611281200-big")
    rec.tick()
    t = submit(gpu_api, alice, gpus_per_node=1)
    rec.tick()
    rec.tick()
    assert state(gpu_api, t) == "QUEUED" and not jobs.submitted
    pending = [e for e in task(gpu_api, t)["events"] if e["event_type"] == "PENDING_RESOURCES"]
    assert len(pending) == 1  # reported once, not every tick
    assert pending[0]["payload"]["needs"]["GPU"] == 1.0
    assert pending[0]["payload"]["free"]["node-1"]["GPU"] == 0.0
    gpu_api.client.delete(f"/api/v2/serve/models/{key}", headers=gpu_api.headers(alice))
    rec.tick()  # Serve drops the model
    rec.tick()  # the model is DELETED; its GPUs are free
    rec.tick()
    assert state(gpu_api, t) == "SUBMITTED"


def test_a_model_waits_while_a_task_holds_the_gpus(
    gpu_api: Api, rec: ControlLoop, serve: FakeServeClient, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice, gpus_per_node=2)
    rec.tick()
    # Submitted but not yet started: Ray shows the GPUs free, argus counts them as taken.
    key = gpu_api.post_spec(alice, spec_yaml(model_id="m")).json()["model_key"]
    rec.tick()
    model = gpu_api.client.get(f"/api/v2/serve/models/{key}", headers=gpu_api.headers()).json()
    assert model["model"]["state"] == "QUEUED"
    assert [e["event_type"] for e in reversed(model["events"])] == ["CREATED", "PENDING_RESOURCES"]
    jobs.start(job_of(t))
    rec.tick()
    assert not serve.apply_calls  # the running task holds both GPUs
    jobs.finish(job_of(t))
    rec.tick()
    rec.tick()
    assert serve.apply_calls == [["alice-202611281200-m"]]


def test_first_in_first_out_per_user(gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient) -> None:
    alice, bob = gpu_api.new_user("alice", commands=True), gpu_api.new_user("bob", commands=True)
    running = submit(gpu_api, alice, "running", gpus_per_node=1)
    rec.tick()
    jobs.start(job_of(running))
    gpu_api.clock.advance(seconds=1)
    big = submit(gpu_api, alice, "big", gpus_per_node=2)  # waits for the running one
    gpu_api.clock.advance(seconds=1)
    small = submit(gpu_api, alice, "small", gpus_per_node=1)  # would fit, but is behind big
    gpu_api.clock.advance(seconds=1)
    bobs = submit(gpu_api, bob, "bobs", gpus_per_node=1)  # another user's: not held back
    rec.tick()
    assert (state(gpu_api, big), state(gpu_api, small), state(gpu_api, bobs)) == (
        "QUEUED",
        "QUEUED",
        "SUBMITTED",
    )


def test_restarted_argus_re_adopts_running_tasks_and_fails_vanished_ones(
    gpu_api: Api, serve: FakeServeClient, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    first = make_rec(gpu_api, serve, jobs)
    kept, lost = submit(gpu_api, alice, "kept"), submit(gpu_api, alice, "lost")
    first.tick()
    jobs.start(job_of(kept))
    jobs.start(job_of(lost))
    first.tick()
    # argus stops; meanwhile the job of "lost" vanishes (its Ray cluster forgot it).
    jobs.vanish(job_of(lost))
    second = make_rec(gpu_api, serve, jobs)
    second.tick()
    assert state(gpu_api, kept) == "RUNNING"
    got = task(gpu_api, lost)["task"]
    assert got["state"] == "FAILED" and "is gone" in got["error_summary"]
    jobs.finish(job_of(kept))
    second.tick()
    assert state(gpu_api, kept) == "SUCCEEDED"


def test_a_job_submitted_before_a_crash_is_adopted_not_submitted_twice(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice)
    # argus submitted the job, then died before recording SUBMITTED:
    from argus.training.spec import ResolvedTaskSpec
    from argus.training.submission import build_submission

    record = task(gpu_api, t)
    assert record["task"]["state"] == "QUEUED"
    launch = rec.tasks.launch  # type: ignore[union-attr]
    jobs.submit(
        build_submission(
            t,
            "alice",
            job_of(t),
            ResolvedTaskSpec.from_stored(
                {
                    "name": "t",
                    "workload": "command",
                    "entrypoint": "x",
                    "cpus_per_node": 1,
                    "gpus_per_node": 1,
                }
            ),
            launch,
        )
    )
    rec.tick()
    assert state(gpu_api, t) == "SUBMITTED"
    assert len(jobs.submitted) == 1
    adopted = [e for e in task(gpu_api, t)["events"] if e["event_type"] == "SUBMITTED"]
    assert adopted[0]["payload"]["adopted"] is True


def test_job_api_down_leaves_tasks_alone_and_serving_goes_on(
    gpu_api: Api, rec: ControlLoop, serve: FakeServeClient, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice)
    jobs.reachable = False
    key = gpu_api.post_spec(alice, spec_yaml(model_id="m")).json()["model_key"]
    report = rec.tick()
    assert report.error is None
    assert state(gpu_api, t) == "QUEUED"
    model = gpu_api.client.get(f"/api/v2/serve/models/{key}", headers=gpu_api.headers()).json()
    assert model["model"]["state"] == "DEPLOYING"
    status = gpu_api.client.get("/api/v2/serve/status", headers=gpu_api.headers()).json()
    assert "did not answer" in status["tasks"]["job_api_error"]
    jobs.reachable = True
    rec.tick()
    assert state(gpu_api, t) == "SUBMITTED"


def test_a_submission_ray_keeps_refusing_fails_the_task(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    alice = gpu_api.new_user("alice", commands=True)
    t = submit(gpu_api, alice)
    jobs.submit_error = "runtime_env is invalid"
    for _ in range(3):
        rec.tick()
    got = task(gpu_api, t)["task"]
    assert got["state"] == "FAILED" and "runtime_env is invalid" in got["error_summary"]


def test_a_task_beyond_its_owners_gpu_quota_waits_with_the_reason(
    gpu_api: Api, rec: ControlLoop, jobs: FakeJobClient, serve: FakeServeClient
) -> None:
    """The cluster has room (2 GPUs free); alice's quota of 2 is what holds the task back."""
    alice = gpu_api.new_user("alice", commands=True)
    r = gpu_api.client.patch("/api/v2/users/alice", json={"max_gpus": 2}, headers=gpu_api.headers())
    assert r.status_code == 200
    first = submit(gpu_api, alice, name="a", gpus_per_node=1)
    gpu_api.clock.advance(seconds=1)  # first in, first out: the order is the creation time
    second = submit(gpu_api, alice, name="b", gpus_per_node=2)
    rec.tick()
    assert state(gpu_api, first) == "SUBMITTED"
    assert state(gpu_api, second) == "QUEUED"
    waiting = task(gpu_api, second)["events"][0]
    assert waiting["event_type"] == "PENDING_QUOTA"
    assert waiting["payload"]["reason"] == (
        "alice holds 1 of 2 GPUs; this task asks 2 (models 0, tasks 1); "
        "it starts when enough are free"
    )
    rec.tick()
    assert events(gpu_api, second) == ["CREATED", "PENDING_QUOTA"]  # said once
    jobs.start(job_of(first))
    jobs.finish(job_of(first))
    rec.tick()
    rec.tick()
    assert state(gpu_api, second) == "SUBMITTED"
    # a task that asks more than the quota could ever give is refused at once
    r = gpu_api.client.post(
        "/api/v2/tasks",
        content=b"name: big\nworkload: command\nentrypoint: x\ngpus_per_node: 3\n",
        headers={**gpu_api.headers(alice), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 409 and "could never start" in r.text
