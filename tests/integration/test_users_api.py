from __future__ import annotations

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


def test_me_answers_who_the_caller_is(api: Api) -> None:
    admin = api.client.get("/api/v2/me", headers=api.headers()).json()
    assert (admin["user_id"], admin["is_admin"], admin["quota"]) == ("admin", True, None)
    token = api.new_user("alice")
    alice = api.client.get("/api/v2/me", headers=api.headers(token)).json()
    assert (alice["user_id"], alice["is_admin"], alice["allow_commands"]) == ("alice", False, False)
    assert alice["quota"] == {
        "max_gpus": 8,
        "max_models": 8,
        "max_replicas": 4,
        "requests_per_minute": None,  # no rate limit unless the config or the admin sets one
        "tokens_per_minute": None,
        "set_by_admin": [],
    }
    assert alice["usage"] == {"models": 0, "gpus": 0, "model_gpus": 0, "task_gpus": 0}


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "missing token"),
        ({"Authorization": "Basic abc"}, "malformed"),
        ({"Authorization": "Bearer "}, "malformed"),
        ({"Authorization": "Bearer nope"}, "invalid token"),
        ({"Authorization": "Bearer argus_0123456789ab_" + "a" * 43}, "invalid token"),
    ],
)
def test_bad_credentials_are_401_with_a_hint(
    api: Api, headers: dict[str, str], needle: str
) -> None:
    r = api.client.get("/api/v2/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()["error"]
    assert body["code"] == "unauthorized"
    assert needle in body["message"]


def test_create_list_and_duplicate_user(api: Api) -> None:
    r = api.client.post("/api/v2/users", json={"user_id": "alice"}, headers=api.headers())
    assert r.status_code == 201
    assert r.json()["user_id"] == "alice" and r.json()["disabled"] is False
    r = api.client.post("/api/v2/users", json={"user_id": "alice"}, headers=api.headers())
    assert r.status_code == 409
    assert "already exists" in r.json()["error"]["message"]
    users = api.client.get("/api/v2/users", headers=api.headers()).json()
    assert [u["user_id"] for u in users["items"]] == ["admin", "alice"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"user_id": "Alice"}, 422),
        ({"user_id": "1a"}, 422),
        ({"user_id": "a" * 33}, 422),
        ({"user_id": 5}, 422),
        ({}, 422),
        ({"user_id": "bob", "admin": True}, 422),
    ],
)
def test_invalid_user_bodies(api: Api, body: dict[str, object], status: int) -> None:
    r = api.client.post("/api/v2/users", json=body, headers=api.headers())
    assert r.status_code == status
    assert r.json()["error"]["code"] == "invalid"
    assert r.json()["error"]["message"]


def test_malformed_json_is_400(api: Api) -> None:
    r = api.client.post(
        "/api/v2/users",
        content=b"{nope",
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]


def test_users_are_forbidden_on_admin_routes(api: Api) -> None:
    token = api.new_user("alice")
    for method, path in [
        ("GET", "/api/v2/users"),
        ("POST", "/api/v2/users"),
        ("PATCH", "/api/v2/users/alice"),
        ("POST", "/api/v2/users/alice/tokens"),
        ("GET", "/api/v2/users/alice/tokens"),
        ("DELETE", "/api/v2/tokens/abc"),
    ]:
        r = api.client.request(method, path, json={"user_id": "x"}, headers=api.headers(token))
        assert r.status_code == 403, (method, path)
        assert r.json()["error"]["code"] == "forbidden"


def test_token_is_shown_once_and_works(api: Api) -> None:
    api.client.post("/api/v2/users", json={"user_id": "alice"}, headers=api.headers())
    r = api.client.post("/api/v2/users/alice/tokens", headers=api.headers())
    assert r.status_code == 201
    issued = r.json()
    assert set(issued) >= {"token_id", "token"}
    listed = api.client.get("/api/v2/users/alice/tokens", headers=api.headers()).json()
    assert [t["token_id"] for t in listed["items"]] == [issued["token_id"]]
    assert issued["token"] not in str(listed)
    assert api.client.get("/api/v2/me", headers=api.headers(issued["token"])).status_code == 200


def test_revoked_token_stops_working(api: Api) -> None:
    token = api.new_user("alice")
    token_id = token.split("_")[1]
    r = api.client.delete(f"/api/v2/tokens/{token_id}", headers=api.headers())
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert api.client.get("/api/v2/me", headers=api.headers(token)).status_code == 401
    again = api.client.delete(f"/api/v2/tokens/{token_id}", headers=api.headers())
    assert again.json()["revoked_at"] == r.json()["revoked_at"]
    assert api.client.delete("/api/v2/tokens/nope", headers=api.headers()).status_code == 404


def test_disabled_user_is_locked_out_at_once_and_can_come_back(api: Api) -> None:
    token = api.new_user("alice")
    r = api.client.patch("/api/v2/users/alice", json={"disabled": True}, headers=api.headers())
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert api.client.get("/api/v2/me", headers=api.headers(token)).status_code == 401
    r = api.client.post("/api/v2/users/alice/tokens", headers=api.headers())
    assert r.status_code == 409
    api.client.patch("/api/v2/users/alice", json={"disabled": False}, headers=api.headers())
    assert api.client.get("/api/v2/me", headers=api.headers(token)).status_code == 200


def test_user_admin_errors(api: Api) -> None:
    h = api.headers()
    assert (
        api.client.patch("/api/v2/users/ghost", json={"disabled": True}, headers=h).status_code
        == 404
    )
    assert api.client.post("/api/v2/users/ghost/tokens", headers=h).status_code == 404
    assert api.client.get("/api/v2/users/ghost/tokens", headers=h).status_code == 404
    r = api.client.patch("/api/v2/users/admin", json={"disabled": True}, headers=h)
    assert r.status_code == 409
    r = api.client.patch("/api/v2/users/admin", json={"disabled": "yes"}, headers=h)
    assert r.status_code == 422


def test_unknown_route_is_a_json_404(api: Api) -> None:
    r = api.client.get("/api/v2/nothing", headers=api.headers())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
