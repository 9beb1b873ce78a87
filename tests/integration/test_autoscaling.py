"""Autoscaling (issue 14) through the API, the reconciler and the pages, against a real
SQLite store and the steppable fake ServeClient (which moves replicas as Serve's
autoscaler would)."""

from __future__ import annotations

from typing import Any

import pytest

from argus.cluster.serve_client import NodeResources
from argus.runtime.loop import ControlLoop
from tests.conftest import spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api
from tests.integration.test_reconciler import events, model, post
from tests.integration.test_trust import patch_user

pytestmark = pytest.mark.integration
MODEL = "alice-202611281200-smol"
RANGE = "{min_replicas: 0, max_replicas: 2, target_ongoing_requests: 4, idle_seconds: 30}"


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice")


def view(api: Api, key: str) -> dict[str, Any]:
    got: dict[str, Any] = model(api, key)["model"]  # type: ignore[assignment]
    return got


def patch(api: Api, token: str, key: str, body: dict[str, Any]) -> Any:
    return api.client.patch(f"/api/v2/serve/models/{key}", json=body, headers=api.headers(token))


def test_a_model_follows_load_between_its_bounds_and_says_why(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice, autoscaling=RANGE)
    got = view(api, key)
    assert got["replicas"] == {"current": 0, "min": 0, "max": 2}
    assert got["autoscaling"]["target_ongoing_requests"] == 4
    rec.tick()
    scaling = fake._dep(MODEL).config["deployment_config"]["autoscaling_config"]  # type: ignore[index]
    assert scaling["min_replicas"] == 0 and scaling["max_replicas"] == 2  # type: ignore[index]
    assert scaling["target_ongoing_requests"] == 4  # type: ignore[index]
    assert scaling["downscale_to_zero_delay_s"] == 30.0  # type: ignore[index]
    fake.set_ready(MODEL)
    rec.tick()
    got = view(api, key)
    assert (got["state"], got["ready_replicas"], got["scaled_to_zero"]) == ("RUNNING", 0, True)
    fake.autoscale(MODEL, 1)  # the first request came
    rec.tick()
    fake.autoscale(MODEL, 2)  # more load
    rec.tick()
    assert view(api, key)["replicas"]["current"] == 2
    fake.autoscale(MODEL, 0)  # idle
    rec.tick()
    got = model(api, key)
    scaled = [e["payload"] for e in reversed(got["events"]) if e["event_type"] == "AUTOSCALED"]  # type: ignore[attr-defined]
    assert scaled == [
        {"from": 0, "to": 1, "reason": "load"},
        {"from": 1, "to": 2, "reason": "load"},
        {"from": 2, "to": 0, "reason": "idle"},
    ]
    assert got["model"]["scaled_to_zero"] is True  # type: ignore[index]
    assert len(fake.apply_calls) == 1  # Serve moved it; argus applied nothing


def test_patch_switches_between_a_count_and_a_range_in_place(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice)
    rec.tick()
    fake.set_ready(MODEL)
    rec.tick()
    code = fake._dep(MODEL).generation
    r = patch(api, alice, key, {"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    assert r.status_code == 202, r.text
    assert r.json()["replicas"] == {"current": 1, "min": 1, "max": 3}
    rec.tick()
    config = fake._dep(MODEL).config["deployment_config"]
    assert "num_replicas" not in config  # type: ignore[operator]
    assert config["autoscaling_config"]["target_ongoing_requests"] == 8  # type: ignore[index]
    assert fake._dep(MODEL).generation == code  # no replica restarted
    assert patch(api, alice, key, {"num_replicas": 2}).json()["autoscaling"] is None
    rec.tick()
    assert fake._dep(MODEL).config["deployment_config"]["num_replicas"] == 2  # type: ignore[index]
    assert fake._dep(MODEL).generation == code
    assert events(api, key)[-4:] == ["SCALED", "SCALE_APPLIED", "SCALED", "SCALE_APPLIED"]
    payloads = [e["payload"] for e in model(api, key)["events"] if e["event_type"] == "SCALED"]  # type: ignore[attr-defined]
    assert payloads[-1]["replicas_from"] == 1  # type: ignore[index]
    assert payloads[-1]["replicas_to"]["max_replicas"] == 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"autoscaling": "{max_replicas: 2, min_replicas: 3}"}, "autoscaling", "is more than"),
        ({"autoscaling": "{max_replicas: 2}", "num_replicas": 2}, "(top level)", "not both"),
        ({"autoscaling": "{max_replicas: 2, idle: 5}"}, "autoscaling.idle", "idle_seconds"),
        ({"autoscaling": "{max_replicas: 99}"}, "autoscaling.max_replicas", "cluster allows"),
        ({"autoscaling": "{min_replicas: 0}"}, "autoscaling.max_replicas", "is required"),
        ({"autoscaling": "{max_replicas: 2, idle_seconds: 0}"}, "autoscaling.idle_seconds", "5"),
        ({"autoscaling": "{max_replicas: '2'}"}, "autoscaling.max_replicas", "whole number"),
        ({"autoscaling": "[0, 2]"}, "autoscaling", "mapping"),
        ({"autoscaling": "{max_replicas: 2, min_replicas: -1}"}, "autoscaling.min_replicas", "0"),
    ],
)
def test_a_bad_range_is_a_422_that_names_the_field(
    api: Api, alice: str, extra: dict[str, str], field: str, words: str
) -> None:
    r = api.post_spec(alice, spec_yaml(**extra))
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert [d["field"] for d in details] == [field], details
    assert words in details[0]["message"]
    assert api.client.get("/api/v2/serve/models", headers=api.headers(alice)).json()["total"] == 0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"autoscaling": {"max_replicas": 2}, "num_replicas": 2}, 422, "not both"),
        ({"autoscaling": {"max_replicas": 2, "min_replicas": 5}}, 422, "is more than"),
        ({"autoscaling": {"max_replicas": 2, "nope": 1}}, 422, "autoscaling.nope"),
        ({"autoscaling": None}, 422, "mapping"),
        ({"autoscaling": {"max_replicas": 2**70}}, 422, "cluster allows"),
        ({"autoscaling": [[[]]]}, 422, "mapping"),
    ],
)
def test_a_bad_patch_is_refused_and_changes_nothing(
    api: Api, alice: str, body: dict[str, Any], status: int, words: str
) -> None:
    key = post(api, alice, num_replicas=2)
    r = patch(api, alice, key, body)
    assert r.status_code == status, r.text
    assert words in r.text
    got = view(api, key)
    assert (got["target_replicas"], got["autoscaling"], got["generation"]) == (2, None, 1)


def test_quotas_count_the_most_an_autoscaled_model_may_hold(api: Api, alice: str) -> None:
    patch_user(api, "alice", max_gpus=3, max_replicas=3)
    r = api.post_spec(alice, spec_yaml(autoscaling="{min_replicas: 0, max_replicas: 4}"))
    assert r.status_code == 409
    assert "alice may run at most 3 replicas of one model; this asks 4" in r.text
    key = post(api, alice, autoscaling="{min_replicas: 0, max_replicas: 3}")
    assert view(api, key)["gpus"] == 3  # its ceiling, though it holds none now
    r = api.post_spec(alice, spec_yaml("other"))
    assert r.status_code == 409 and "alice holds 3 of 3 GPUs; this asks 1" in r.text


def test_at_zero_without_room_requests_get_503_until_there_is_room(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    fake.nodes = [NodeResources("node-1", {"CPU": 4.0}, {"CPU": 4.0})]
    key = post(api, alice, autoscaling=RANGE)
    rec.tick()
    fake.set_ready(MODEL)
    rec.tick()
    assert "no_room" not in fake.gate  # 4 CPUs free: a replica (3) fits
    node = fake.hold({"CPU": 3.0})  # another user's task takes them
    assert node is not None
    rec.tick()
    assert fake.gate["no_room"] == [MODEL]  # the ingress answers 503 with Retry-After
    rec.tick()
    assert events(api, key)[-1] == "NO_ROOM"
    assert events(api, key).count("NO_ROOM") == 1
    api.client.cookies.set("argus_token", alice, path="/ui")
    page = api.client.get(f"/ui/serving/{key}").text
    assert "Scaled to zero while idle" in page and "503" in page
    fake.release(node, {"CPU": 3.0})
    rec.tick()
    assert "no_room" not in fake.gate
    assert "(0\u20132, autoscaled, scaled to zero)" in api.client.get("/ui/serving").text
