"""argus outlives its Ray head (issue 12): the head dies as a crash kills it; the API, the UI
and the store go on answering (only /readyz says 503), a spec posted meanwhile is stored,
argus's pid stays, and argus starts its head again and redeploys every model unasked.

The head is ended by killing its process tree (what an OOM kill or a crash does). Never
`ray stop`: that ends every Ray cluster of this user on the machine, a `make run` too.
"""

from __future__ import annotations

import time

import httpx
import pytest

from argus.runtime.head import LocalHead, stop_head
from tests.e2e.conftest import TINY, Stack

pytestmark = pytest.mark.e2e
READ_FOR_S = 90.0  # issue 12: every read route answers for 90 s, through the outage and the heal


def read_routes(stack: Stack, key: str) -> list[tuple[str, str]]:
    return [
        ("/healthz", ""),
        ("/api/v2/me", stack.token),
        ("/api/v2/serve/models", stack.token),
        (f"/api/v2/serve/models/{key}", stack.token),
        (f"/api/v2/serve/models/{key}/events", stack.token),
        ("/api/v2/tasks", stack.token),
        ("/api/v2/serve/status", stack.admin),
        ("/api/v2/users", stack.admin),
        ("/metrics", stack.admin),
    ]


def test_argus_outlives_its_ray_head_and_heals_it(stack: Stack, smol: tuple[str, str]) -> None:
    key, model_id = smol
    argus_pid, head_pid = stack.argus_pid(), stack.head_pid()
    address = f"127.0.0.1:{stack.env['ARGUS_RAY_PORT_BASE']}"
    stop_head(LocalHead(address, True, head_pid), grace_s=0)
    started = time.monotonic()
    unreachable_seen: dict[str, object] = {}
    during: dict[str, str] = {}
    page = httpx.Client(base_url=stack.api_url, timeout=10)
    page.cookies.set("argus_token", stack.token, path="/ui")
    while True:
        for path, token in read_routes(stack, key):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = stack.http.get(f"{stack.api_url}{path}", headers=headers, timeout=10)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        ui = page.get(f"/ui/serving/{key}")
        assert ui.status_code == 200
        ready = stack.http.get(f"{stack.api_url}/readyz", timeout=10)
        if ready.status_code == 503:
            reason = ready.json()["checks"]["ray"]
            assert reason.startswith("unreachable"), reason
            if reason.startswith("unreachable since "):
                unreachable_seen["readyz"] = reason
            listed = stack.call("GET", "/api/v2/serve/models").json()
            if listed["cluster"] is not None:
                unreachable_seen.setdefault("list", listed["cluster"])
            assert listed["items"][0]["state"] in ("RUNNING", "QUEUED", "DEPLOYING")
            if "Cluster unreachable" in ui.text:
                unreachable_seen["page"] = True
            if not during:
                posted = stack.post_spec(f"model_id: during\nmodel_source: {TINY}\n")
                assert posted["state"] == "QUEUED"
                during.update(key=posted["model_key"], model_id=posted["model_id"])
        else:
            assert ready.status_code == 200
        states = {stack.model(key)["model"]["state"]}
        if during:
            states.add(stack.model(during["key"])["model"]["state"])
        elapsed = time.monotonic() - started
        if during and states == {"RUNNING"} and elapsed >= READ_FOR_S:
            break
        assert elapsed < 600, states
        time.sleep(1)

    assert stack.argus_pid() == argus_pid and stack.proc is not None and stack.proc.poll() is None
    assert stack.head_pid() != head_pid  # argus started its head again, unasked
    assert unreachable_seen["list"]["reachable"] is False  # type: ignore[index]
    assert "readyz" in unreachable_seen
    assert unreachable_seen.get("page") is True
    assert "Paris" in stack.chat(model_id)
    assert (
        stack.openai()
        .chat.completions.create(
            model=during["model_id"], max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
        .choices
    )
    events = [e["event_type"] for e in reversed(stack.model(key)["events"])]
    assert events.count("CLUSTER_LOST") == 1 and events.count("CLUSTER_BACK") == 1
    assert events[-3:] == ["REDEPLOY", "APPLIED", "READY"]
    status = stack.call("GET", "/api/v2/serve/status", stack.admin).json()
    assert status["cluster"]["reachable"] is True
    assert status["ray_link"]["head"]["restarts"] >= 1
    stack.delete(during["key"])
