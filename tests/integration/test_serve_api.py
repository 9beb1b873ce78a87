"""The serving management API, in-process, on a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from argus.serving.states import Trigger, transition
from argus.store import serving as store
from tests.conftest import make_model_folder, spec_yaml
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice")


def test_happy_path_create_list_get_patch_delete(api: Api, alice: str) -> None:
    r = api.post_spec(alice, spec_yaml(engine_kwargs="{max_model_len: 512}"))
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["model_id"] == "alice-202611281200-smol"
    assert created["state"] == "QUEUED"
    key = created["model_key"]

    listed = api.client.get("/api/v2/serve/models", headers=api.headers(alice)).json()
    assert listed["total"] == 1
    assert listed["openai_base_url"] == "http://127.0.0.1:8000/v1"
    item = listed["items"][0]
    assert (item["model_key"], item["state"], item["target_replicas"]) == (key, "QUEUED", 1)

    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice)).json()
    assert got["model"]["model_id"] == created["model_id"]
    assert "model_source: " + str(api.storage_root / "hf" / "tiny") in got["resolved_spec_yaml"]
    assert "max_model_len: 512" in got["resolved_spec_yaml"]
    assert [e["event_type"] for e in reversed(got["events"])] == ["CREATED"]
    assert got["serve_status"] is None

    api.clock.advance(minutes=1)
    r = api.client.patch(
        f"/api/v2/serve/models/{key}", json={"num_replicas": 3}, headers=api.headers(alice)
    )
    assert r.status_code == 202
    assert (r.json()["target_replicas"], r.json()["generation"]) == (3, 2)

    r = api.client.delete(f"/api/v2/serve/models/{key}", headers=api.headers(alice))
    assert r.status_code == 202 and r.json()["state"] == "DELETING"
    r = api.client.delete(f"/api/v2/serve/models/{key}", headers=api.headers(alice))
    assert r.status_code == 202 and r.json()["state"] == "DELETING"
    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice)).json()
    assert [e["event_type"] for e in reversed(got["events"])] == [
        "CREATED",
        "SCALED",
        "DELETE_REQUESTED",
    ]


def test_reposting_a_live_suffix_updates_in_place(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    api.clock.advance(hours=2)
    r = api.post_spec(alice, spec_yaml(num_replicas=2))
    assert r.status_code == 202
    assert r.json()["model_key"] == key
    assert r.json()["model_id"] == "alice-202611281200-smol"


def test_users_are_isolated(api: Api, alice: str) -> None:
    bob = api.new_user("bob")
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    assert api.client.get("/api/v2/serve/models", headers=api.headers(bob)).json()["total"] == 0
    for method, body in [("GET", None), ("PATCH", {"num_replicas": 2}), ("DELETE", None)]:
        r = api.client.request(
            method, f"/api/v2/serve/models/{key}", json=body, headers=api.headers(bob)
        )
        assert r.status_code == 404, method
        assert "no model with key" in r.json()["error"]["message"]
    # bob's own "smol" is a different model
    r = api.post_spec(bob, spec_yaml())
    assert r.json()["model_key"] != key and r.json()["model_id"].startswith("bob-")
    # the admin sees both
    assert api.client.get("/api/v2/serve/models", headers=api.headers()).json()["total"] == 2


def test_bob_cannot_load_from_alices_home(api: Api, alice: str) -> None:
    bob = api.new_user("bob")
    make_model_folder(api.storage_root / "users" / "alice" / "private")
    r = api.post_spec(bob, spec_yaml(source=str(api.storage_root / "users/alice/private")))
    assert r.status_code == 403
    assert r.json()["error"]["details"][0]["field"] == "model_source"
    assert api.post_spec(alice, spec_yaml(source="$HOME/private")).status_code == 202


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("", 400, "empty"),
        ("model_id: [", 400, "not valid YAML"),
        ("- a\n- b\n", 400, "must be a mapping"),
        ("model_id: a\nmodel_id: b\n", 400, "duplicate key"),
        (spec_yaml(num_replicas=1.5), 422, "num_replicas: must be a whole number"),
        (spec_yaml(num_replicas="true"), 422, "num_replicas: must be a whole number"),
        (spec_yaml(num_replicas=99), 422, "more than this cluster allows"),
        (spec_yaml(num_replicas=0), 422, "num_replicas: must be at least 1, got 0"),
        (spec_yaml(gpus_per_replica=2), 422, "this cluster has no GPUs"),
        (spec_yaml(model_id="bad/id"), 422, "model_id"),
        (spec_yaml(replicas=2), 422, "replicas: unknown field"),
        (spec_yaml(engine_kwargs="{trust_remote_code: true}"), 422, "runs Python code"),
        (spec_yaml(engine_kwargs="{tensor_parallel_size: 2}"), 422, "from gpus_per_replica"),
        (spec_yaml(source="HuggingFaceTB/SmolLM2"), 422, "hub id"),
        (spec_yaml(source="https://example.com/m"), 422, "URL"),
        (spec_yaml(source="~/m"), 422, "'~'"),
        (spec_yaml(source="$HOME/nothing"), 422, "does not exist"),
        (spec_yaml(source="/etc"), 403, "outside the folders you may use"),
        (spec_yaml(source="$HOME/../bob"), 403, "outside the folders you may use"),
    ],
)
def test_bad_specs(api: Api, alice: str, body: str, status: int, needle: str) -> None:
    r = api.post_spec(alice, body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]
    assert api.client.get("/api/v2/serve/models", headers=api.headers(alice)).json()["total"] == 0


def test_a_bad_update_loses_nothing(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml(num_replicas=2)).json()["model_key"]
    assert api.post_spec(alice, spec_yaml(num_replicas=0)).status_code == 422
    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice)).json()
    assert got["model"]["target_replicas"] == 2 and got["model"]["generation"] == 1


def test_nul_byte_and_non_utf8(api: Api, alice: str) -> None:
    r = api.client.post(
        "/api/v2/serve/models",
        content=b"model_id: \xff\xfe",
        headers={**api.headers(alice), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 400 and "UTF-8" in r.json()["error"]["message"]
    r = api.post_spec(alice, "model_id: a\nmodel_source: /x\x00y\n")
    assert r.status_code == 400


def test_wrong_content_type_is_415(api: Api, alice: str) -> None:
    r = api.post_spec(alice, spec_yaml(), content_type="application/json")
    assert r.status_code == 415
    assert "application/yaml" in r.json()["error"]["message"]
    assert (
        api.post_spec(alice, spec_yaml(), content_type="text/yaml; charset=utf-8").status_code
        == 202
    )


def test_body_over_64_kib_is_413(api: Api, alice: str) -> None:
    body = spec_yaml() + "#" * (32 * 1024)
    r = api.post_spec(alice, body)
    assert r.status_code == 413


def test_patch_errors(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    url = f"/api/v2/serve/models/{key}"
    h = api.headers(alice)
    cases: list[tuple[object, int]] = [
        ({"num_replicas": 0}, 422),
        ({"num_replicas": 17}, 422),
        ({"num_replicas": 1.5}, 422),
        ({"num_replicas": True}, 422),
        ({"num_replicas": "2"}, 422),
        ({"num_replicas": 2, "gpus_per_replica": 2}, 400),
        ([2], 400),
    ]
    for body, status in cases:
        r = api.client.patch(url, json=body, headers=h)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["message"]
    r = api.client.patch(url, content=b"{", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = api.client.patch(
        url, content=b"num_replicas: 2", headers={**h, "Content-Type": "application/yaml"}
    )
    assert r.status_code == 415
    assert (
        api.client.patch(
            "/api/v2/serve/models/nope", json={"num_replicas": 2}, headers=h
        ).status_code
        == 404
    )


def _mark_deleted(api: Api, key: str) -> None:
    with api.ctx.db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        transition(s, m, Trigger.REMOVED, api.clock())


def test_deleted_models_are_409_and_the_suffix_is_free(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    h = api.headers(alice)
    api.client.delete(f"/api/v2/serve/models/{key}", headers=h)
    r = api.client.patch(f"/api/v2/serve/models/{key}", json={"num_replicas": 2}, headers=h)
    assert r.status_code == 409 and "being deleted" in r.json()["error"]["message"]
    r = api.post_spec(alice, spec_yaml())
    assert r.status_code == 409 and "still being deleted" in r.json()["error"]["message"]
    _mark_deleted(api, key)
    r = api.client.patch(f"/api/v2/serve/models/{key}", json={"num_replicas": 2}, headers=h)
    assert r.status_code == 409 and "DELETED" in r.json()["error"]["message"]
    assert api.client.delete(f"/api/v2/serve/models/{key}", headers=h).status_code == 409
    api.clock.advance(minutes=5)
    again = api.post_spec(alice, spec_yaml()).json()
    assert again["model_key"] != key and again["model_id"] == "alice-202611281205-smol"
    listed = api.client.get("/api/v2/serve/models?include_deleted=true", headers=h).json()
    assert listed["total"] == 2
    assert api.client.get("/api/v2/serve/models", headers=h).json()["total"] == 1


def test_list_paging(api: Api, alice: str) -> None:
    for i in range(5):
        api.clock.advance(seconds=1)
        api.post_spec(alice, spec_yaml(model_id=f"m{i}"))
    h = api.headers(alice)
    page = api.client.get("/api/v2/serve/models?limit=2&offset=2", headers=h).json()
    assert page["total"] == 5
    assert [m["model_id"].rsplit("-", 1)[1] for m in page["items"]] == ["m2", "m1"]
    assert api.client.get("/api/v2/serve/models?limit=0", headers=h).status_code == 422
    assert api.client.get("/api/v2/serve/models?offset=-1", headers=h).status_code == 422


def test_fifty_concurrent_posts_leave_one_model(api: Api, alice: str) -> None:
    body = spec_yaml()

    def post(_: int) -> int:
        return int(api.post_spec(alice, body).status_code)

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(post, range(50)))
    assert codes == [202] * 50
    with api.ctx.db.read() as s:
        items, total = store.list_serve_models(s, "alice", include_deleted=True)
        assert total == 1
        assert [e.event_type for e in store.list_serve_events(s, items[0].model_key)[0]] == [
            "CREATED"
        ]


def test_openapi_documents_every_route_with_examples(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    paths = doc["paths"]
    assert set(paths["/api/v2/serve/models"]) == {"get", "post"}
    assert set(paths["/api/v2/serve/models/{model_key}"]) == {"get", "patch", "delete"}
    post = paths["/api/v2/serve/models"]["post"]
    assert "model_id: smol" in post["requestBody"]["content"]["application/yaml"]["example"]
    assert api.client.get("/docs").status_code == 200
    for path in ("/api/v2/serve/models", "/api/v2/serve/models/{model_key}"):
        for method, op in paths[path].items():
            codes = [c for c in op["responses"] if c.startswith("2")]
            examples = [
                op["responses"][c].get("content", {}).get("application/json", {}).get("example")
                for c in codes
            ]
            assert any(examples), (method, path)


def test_public_host_shapes_the_base_url(api_factory: Callable[..., Api]) -> None:
    api = api_factory(ARGUS_PUBLIC_HOST="gpu-head.example", ARGUS_SERVE_PORT="8001")
    listed = api.client.get("/api/v2/serve/models", headers=api.headers()).json()
    assert listed["openai_base_url"] == "http://gpu-head.example:8001/v1"


def test_a_config_ray_serve_llm_refuses_is_a_422_when_posted(
    api_factory: Callable[..., Api],
) -> None:
    """With the cluster reachable, the LLMConfig a spec becomes is checked by Ray Serve
    LLM's own model before anything is stored; with it away, the apply checks it."""
    from dataclasses import replace

    from tests.fake_cluster import FakeServeClient

    api = api_factory()
    fake = FakeServeClient(refuse={"odd": "1 validation error for LLMConfig\nbad value"})
    api.ctx.serving = replace(api.ctx.serving, check=fake.check, engine=api.ctx.serving.engine)
    alice = api.new_user("alice")
    r = api.post_spec(alice, spec_yaml("odd"))
    assert r.status_code == 422
    assert "Ray Serve LLM refuses the config it becomes" in r.json()["error"]["message"]
    assert api.post_spec(alice, spec_yaml("fine")).status_code == 202
    fake.reachable = False
    assert api.post_spec(alice, spec_yaml("odd")).status_code == 202


def test_a_models_events_come_newest_first_a_page_at_a_time(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    url = f"/api/v2/serve/models/{key}"
    h = api.headers(alice)
    for n in range(60):  # 60 scales: 61 events in all
        r = api.client.patch(url, json={"num_replicas": 1 + (n + 1) % 2}, headers=h)
        assert r.status_code == 202
    detail = api.client.get(url, headers=h).json()
    assert detail["events_total"] == 61 and len(detail["events"]) == 50
    ids = [e["id"] for e in detail["events"]]
    assert ids == sorted(ids, reverse=True)
    seen: list[int] = []
    before = None
    while True:
        params = {"limit": 25, **({"before": before} if before else {})}
        page = api.client.get(f"{url}/events", params=params, headers=h).json()
        seen += [e["id"] for e in page["items"]]
        assert page["total"] == 61
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == 61 and seen == sorted(seen, reverse=True)
    assert (
        api.client.get(f"{url}/events", headers=api.headers(api.new_user("bob"))).status_code == 404
    )
    api.client.cookies.set("argus_token", alice, path="/ui")
    page = api.client.get(f"/ui/serving/{key}")
    assert page.status_code == 200
    assert "50 of 61" in page.text and f"/api/v2/serve/models/{key}/events" in page.text
