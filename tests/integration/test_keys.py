"""Keys and per-model access, up to the table the ingress gets: the API, the reconciler's
push of the table (FakeServeClient), and the gate the ingress runs (plain ASGI)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from argus import keys
from argus.cluster.access import caller_of, key_hash
from argus.cluster.gate_asgi import CALLER, Gate, RateLimited, http_error
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from tests.conftest import ADMIN_TOKEN, spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration
SMOL = "alice-202611281200-smol"


@pytest.fixture
def rec(api: Api, fake: FakeServeClient) -> ControlLoop:
    r = build_loop(api.settings, api.ctx.db, fake)
    r.clock = lambda: datetime.now(UTC)
    return r


def new_key(api: Api, token: str, **body: Any) -> Any:
    return api.client.post(
        "/api/v2/keys", json={"name": "laptop", **body}, headers=api.headers(token)
    )


def principal(fake: FakeServeClient, secret: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = fake.gate["principals"].get(key_hash(secret))
    return found


# -- the API ----------------------------------------------------------------------------------
def test_a_key_is_shown_once_listed_without_it_and_revoked_by_its_owner(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    r = new_key(api, alice, expires_at="2027-01-31T00:00:00Z")
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith(f"argus_key_{made['key_id']}_") and made["state"] == "live"
    assert made["expires_at"] == "2027-01-31T00:00:00+00:00" and made["models"] is None
    listed = api.client.get("/api/v2/keys", headers=api.headers(alice)).json()
    assert [k["key_id"] for k in listed["items"]] == [made["key_id"]]
    assert "key" not in listed["items"][0]
    assert api.client.get("/api/v2/keys", headers=api.headers(bob)).json()["items"] == []
    everyone = api.client.get("/api/v2/keys", headers=api.headers()).json()["items"]
    assert [(k["user_id"], k["key_id"]) for k in everyone] == [("alice", made["key_id"])]
    # A key is for the OpenAI endpoint only: the argus API does not take it.
    assert api.client.get("/api/v2/me", headers=api.headers(made["key"])).status_code == 401
    # Another user's key is not there for bob; its owner (or the admin) revokes it.
    gone = api.client.delete(f"/api/v2/keys/{made['key_id']}", headers=api.headers(bob))
    assert gone.status_code == 404
    r = api.client.delete(f"/api/v2/keys/{made['key_id']}", headers=api.headers(alice))
    assert r.status_code == 200 and r.json()["state"] == "revoked"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": ""}, "name", "not a key name"),
        ({"name": "x" * 65}, "name", "at most 64"),
        ({"name": "two\nlines"}, "name", "not a key name"),
        ({"name": " x"}, "name", "not a key name"),
        ({"models": []}, "models", "list 1 to 64"),
        ({"models": ["carol-202611281200-big"]}, "models", "no model"),
        ({"expires_at": "2026-01-01T00:00:00Z"}, "expires_at", "has passed"),
        ({"expires_at": "2027-01-01T00:00:00"}, "expires_at", "time zone"),
        ({"expires_at": "2046-01-01T00:00:00Z"}, "expires_at", "ten years"),
        ({"expires_at": "soon"}, "expires_at", "datetime"),
        ({"scopes": ["all"]}, "scopes", "Extra inputs"),
    ],
)
def test_a_bad_key_request_says_which_field_and_why(
    api: Api, body: dict[str, Any], field: str, words: str
) -> None:
    alice = api.new_user("alice")
    r = new_key(api, alice, **body)
    assert r.status_code == 422, r.text
    assert words in r.text and field in r.text
    assert api.client.get("/api/v2/keys", headers=api.headers(alice)).json()["total"] == 0


def test_a_key_lists_only_models_its_user_may_call(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    assert api.post_spec(alice, spec_yaml()).status_code == 202
    assert new_key(api, bob, models=[SMOL]).status_code == 422  # alice's, private
    r = api.client.patch(
        "/api/v2/serve/models/" + _key_of(api, alice),
        json={"access": {"users": ["bob"]}},
        headers=api.headers(alice),
    )
    assert r.status_code == 202, r.text
    r = new_key(api, bob, models=[SMOL, SMOL])
    assert r.status_code == 201 and r.json()["models"] == [SMOL]


def test_a_user_has_at_most_so_many_live_keys(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "MAX_LIVE_KEYS", 2)
    alice = api.new_user("alice")
    made = [new_key(api, alice).json()["key_id"] for _ in range(2)]
    r = new_key(api, alice)
    assert r.status_code == 409 and "revoke one first" in r.text
    api.client.delete(f"/api/v2/keys/{made[0]}", headers=api.headers(alice))
    assert new_key(api, alice).status_code == 201


def _key_of(api: Api, token: str) -> str:
    items = api.client.get("/api/v2/serve/models", headers=api.headers(token)).json()["items"]
    return str(items[0]["model_key"])


# -- sharing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("access", "words"),
    [
        ("public", "'public' is not an access"),
        ({"users": "bob"}, "users must be a list"),
        ({"users": ["Bob"]}, "user_id 'Bob' is not valid"),
        ({"users": ["bob"], "all": True}, "exactly one field"),
        (7, "got int"),
    ],
)
def test_a_bad_access_is_refused_and_changes_nothing(api: Api, access: Any, words: str) -> None:
    alice = api.new_user("alice")
    api.post_spec(alice, spec_yaml())
    key = _key_of(api, alice)
    r = api.client.patch(
        f"/api/v2/serve/models/{key}",
        json={"access": access, "num_replicas": 2},
        headers=api.headers(alice),
    )
    assert r.status_code == 422 and words in r.text, r.text
    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice)).json()
    assert got["model"]["generation"] == 1  # the replica count in the same body was not applied


def test_a_spec_can_share_its_model_and_another_user_cannot_change_that(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    r = api.post_spec(alice, spec_yaml(access="all-users"))
    assert r.status_code == 202, r.text
    key = r.json()["model_key"]
    r = api.client.patch(
        f"/api/v2/serve/models/{key}", json={"access": "private"}, headers=api.headers(bob)
    )
    assert r.status_code == 404


# -- the table the ingress gets ---------------------------------------------------------------
def test_the_ingress_table_follows_keys_users_and_sharing_without_a_restart(
    api: Api, rec: ControlLoop, fake: FakeServeClient
) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    bobs = new_key(api, bob).json()
    rec.tick()
    assert fake.apply_calls == [[SMOL]]
    assert principal(fake, alice) == {
        "user": "alice",
        "admin": False,
        "key": alice.split("_")[1],  # the token's id: what usage names it by
        "models": None,
        "expires": None,
    }
    assert principal(fake, ADMIN_TOKEN)["admin"] is True  # type: ignore[index]
    assert principal(fake, ADMIN_TOKEN)["key"] == "admin-token"  # type: ignore[index]
    assert principal(fake, bobs["key"])["user"] == "bob"  # type: ignore[index]
    assert principal(fake, bobs["key"])["key"] == bobs["key_id"]  # type: ignore[index]
    assert fake.gate["models"][SMOL] == {"owner": "alice", "users": [], "all": False}
    assert all(len(h) == 64 and "argus" not in h for h in fake.gate["principals"])  # hashes only
    fake.set_ready(SMOL)
    rec.tick()
    applied = len(fake.apply_calls)
    rec.tick()
    assert len(fake.apply_calls) == applied  # nothing changed: no apply

    # Alice shares with bob: the table changes, the deployment does not.
    before = dict(fake.deployments)
    r = api.client.patch(
        f"/api/v2/serve/models/{key}",
        json={"access": {"users": ["bob"]}},
        headers=api.headers(alice),
    )
    assert r.status_code == 202 and r.json()["state"] == "RUNNING"
    assert r.json()["generation"] == 1
    rec.tick()
    assert len(fake.apply_calls) == applied + 1
    assert fake.gate["models"][SMOL]["users"] == ["bob"]
    assert fake.deployments == before  # same replicas, nothing restarted
    got = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers(alice)).json()
    assert got["model"]["state"] == "RUNNING"
    assert got["events"][0]["event_type"] == "ACCESS_CHANGED"
    assert got["events"][0]["payload"] == {
        "from": "private",
        "to": {"users": ["bob"]},
        "by": "alice",
    }

    # Bob's key revoked, then bob disabled: each is gone from the next table.
    api.client.delete(f"/api/v2/keys/{bobs['key_id']}", headers=api.headers(bob))
    rec.tick()
    assert principal(fake, bobs["key"]) is None and principal(fake, bob) is not None
    api.client.patch("/api/v2/users/bob", json={"disabled": True}, headers=api.headers())
    rec.tick()
    assert principal(fake, bob) is None


# -- the gate, as the ingress runs it ---------------------------------------------------------
class Ingress:
    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table


async def whoami(request: Request) -> JSONResponse:
    caller = request.scope["state"][CALLER]
    return JSONResponse({"user": caller.user})


def gate_client(table: dict[str, Any]) -> TestClient:
    app = Starlette(routes=[Route("/v1/models", whoami, methods=["GET", "POST"])])
    return TestClient(Gate(app, Ingress(table)))


TABLE = {
    "principals": {key_hash("k-alice"): {"user": "alice", "admin": False, "models": None}},
    "cors_origins": ["https://app.example"],
}


def test_the_gate_wants_a_live_key_and_answers_in_the_openai_shape() -> None:
    client = gate_client(TABLE)
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert (
        r.json()["error"]["code"] == "invalid_api_key" and "Missing" in r.json()["error"]["message"]
    )
    r = client.get("/v1/models", headers={"Authorization": "Bearer k-bob"})
    assert r.status_code == 401 and "Invalid API key" in r.json()["error"]["message"]
    r = client.get("/v1/models", headers={"Authorization": "Bearer k-alice"})
    assert r.status_code == 200 and r.json() == {"user": "alice"}
    assert "access-control-allow-origin" not in r.headers
    assert caller_of(TABLE, "k-alice", 0.0) is not None


def test_the_gate_answers_cors_for_listed_origins_only() -> None:
    client = gate_client(TABLE)
    preflight = {"Access-Control-Request-Method": "POST"}
    r = client.options("/v1/models", headers={"Origin": "https://evil.example", **preflight})
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    r = client.options("/v1/models", headers={"Origin": "https://app.example", **preflight})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    auth = {"Authorization": "Bearer k-alice"}
    r = client.post("/v1/models", headers={"Origin": "https://evil.example", **auth})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = client.post("/v1/models", headers={"Origin": "https://app.example", **auth})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["vary"] == "Origin"


def test_a_rate_limited_call_is_a_429_in_the_openai_shape_with_retry_after() -> None:
    async def limited(request: Request) -> JSONResponse:
        raise RateLimited("alice", "requests", 12.3)

    app = Starlette(routes=[Route("/v1/chat/completions", limited, methods=["POST"])])
    app.add_exception_handler(HTTPException, http_error)
    r = TestClient(Gate(app, Ingress(TABLE))).post(
        "/v1/chat/completions", headers={"Authorization": "Bearer k-alice"}
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "13"
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "try again in 13 s" in error["message"]


def test_the_table_carries_each_users_rate_limits_admin_set_or_default(
    api: Api, rec: ControlLoop, fake: FakeServeClient
) -> None:
    alice, _ = api.new_user("alice"), api.new_user("bob")
    api.post_spec(alice, spec_yaml())
    r = api.client.patch(
        "/api/v2/users/alice", json={"requests_per_minute": 30}, headers=api.headers()
    )
    assert r.status_code == 200, r.text
    assert r.json()["quota"]["requests_per_minute"] == 30
    assert r.json()["quota"]["set_by_admin"] == ["requests_per_minute"]
    rec.serving.quotas = replace(
        rec.serving.quotas or api.settings.quotas.as_quota(), tokens_per_minute=5000
    )
    rec.tick()
    assert fake.gate["limits"] == {
        "alice": {"rpm": 30, "tpm": 5000},
        "bob": {"rpm": None, "tpm": 5000},
    }
    assert fake.gate["ingress_replicas"] == 1
    for bad in (0, -1, 10**10, "many"):
        r = api.client.patch(
            "/api/v2/users/bob", json={"tokens_per_minute": bad}, headers=api.headers()
        )
        assert r.status_code == 422, (bad, r.text)
