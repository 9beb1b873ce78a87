"""`GET /metrics`: auth, the public switch, and values after posts, ticks and requests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from argus.cluster.serve_client import NodeResources
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from argus.store.states import ServeState
from argus.web import create_app
from tests.conftest import spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


class StepMonotonic:
    """A monotonic clock that moves `step` seconds at every reading: each tick lasts 0.2 s."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 1000.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def scrape(
    api: Api, token: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = api.headers(token) if token else api.headers()
    r = api.client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def models_by_state(api: Api) -> dict[str, float]:
    samples = scrape(api)
    return {s.value: value(samples, "argus_models", state=s.value) for s in ServeState}


def post(api: Api, token: str, suffix: str) -> str:
    r = api.post_spec(token, spec_yaml(model_id=suffix))
    assert r.status_code == 202, r.text
    return str(r.json()["model_key"])


@pytest.fixture
def rec(api: Api, fake: FakeServeClient) -> ControlLoop:
    """The reconciler made before the app, as `argus up` does, so the app follows its ticks."""
    r = build_loop(api.settings, api.ctx.db, fake)
    r.monotonic = StepMonotonic(0.1)
    api.ctx.status = r.status
    api.client.close()
    api.client = TestClient(create_app(api.ctx))
    return r


def test_metrics_need_the_admin_token(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    assert api.client.get("/metrics").status_code == 401
    r = api.client.get("/metrics", headers={"Authorization": "Bearer argus_nope_nope"})
    assert r.status_code == 401
    r = api.client.get("/metrics", headers=api.headers(alice))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert api.client.get("/metrics", headers=api.headers()).status_code == 200


def test_metrics_public_needs_no_token(api_factory: Callable[..., Api]) -> None:
    api = api_factory(ARGUS_METRICS_PUBLIC="true")
    assert api.settings.server.metrics_public is True
    r = api.client.get("/metrics")
    assert r.status_code == 200
    assert "argus_models" in r.text


def test_every_state_is_there_from_the_start(api: Api) -> None:
    assert models_by_state(api) == dict.fromkeys([s.value for s in ServeState], 0.0)
    samples = scrape(api)
    assert value(samples, "argus_models_pending_resources") == 0
    assert value(samples, "argus_reconcile_ticks_total") == 0  # no reconciler in this app
    assert value(samples, "argus_build_info", version="3.8.0") == 1


def test_models_by_state_follow_posts_and_ticks(
    api: Api, rec: ControlLoop, fake: FakeServeClient
) -> None:
    alice = api.new_user("alice", commands=True)
    a, _b = post(api, alice, "a"), post(api, alice, "b")
    assert models_by_state(api)["QUEUED"] == 2
    rec.tick()
    assert models_by_state(api)["DEPLOYING"] == 2
    fake.set_ready("alice-202611281200-a")
    rec.tick()
    counts = models_by_state(api)
    assert (counts["RUNNING"], counts["DEPLOYING"]) == (1, 1)
    api.client.delete(f"/api/v2/serve/models/{a}", headers=api.headers(alice))
    assert models_by_state(api)["DELETING"] == 1
    rec.tick()
    rec.monotonic.t += 60  # type: ignore[attr-defined]  # past the apply grace period
    rec.tick()
    counts = models_by_state(api)
    assert (counts["DELETED"], counts["DELETING"], counts["DEPLOYING"]) == (1, 0, 1)
    assert sum(counts.values()) == 2


def test_pending_resources_counts_models_waiting_for_room(
    api: Api, rec: ControlLoop, fake: FakeServeClient
) -> None:
    alice = api.new_user("alice", commands=True)
    fake.nodes = [NodeResources("n1", {"CPU": 1.0}, {"CPU": 1.0})]
    post(api, alice, "a")
    post(api, alice, "b")
    rec.tick()
    samples = scrape(api)
    assert value(samples, "argus_models_pending_resources") == 2
    assert value(samples, "argus_models", state="QUEUED") == 2
    fake.nodes = [NodeResources("n1", {"CPU": 16.0}, {"CPU": 16.0})]
    rec.tick()
    assert value(scrape(api), "argus_models_pending_resources") == 0


def test_reconciler_ticks_errors_and_durations(
    api: Api, rec: ControlLoop, fake: FakeServeClient
) -> None:
    alice = api.new_user("alice", commands=True)
    post(api, alice, "a")
    reports = [rec.tick() for _ in range(3)]
    fake.reachable = False
    reports.append(rec.tick())
    samples = scrape(api)
    assert value(samples, "argus_reconcile_ticks_total") == 4
    assert value(samples, "argus_reconcile_errors_total") == 1
    # the clock moves 0.1 s at each reading: every tick lasted 0.1 to 0.2 s
    assert value(samples, "argus_reconcile_tick_seconds_count") == 4
    assert value(samples, "argus_reconcile_tick_seconds_sum") == pytest.approx(
        sum(r.seconds for r in reports)
    )
    assert value(samples, "argus_reconcile_tick_seconds_bucket", le="0.05") == 0
    assert value(samples, "argus_reconcile_tick_seconds_bucket", le="0.25") == 4
    assert rec.status.last_tick is not None
    assert value(samples, "argus_reconcile_last_tick_timestamp_seconds") == pytest.approx(
        rec.status.last_tick.at.timestamp()
    )


def test_a_reconciler_swapped_in_later_is_followed(api: Api, fake: FakeServeClient) -> None:
    r = build_loop(api.settings, api.ctx.db, fake)
    api.ctx.status = (
        r.status
    )  # after the app was made (as tests/integration/test_reconciler.py does)
    r.tick()
    samples = scrape(api)
    assert value(samples, "argus_reconcile_ticks_total") == 1  # read from the reconciler
    assert value(samples, "argus_reconcile_tick_seconds_count") == 0  # before it was followed
    r.tick()
    assert value(scrape(api), "argus_reconcile_tick_seconds_count") == 1


def test_requests_are_counted_by_route_template_and_status(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    key = post(api, alice, "a")
    api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice))
    api.client.get("/api/v2/serve/models/mdl_nope", headers=api.headers(alice))
    api.client.get("/api/v2/serve/models/mdl_other", headers=api.headers(alice))
    api.client.get("/api/v2/serve/models")
    api.client.get("/no/such/route/mdl_secret")
    api.client.request("BREW", "/healthz")
    text = api.client.get("/metrics", headers=api.headers()).text
    samples = scrape(api)
    route = "/api/v2/serve/models/{model_key}"
    total = "argus_api_requests_total"
    assert value(samples, total, method="GET", route=route, status="200") == 1
    assert value(samples, total, method="GET", route=route, status="404") == 2
    assert value(samples, total, method="GET", route="/api/v2/serve/models", status="401") == 1
    assert value(samples, total, method="POST", route="/api/v2/serve/models", status="202") == 1
    assert value(samples, total, method="GET", route="unmatched", status="404") == 1
    assert value(samples, total, method="OTHER", route="/healthz", status="405") == 1
    assert value(samples, total, method="GET", route="/metrics", status="200") == 1
    for raw in (key, "mdl_nope", "mdl_secret", "BREW"):
        assert raw not in text  # raw paths and methods never become labels


def test_each_app_has_its_own_registry(api_factory: Callable[..., Api]) -> None:
    first, second = api_factory(), api_factory()
    for _ in range(3):
        first.client.get("/healthz")
    second.client.get("/healthz")
    total = "argus_api_requests_total"
    assert value(scrape(first), total, method="GET", route="/healthz", status="200") == 3
    assert value(scrape(second), total, method="GET", route="/healthz", status="200") == 1


def test_a_failing_tick_observer_never_stops_the_loop(
    api: Api, rec: ControlLoop, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[float] = []

    def broken(_: object) -> None:
        raise RuntimeError("observer bug")

    rec.status.add_tick_observer(broken)
    rec.status.add_tick_observer(lambda tick: seen.append(tick.seconds))  # type: ignore[attr-defined]
    report = rec.tick()
    assert report.error is None and rec.status.ticks == 1
    assert seen == [report.seconds]  # the observers after the broken one still ran
    assert "a tick observer failed" in caplog.text
    assert value(scrape(api), "argus_reconcile_tick_seconds_count") == 1


def test_tasks_by_state(api: Api) -> None:
    alice = api.new_user("alice", commands=True)
    body = "name: t\nworkload: command\nentrypoint: 'true'\n"
    headers = {**api.headers(alice), "Content-Type": "application/yaml"}
    ids = [api.client.post("/api/v2/tasks", content=body, headers=headers).json() for _ in "ab"]
    api.client.post(f"/api/v2/tasks/{ids[0]['task_id']}:cancel", headers=api.headers(alice))
    samples = scrape(api)
    assert value(samples, "argus_tasks", state="QUEUED") == 1
    assert value(samples, "argus_tasks", state="CANCELED") == 1
    assert value(samples, "argus_tasks", state="RUNNING") == 0
