"""Serving for real: a Ray head, Ray Serve LLM, vLLM's CPU build, the demo model, the
official `openai` client. The session's `smol` model is shared; what a test adds it removes.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
import pytest

from argus.demo import DEMO_MODEL_DIRNAME
from tests.e2e.conftest import TINY, Stack

pytestmark = pytest.mark.e2e


def wait_until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.5)


def _spec(suffix: str, source: str = TINY, replicas: int = 1) -> str:
    return (
        f"model_id: {suffix}\nmodel_source: {source}\nnum_replicas: {replicas}\n"
        "engine_kwargs:\n  max_model_len: 512\n"
    )


def test_the_demo_model_serves_the_openai_api(stack: Stack, smol: tuple[str, str]) -> None:
    key, model_id = smol
    got = stack.model(key)
    assert got["serve_status"]["status"] == "HEALTHY"
    assert [e["event_type"] for e in reversed(got["events"])][:3] == ["CREATED", "APPLIED", "READY"]

    client = stack.openai()
    assert model_id in [m.id for m in client.models.list()]
    assert "Paris" in stack.chat(model_id)
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=model_id,
            temperature=0,
            max_tokens=24,
            stream=True,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        if chunk.choices
    ]
    assert len([p for p in pieces if p]) > 1  # really streamed, token by token
    assert "Paris" in "".join(pieces)

    # The engine started without Ray Serve LLM's download task (argus.cluster.engine_start).
    ray_logs = Path(stack.env["ARGUS_RAY_TEMP_DIR"]).glob(f"session_*/logs/serve/*{model_id}_*.log")
    replica_log = "".join(p.read_text(errors="replace") for p in ray_logs)
    assert "Started vLLM engine" in replica_log
    assert "download model files" not in replica_log


class Caller:
    """Calls a model every `every` seconds from a thread and counts what came back. Seldom:
    after each step vLLM's worker and engine core each spin on their queue for a second
    (its SpinCondition), so a call costs two seconds of CPU however short it is. A call a
    second kept a core busy (the worker took 186 s of CPU in this module); one every 3 s
    through the autoscaling test still cost the first model's engine 92 s of CPU, taken
    from the engines that started meanwhile."""

    def __init__(self, stack: Stack, model_id: str, every: float) -> None:
        self.client, self.model_id, self.every = stack.openai(), model_id, every
        self.ok, self.failures = 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.chat.completions.create(
                    model=self.model_id, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
                )
                self.ok += 1
            except Exception as e:
                self.failures.append(repr(e))
            self._stop.wait(self.every)

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(180)


class Load:
    """`threads` callers of one model, each with a request always in flight."""

    def __init__(self, stack: Stack, model_id: str, key: str, threads: int = 4) -> None:
        self.client, self.model_id = stack.openai(key), model_id
        self.ok, self.failures = 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.chat.completions.create(
                    model=self.model_id,
                    max_tokens=64,
                    messages=[{"role": "user", "content": "Tell me a story."}],
                )
                self.ok += 1
            except Exception as e:
                self.failures.append(repr(e))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(180)


def hi(client: openai.OpenAI, model_id: str) -> Any:
    return client.chat.completions.create(
        model=model_id, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )


def free_cpus(stack: Stack) -> float:
    """The CPUs Ray reports available on the stack's one node, as the admin status shows."""
    nodes = stack.call("GET", "/api/v2/serve/status", stack.admin).json()["nodes"]
    return float(sum(n["available"].get("CPU", 0.0) for n in nodes))


def replicas_in_serve(stack: Stack, key: str) -> int:
    """The model's replicas in Serve, whatever their state (a STARTING one counts)."""
    replicas = (stack.model(key).get("serve_status") or {}).get("replicas") or {}
    return int(sum(replicas.values()))


def test_a_second_users_model_scales_in_place_is_suspended_with_its_owner_and_comes_back(
    stack: Stack, smol: tuple[str, str]
) -> None:
    """Another user's model: made autoscaled in place, taken to two replicas by load and to
    zero when idle (its CPUs given back); its owner disabled (their task is cancelled, the
    model leaves Serve) and enabled again (it comes back as it was, at zero); refused with
    503 while a task holds the room its next replica needs, brought back by the next request
    once the task ends, fixed at one replica again in place. The first model's replica keeps
    its pid and answers every call throughout. (Three engine starts: the owner is disabled
    at zero, so enabling him starts none.)"""
    first = smol[1]
    pids = stack.settled_pids(first, 1)
    dave = stack.new_user("dave", allow_commands=True)
    with Caller(stack, first, every=10) as caller:
        posted = stack.post_spec(_spec("second"), dave)
        key, model_id = posted["model_key"], posted["model_id"]
        task_id = stack.post_task("name: long\nworkload: command\nentrypoint: sleep 600\n", dave)[
            "task_id"
        ]
        stack.wait(key, "RUNNING", timeout=600)
        (pid,) = stack.settled_pids(model_id, 1)
        stack.wait_task(task_id, "RUNNING", timeout=120)  # what it holds is held from here on

        # Load brings a second replica, with idle_seconds 60 meanwhile. The load ends once
        # Serve has decided on the replica, so that it starts on an idle machine: under load
        # its engine took 78 s to start, against 19 s idle. 60 s keeps Serve from taking it
        # back before it is up. The load starts before the PATCH: an idle model with
        # min_replicas 0 may go to zero at once (a clean run saw Serve take the replica away
        # 1 s after the PATCH, and start another).
        def autoscale(idle_seconds: int) -> dict[str, Any]:
            scaling = {"min_replicas": 0, "max_replicas": 2, "target_ongoing_requests": 1}
            r = stack.call(
                "PATCH",
                f"/api/v2/serve/models/{key}",
                dave,
                json={"autoscaling": {**scaling, "idle_seconds": idle_seconds}},
            )
            assert r.status_code == 202, r.text
            body: dict[str, Any] = r.json()
            return body

        with Load(stack, model_id, dave) as load:
            wait_until(lambda: load.ok >= 4, 60)
            assert autoscale(60)["replicas"] == {"current": 1, "min": 0, "max": 2}
            wait_until(lambda: replicas_in_serve(stack, key) >= 2, 120)
        assert load.failures == [] and load.ok > 4
        stack.wait(key, "RUNNING", ready=2, timeout=300)
        assert pid in stack.settled_pids(model_id, 2)  # scaled in place, no restart
        busy = free_cpus(stack)
        # idle_seconds 5, its least, in place: Serve gives both idle replicas back.
        autoscale(5)
        stack.wait(key, "RUNNING", ready=0, timeout=300)
        stack.settled_pids(model_id, 0)
        # Both replicas' bundles are free again (2 CPUs each: its engine and its actor).
        wait_until(lambda: free_cpus(stack) == busy + 4, 60)
        assert stack.model(key)["model"]["scaled_to_zero"] is True
        assert model_id in {m.id for m in stack.openai(dave).models.list()}

        # Disabling dave stops his use of the cluster at once: his task is cancelled and his
        # model leaves Serve, replicas or none.
        r = stack.call("PATCH", "/api/v2/users/dave", stack.admin, json={"disabled": True})
        assert r.status_code == 200
        assert stack.call("GET", "/api/v2/me", dave).status_code == 401
        assert stack.model(key)["model"]["state"] == "SUSPENDED"
        assert stack.wait_task(task_id, "CANCELED", timeout=120)["ray_job"]["status"] == "STOPPED"
        listed = stack.openai(stack.admin).models.list
        wait_until(lambda: model_id not in [m.id for m in listed()], 120)
        # Enabling him brings the model back, unasked, as it was: autoscaled, at zero.
        r = stack.call("PATCH", "/api/v2/users/dave", stack.admin, json={"disabled": False})
        assert r.status_code == 200
        got = stack.wait(key, "RUNNING", ready=0, timeout=300)
        assert got["model"]["scaled_to_zero"] is True
        wait_until(lambda: model_id in {m.id for m in stack.openai(dave).models.list()}, 120)
        assert stack.replica_pids(model_id) == set()

        # No room at zero: a task holds the CPUs its next replica needs. A request gets 503
        # with Retry-After at once, not a wait without end, until the task ends.
        hog = stack.post_task(
            f"name: hog\nworkload: command\ncpus_per_node: {int(free_cpus(stack)) - 1}\n"
            "entrypoint: sleep 600\n",
            dave,
        )["task_id"]
        stack.wait_task(hog, "RUNNING", timeout=120)
        wait_until(lambda: stack.model(key)["events"][0]["event_type"] == "NO_ROOM", 30)
        time.sleep(3)  # the ingress is reconfigured in place
        with pytest.raises(openai.InternalServerError) as refused:
            hi(stack.openai(dave).with_options(timeout=30), model_id)
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "30"
        assert refused.value.response.json()["error"]["code"] == "model_scaled_to_zero_no_room"
        r = stack.call("POST", f"/api/v2/tasks/{hog}:cancel", dave)
        assert r.status_code == 202, r.text
        stack.wait_task(hog, "CANCELED", timeout=120)
        # Room again: the next request waits while a replica starts, and is answered.
        started, answer = time.monotonic(), None
        while answer is None:
            assert time.monotonic() - started < 60, "still refused a minute after the task ended"
            try:
                started, answer = time.monotonic(), hi(stack.openai(dave), model_id)
            except openai.InternalServerError as e:
                assert e.status_code == 503
                time.sleep(1)
        print(f"first answer after zero in {time.monotonic() - started:.1f} s")
        assert answer.choices
        stack.wait(key, "RUNNING", ready=1, timeout=120)
        (pid,) = stack.settled_pids(model_id, 1)
        r = stack.call("PATCH", f"/api/v2/serve/models/{key}", dave, json={"num_replicas": 1})
        assert r.status_code == 202 and r.json()["autoscaling"] is None
        applied = r.json()["generation"]
        wait_until(lambda: stack.model(key)["model"]["observed_generation"] == applied, 60)
        stack.wait(key, "RUNNING", ready=1, timeout=300)
        time.sleep(3)  # Serve has taken the count: a restart would show a new pid
        assert {first, model_id} <= {m.id for m in stack.openai(stack.admin).models.list()}
        assert stack.replica_pids(model_id) == {pid}
        stack.delete(key)
    assert caller.failures == [] and caller.ok > 5
    assert stack.replica_pids(first) == pids
    assert model_id not in [m.id for m in stack.openai(stack.admin).models.list()]
    history = list(reversed(stack.model(key)["events"]))
    events = [e["event_type"] for e in history]
    t0 = datetime.fromisoformat(history[0]["time"])
    print(
        "timeline:",
        ", ".join(
            f"{e['event_type']} {(datetime.fromisoformat(e['time']) - t0).total_seconds():.0f}"
            for e in history
        ),
    )
    assert events[3:5] == ["SCALED", "SCALE_APPLIED"], events  # to the range, in place
    assert events[5:8] == ["AUTOSCALED", "SCALED", "SCALE_APPLIED"], events  # idle_seconds 5
    away = events.index("SUSPENDED")
    assert set(events[8:away]) == {"AUTOSCALED"}, events  # down when idle
    assert events[away : away + 4] == ["SUSPENDED", "RESUMED", "APPLIED", "READY"], events
    fixed = events.index("SCALED", away)  # back to one replica, in place
    assert set(events[away + 4 : fixed]) == {"AUTOSCALED", "NO_ROOM"}, events
    assert events.count("NO_ROOM") == 1, events
    assert events[fixed:] == ["SCALED", "SCALE_APPLIED", "DELETE_REQUESTED", "REMOVED"], events
    moves = [
        (e["payload"]["from"], e["payload"]["to"], e["payload"]["reason"])
        for e in history
        if e["event_type"] == "AUTOSCALED"
    ]
    assert moves[0] == (1, 2, "load") and moves[-1] == (0, 1, "load"), moves
    assert {reason for *_, reason in moves[1:-1]} == {"idle"} and moves[-2][1] == 0, moves


def test_a_broken_model_fails_alone_with_its_reason(stack: Stack, smol: tuple[str, str]) -> None:
    broken = stack.storage / "users" / "alice" / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    demo = stack.storage / "hf" / DEMO_MODEL_DIRNAME
    for f in demo.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, broken / f.name)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]  # vLLM refuses it at engine start
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    pids, ingress = stack.settled_pids(smol[1], 1), stack.ingress_pids()
    with Caller(stack, smol[1], every=5) as caller:
        posted = stack.post_spec(_spec("broken", "$HOME/broken"))
        got = stack.wait(posted["model_key"], "FAILED", timeout=600)
    summary = got["model"]["error_summary"]
    print("error_summary:", summary)
    assert summary and len(summary) <= 1000
    assert "NoSuchModelForCausalLM" in summary
    assert caller.failures == [] and caller.ok > 0
    assert stack.replica_pids(smol[1]) == pids
    assert stack.model(smol[0])["model"]["state"] == "RUNNING"
    # Out of the app at once, and out of /v1/models as soon as Serve has reconfigured the
    # ingress: a model added or removed replaces no ingress replica.
    listed = stack.openai(stack.admin).models.list
    wait_until(lambda: posted["model_id"] not in [m.id for m in listed()], 30)
    stack.delete(posted["model_key"])
    assert stack.ingress_pids() == ingress


def test_argus_killed_and_restarted_while_a_model_serves_and_a_task_runs(
    stack: Stack, smol: tuple[str, str]
) -> None:
    """One restart shows both: the model answers while argus is away and is adopted with
    no redeploy; the running task is found again by its Ray job id, nothing re-submitted,
    and can still be cancelled."""
    key, model_id = smol
    pids = stack.settled_pids(model_id, 1)
    head = stack.head_pid()
    events_before = stack.model(key)["events"]
    task_id = stack.post_task(
        "name: long\nworkload: command\nentrypoint: echo started; sleep 600\n"
    )["task_id"]
    running = stack.wait_task(task_id, "RUNNING", timeout=120)
    with Caller(stack, model_id, every=3) as caller:  # two answers while argus is away
        wait_until(lambda: caller.ok > 0, 120)  # it serves (a fresh ingress warms up first)
        stack.kill_argus()
        try:
            dead_since = caller.ok
            wait_until(lambda: caller.ok >= dead_since + 2, 20)  # argus is gone; it answers
        finally:
            stack.start_argus()  # whatever the check said: the next modules need argus
        time.sleep(3)  # a few reconcile intervals (a fresh argus has no grace after an apply)
    assert caller.failures == []
    got = stack.model(key)
    assert got["model"]["state"] == "RUNNING"
    assert got["events"] == events_before  # adopted, nothing re-deployed
    assert stack.replica_pids(model_id) == pids
    assert stack.head_pid() == head  # the restarted argus found its head

    again = stack.task(task_id)
    assert again["task"]["state"] == "RUNNING"
    assert again["events"] == running["events"]
    r = stack.call("POST", f"/api/v2/tasks/{task_id}:cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    done = stack.wait_task(task_id, "CANCELED", timeout=120)
    assert [e["event_type"] for e in reversed(done["events"])][-2:] == [
        "CANCEL_REQUESTED",
        "CANCELED",
    ]
    assert done["ray_job"]["status"] == "STOPPED"
    assert "started" in stack.call("GET", f"/api/v2/tasks/{task_id}/logs").text
    assert stack.call("POST", f"/api/v2/tasks/{task_id}:cancel").status_code == 409
