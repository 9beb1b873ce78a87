"""Serving for real: a Ray head, Ray Serve LLM, vLLM's CPU build, the demo model, the
official `openai` client. The tests run in order and share one cluster and one argus.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from argus.demo import DEMO_MODEL_DIRNAME
from argus.runtime.head import start_local_head, stop_local_head
from tests.e2e.conftest import DEMO, Stack

pytestmark = pytest.mark.e2e


def _spec(suffix: str, source: str = DEMO, replicas: int = 1) -> str:
    return (
        f"model_id: {suffix}\nmodel_source: {source}\nnum_replicas: {replicas}\n"
        "engine_kwargs:\n  max_model_len: 1024\n"
    )


def test_the_demo_model_serves_the_openai_api(stack: Stack) -> None:
    posted = stack.post_spec(_spec("smol"))
    stack.keys["smol"], stack.ids["smol"] = posted["model_key"], posted["model_id"]
    assert posted["state"] == "QUEUED"
    got = stack.wait(posted["model_key"], "RUNNING", timeout=600)
    assert got["serve_status"]["status"] == "HEALTHY"
    assert [e["event_type"] for e in reversed(got["events"])] == ["CREATED", "APPLIED", "READY"]

    client = stack.openai()
    assert posted["model_id"] in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=posted["model_id"],
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=posted["model_id"],
            temperature=0,
            max_tokens=24,
            stream=True,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        if chunk.choices
    ]
    assert len([p for p in pieces if p]) > 1  # really streamed, token by token
    assert "Paris" in "".join(pieces)


class Caller:
    """Calls a model in a loop from a thread and counts what came back."""

    def __init__(self, stack: Stack, model_id: str) -> None:
        self.client, self.model_id = stack.openai(), model_id
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
            time.sleep(0.3)

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(180)


def test_a_second_model_does_not_disturb_the_first(stack: Stack) -> None:
    first = stack.ids["smol"]
    pids = stack.settled_pids(first, 1)
    with Caller(stack, first) as caller:
        posted = stack.post_spec(_spec("smol2"))
        stack.keys["smol2"], stack.ids["smol2"] = posted["model_key"], posted["model_id"]
        stack.wait(posted["model_key"], "RUNNING", timeout=600)
    assert caller.failures == [] and caller.ok > 5
    assert stack.replica_pids(first) == pids
    assert {first, posted["model_id"]} <= {m.id for m in stack.openai().models.list()}


def test_scale_to_two_and_back_in_place(stack: Stack) -> None:
    key, model_id = stack.keys["smol"], stack.ids["smol"]
    (pid,) = stack.replica_pids(model_id)
    other = stack.replica_pids(stack.ids["smol2"])
    with Caller(stack, model_id) as caller:
        r = stack.call("PATCH", f"/api/v2/serve/models/{key}", json={"num_replicas": 2})
        assert r.status_code == 202 and r.json()["state"] == "RUNNING"
        stack.wait(key, "RUNNING", ready=2, timeout=600)
        assert pid in stack.replica_pids(model_id) and len(stack.replica_pids(model_id)) == 2
        r = stack.call("PATCH", f"/api/v2/serve/models/{key}", json={"num_replicas": 1})
        stack.wait(key, "RUNNING", ready=1, timeout=300)
    assert caller.failures == [] and caller.ok > 5
    assert stack.replica_pids(stack.ids["smol2"]) == other
    events = [e["event_type"] for e in reversed(stack.model(key)["events"])]
    assert events[-5:] == ["SCALED", "SCALE_APPLIED", "READY", "SCALED", "SCALE_APPLIED"]


def test_broken_weights_fail_while_the_others_serve(stack: Stack) -> None:
    broken = stack.storage / "users" / "alice" / "broken"
    broken.mkdir(parents=True)
    demo = stack.storage / "hf" / DEMO_MODEL_DIRNAME
    for f in demo.iterdir():
        if f.suffix != ".safetensors" and f.is_file():
            shutil.copy(f, broken / f.name)
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    pids = stack.settled_pids(stack.ids["smol"], 1)
    with Caller(stack, stack.ids["smol"]) as caller:
        posted = stack.post_spec(_spec("broken", "$HOME/broken"))
        got = stack.wait(posted["model_key"], "FAILED", timeout=600)
    summary = got["model"]["error_summary"]
    print("error_summary:", summary)
    print("serve message:", (got["serve_status"] or {}).get("message", "")[-3000:])
    assert summary and len(summary) <= 1000
    assert caller.failures == [] and caller.ok > 0
    assert stack.replica_pids(stack.ids["smol"]) == pids
    assert stack.model(stack.keys["smol"])["model"]["state"] == "RUNNING"
    assert posted["model_id"] not in [m.id for m in stack.openai().models.list()]


def test_delete_removes_it_from_the_openai_api(stack: Stack) -> None:
    key, model_id = stack.keys["smol2"], stack.ids["smol2"]
    assert stack.call("DELETE", f"/api/v2/serve/models/{key}").status_code == 202
    stack.wait(key, "DELETED", timeout=300)
    assert model_id not in [m.id for m in stack.openai().models.list()]
    assert stack.model(stack.keys["smol"])["model"]["state"] == "RUNNING"


def test_argus_killed_and_restarted_while_a_model_serves(stack: Stack) -> None:
    key, model_id = stack.keys["smol"], stack.ids["smol"]
    pids = stack.settled_pids(model_id, 1)
    events_before = stack.model(key)["events"]
    with Caller(stack, model_id) as caller:
        stack.kill_argus()
        dead_since = caller.ok
        time.sleep(6)  # argus is gone; the model answers anyway
        assert caller.ok > dead_since
        stack.start_argus()
        time.sleep(3)  # a few reconcile intervals
    assert caller.failures == []
    got = stack.model(key)
    assert got["model"]["state"] == "RUNNING"
    assert got["events"] == events_before  # adopted, nothing re-deployed
    assert stack.replica_pids(model_id) == pids


def test_a_restarted_ray_cluster_gets_the_model_back(stack: Stack) -> None:
    key, model_id = stack.keys["smol"], stack.ids["smol"]
    stack.stop_argus()
    stop_local_head()
    start_local_head(num_cpus=16, dashboard_host="127.0.0.1")
    stack.start_argus()
    got = stack.wait(key, "RUNNING", timeout=600)
    assert [e["event_type"] for e in reversed(got["events"])][-3:] == [
        "REDEPLOY",
        "APPLIED",
        "READY",
    ]
    reply = stack.openai().chat.completions.create(
        model=model_id,
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in (reply.choices[0].message.content or "")
