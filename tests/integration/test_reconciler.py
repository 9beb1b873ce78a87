"""The reconciler against a real SQLite store and the steppable fake ServeClient."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from argus.cluster.serve_app import INGRESS_DEPLOYMENT
from argus.cluster.serve_client import NodeResources
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from argus.store import serving as store
from tests.conftest import spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


def advance(r: ControlLoop, seconds: float) -> None:
    r.monotonic.t += seconds  # type: ignore[attr-defined]


def model(api: Api, key: str) -> dict[str, object]:
    return api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers()).json()


def state(api: Api, key: str) -> str:
    return str(model(api, key)["model"]["state"])  # type: ignore[index]


def events(api: Api, key: str) -> list[str]:
    return [e["event_type"] for e in reversed(model(api, key)["events"])]  # type: ignore[attr-defined]


def post(api: Api, token: str, suffix: str = "smol", **kw: object) -> str:
    r = api.post_spec(token, spec_yaml(model_id=suffix, **kw))
    assert r.status_code == 202, r.text
    return str(r.json()["model_key"])


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice")


def test_queued_deploying_running(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice)
    rec.tick()
    assert state(api, key) == "DEPLOYING"
    assert fake.apply_calls == [["alice-202611281200-smol"]]
    rec.tick()
    assert state(api, key) == "DEPLOYING"
    assert len(fake.apply_calls) == 1  # unchanged config: no second apply
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    got = model(api, key)
    assert got["model"]["state"] == "RUNNING"  # type: ignore[index]
    assert got["model"]["ready_replicas"] == 1  # type: ignore[index]
    assert got["model"]["observed_generation"] == 1  # type: ignore[index]
    assert got["serve_status"]["status"] == "HEALTHY"  # type: ignore[index]
    assert events(api, key) == ["CREATED", "APPLIED", "READY"]
    for _ in range(3):
        rec.tick()
    assert events(api, key) == ["CREATED", "APPLIED", "READY"]  # quiet when nothing changes


def test_scale_in_place_and_back(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice)
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    generation_before = fake._dep("alice-202611281200-smol").generation
    api.client.patch(
        f"/api/v2/serve/models/{key}", json={"num_replicas": 2}, headers=api.headers(alice)
    )
    rec.tick()
    got = model(api, key)["model"]
    assert (got["state"], got["ready_replicas"], got["target_replicas"]) == ("RUNNING", 1, 2)  # type: ignore[index]
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    assert model(api, key)["model"]["ready_replicas"] == 2  # type: ignore[index]
    api.client.patch(
        f"/api/v2/serve/models/{key}", json={"num_replicas": 1}, headers=api.headers(alice)
    )
    rec.tick()
    rec.tick()
    got = model(api, key)["model"]
    assert (got["state"], got["ready_replicas"]) == ("RUNNING", 1)  # type: ignore[index]
    assert fake._dep("alice-202611281200-smol").generation == generation_before
    assert events(api, key) == [
        "CREATED",
        "APPLIED",
        "READY",
        "SCALED",
        "SCALE_APPLIED",
        "READY",
        "SCALED",
        "SCALE_APPLIED",
    ]


def test_a_failing_model_does_not_hold_the_others(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    good, bad = post(api, alice, "good"), post(api, alice, "bad")
    rec.tick()
    fake.set_ready("alice-202611281200-good")
    fake.fail(
        "alice-202611281200-bad",
        "Traceback (most recent call last):\nsafetensors_rust.SafetensorError: Error while "
        "deserializing header: HeaderTooLarge",
    )
    rec.tick()
    got = model(api, bad)["model"]
    assert got["state"] == "FAILED"  # type: ignore[index]
    assert "SafetensorError: Error while deserializing header" in got["error_summary"]  # type: ignore[index,operator]
    assert state(api, good) == "RUNNING"
    assert fake.apply_calls[-1] == ["alice-202611281200-good"]
    # posting the spec again retries it
    api.post_spec(alice, spec_yaml(model_id="bad"))
    rec.tick()
    assert state(api, bad) == "DEPLOYING"
    assert fake.apply_calls[-1] == ["alice-202611281200-bad", "alice-202611281200-good"]


def test_delete_takes_it_out_then_marks_deleted(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    a, b = post(api, alice, "a"), post(api, alice, "b")
    rec.tick()
    fake.set_ready("alice-202611281200-a")
    fake.set_ready("alice-202611281200-b")
    rec.tick()
    api.client.delete(f"/api/v2/serve/models/{a}", headers=api.headers(alice))
    rec.tick()
    assert fake.apply_calls[-1] == ["alice-202611281200-b"]
    assert not fake.is_deployed("alice-202611281200-a")
    advance(rec, 60)
    rec.tick()
    assert state(api, a) == "DELETED"
    assert events(api, a)[-2:] == ["DELETE_REQUESTED", "REMOVED"]
    api.client.delete(f"/api/v2/serve/models/{b}", headers=api.headers(alice))
    rec.tick()
    assert fake.delete_calls == 1 and fake.app_name is None
    rec.tick()
    assert state(api, b) == "DELETED"
    rec.tick()
    assert fake.delete_calls == 1  # the app is not deleted twice


def test_not_enough_resources_waits_then_starts(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    fake.nodes = [NodeResources("n1", {"CPU": 3.0}, {"CPU": 3.0})]
    a = post(api, alice, "a")
    rec.tick()
    fake.set_ready("alice-202611281200-a")
    fake.nodes = [NodeResources("n1", {"CPU": 3.0}, {"CPU": 1.0})]
    b = post(api, alice, "b")
    rec.tick()
    rec.tick()
    assert state(api, b) == "QUEUED"
    assert events(api, b) == ["CREATED", "PENDING_RESOURCES"]
    api.client.delete(f"/api/v2/serve/models/{a}", headers=api.headers(alice))
    rec.tick()
    fake.nodes = [NodeResources("n1", {"CPU": 3.0}, {"CPU": 3.0})]
    advance(rec, 60)
    rec.tick()
    assert state(api, a) == "DELETED"
    rec.tick()
    assert state(api, b) == "DEPLOYING"


def test_lost_replica_is_visible_and_recovers(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice, num_replicas=2)
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    fake.lose_replicas("alice-202611281200-smol")
    rec.tick()
    got = model(api, key)
    assert (got["model"]["state"], got["model"]["ready_replicas"]) == ("RUNNING", 1)  # type: ignore[index]
    assert got["events"][0]["event_type"] == "DEGRADED"  # type: ignore[index]
    assert got["events"][0]["payload"]["ready"] == 1  # type: ignore[index]
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    assert model(api, key)["model"]["ready_replicas"] == 2  # type: ignore[index]
    assert events(api, key)[-1] == "READY"


def test_a_restarted_argus_adopts_the_running_app(
    api: Api, fake: FakeServeClient, alice: str
) -> None:
    first = build_loop(api.settings, api.ctx.db, fake)
    key = post(api, alice)
    first.tick()
    fake.set_ready("alice-202611281200-smol")
    first.tick()
    before = fake._dep("alice-202611281200-smol")
    second = build_loop(api.settings, api.ctx.db, fake)  # argus restarted
    second.tick()
    assert state(api, key) == "RUNNING"
    assert fake._dep("alice-202611281200-smol") is before  # same replicas, no restart
    assert events(api, key) == ["CREATED", "APPLIED", "READY"]


def test_a_restarted_ray_cluster_gets_every_model_back(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    key = post(api, alice)
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    fake.reachable = False
    report = rec.tick()
    assert report.error and "unreachable" in report.error
    assert state(api, key) == "RUNNING"  # nothing is written while Ray is away
    fake.restart_cluster()
    fake.reachable = True
    advance(rec, 60)
    rec.tick()
    assert fake.serve_started
    assert state(api, key) == "QUEUED"
    rec.tick()
    assert state(api, key) == "DEPLOYING"
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    assert state(api, key) == "RUNNING"
    assert events(api, key)[-3:] == ["REDEPLOY", "APPLIED", "READY"]


def test_a_cluster_lost_just_after_an_apply_still_gets_its_models_redeployed(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    """Seen in e2e: a share changed the gate (an apply) seconds before the head died; the
    grace after an apply took the missing deployment for "just applied", and the model came
    back through DEGRADED with no REDEPLOY. A lost cluster ends that grace."""
    key = post(api, alice)
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    r = api.client.patch(
        f"/api/v2/serve/models/{key}", json={"access": "all-users"}, headers=api.headers(alice)
    )
    assert r.status_code == 202
    rec.tick()  # the gate changed: applied again, now
    fake.reachable = False
    rec.tick()
    fake.restart_cluster()
    fake.reachable = True
    advance(rec, 5)  # well inside the grace after that last apply
    rec.tick()
    assert state(api, key) == "QUEUED"
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    assert events(api, key)[-5:] == ["CLUSTER_LOST", "CLUSTER_BACK", "REDEPLOY", "APPLIED", "READY"]


def test_a_busy_cluster_is_not_lost_until_it_has_been_busy_a_minute(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    """Seen in e2e: an apply on two loaded cores outlasted the agent client's wait, and the
    tick after it waited in the agent behind it: the model got CLUSTER_LOST and, 52 s later,
    CLUSTER_BACK, with nothing lost at all."""
    key = post(api, alice)
    rec.tick()
    fake.set_ready("alice-202611281200-smol")
    rec.tick()
    fake.busy = True
    for _ in range(3):  # busy for 0, 20 and 40 s
        report = rec.tick()
        assert report.error and "ClusterBusy" in report.error
        advance(rec, 20)
    got = api.client.get("/api/v2/serve/models", headers=api.headers(alice)).json()
    assert got["cluster"] is None  # nobody is told it is unreachable
    fake.busy = False
    assert rec.tick().error is None
    assert events(api, key) == ["CREATED", "APPLIED", "READY"]

    fake.busy = True  # busy again, now for a minute: as good as gone
    rec.tick()
    advance(rec, 59)
    rec.tick()
    assert events(api, key)[-1] == "READY"
    advance(rec, 1)
    rec.tick()
    assert events(api, key)[-1] == "CLUSTER_LOST"
    assert "ClusterBusy" in model(api, key)["events"][0]["payload"]["reason"]  # type: ignore[index]
    fake.busy = False
    rec.tick()
    assert events(api, key)[-2:] == ["CLUSTER_LOST", "CLUSTER_BACK"]


def test_status_route_is_for_the_admin(api: Api, rec: ControlLoop, alice: str) -> None:
    post(api, alice)
    rec.tick()
    rec.tick()
    r = api.client.get("/api/v2/serve/status", headers=api.headers(alice))
    assert r.status_code == 403
    body = api.client.get("/api/v2/serve/status", headers=api.headers()).json()
    assert body["application"] == "argus-llm"
    assert body["serve"]["application_status"] == "DEPLOYING"
    assert INGRESS_DEPLOYMENT in body["serve"]["deployments"]
    assert body["nodes"][0]["total"] == {"CPU": 16.0}
    assert body["reconciler"]["ticks"] == 2
    assert len(body["applied_model_keys"]) == 1


def test_status_before_the_first_tick(api: Api) -> None:
    body = api.client.get("/api/v2/serve/status", headers=api.headers()).json()
    assert body["serve"] is None


def test_a_user_change_during_a_tick_wins(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = post(api, alice)
    original: Callable[..., object] = fake.apply

    def apply_and_user_deletes(*args: object) -> None:
        original(*args)
        api.client.delete(f"/api/v2/serve/models/{key}", headers=api.headers(alice))

    monkeypatch.setattr(fake, "apply", apply_and_user_deletes)
    rec.tick()
    assert state(api, key) == "DELETING"  # the reconciler's APPLIED was dropped, not forced


def test_the_loop_runs_in_a_thread(api: Api, rec: ControlLoop, alice: str) -> None:
    import time

    rec.interval_s = 0.01
    key = post(api, alice)
    rec.start()
    try:
        deadline = time.monotonic() + 5
        while state(api, key) != "DEPLOYING" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rec.stop()
    assert state(api, key) == "DEPLOYING"
    with api.ctx.db.read() as s:
        assert store.get_serve_model(s, key) is not None


def test_a_config_ray_refuses_fails_its_model_alone(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    """Ray refusing one model's LLMConfig (ApplyError names it) fails that model with the
    reason; the others are applied on the next tick."""
    from argus.cluster.serve_client import ApplyError

    good = post(api, alice, "good")
    bad = post(api, alice, "bad")
    real_apply = fake.apply

    def refuse_bad(app_name: str, models: object, gate: dict[str, object]) -> None:
        ids = [m.model_id for m in models]  # type: ignore[attr-defined]
        if "alice-202611281200-bad" in ids:
            raise ApplyError(
                "invalid LLMConfig: accelerator_type: no such type", "alice-202611281200-bad"
            )
        real_apply(app_name, models, gate)  # type: ignore[arg-type]

    fake.apply = refuse_bad  # type: ignore[method-assign]
    rec.tick()
    assert state(api, bad) == "FAILED"
    assert "Ray Serve LLM refused its config" in str(model(api, bad)["model"]["error_summary"])  # type: ignore[index]
    assert state(api, good) == "QUEUED"  # nothing was applied in that tick
    rec.tick()
    assert state(api, good) == "DEPLOYING"
    assert fake.is_deployed("alice-202611281200-good") and not fake.is_deployed(
        "alice-202611281200-bad"
    )


def test_a_stored_spec_that_breaks_a_rule_fails_its_model_alone(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    """A spec put into the database by hand (or a restore) turning on trust_remote_code."""
    good = post(api, alice, "good")
    bad = post(api, alice, "bad")
    with api.ctx.db.write() as s:
        m = store.get_serve_model(s, bad)
        assert m is not None
        m.resolved_spec = {**m.resolved_spec, "engine_kwargs": {"trust_remote_code": True}}
    rec.tick()
    assert state(api, bad) == "FAILED"
    assert "trust_remote_code: not allowed" in str(model(api, bad)["model"]["error_summary"])  # type: ignore[index]
    assert state(api, good) == "DEPLOYING"
    assert not fake.is_deployed("alice-202611281200-bad")


def test_a_model_folder_swapped_for_a_link_fails_when_applied(
    api: Api, rec: ControlLoop, fake: FakeServeClient, alice: str
) -> None:
    from tests.conftest import make_model_folder

    mine = api.storage_root / "users" / "alice" / "mine"
    make_model_folder(mine)
    key = post(api, alice, "mine", source="$HOME/mine")
    make_model_folder(api.storage_root / "users" / "bob" / "secret")
    mine.rename(mine.with_name("gone"))
    mine.symlink_to(api.storage_root / "users" / "bob" / "secret")
    rec.tick()
    assert state(api, key) == "FAILED"
    assert "outside the folders its owner may use" in str(model(api, key)["model"]["error_summary"])  # type: ignore[index]
    assert fake.apply_calls == []
