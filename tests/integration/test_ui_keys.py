"""The Keys page: create (shown once), a bad field under its input, revoke; the admin's list."""

from __future__ import annotations

import html
import re

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.integration.conftest import Api
from tests.integration.test_ui import flash_of, get, login, page_csrf, post

pytestmark = pytest.mark.integration


def test_a_user_creates_a_key_sees_it_once_and_revokes_it(api: Api) -> None:
    alice = api.new_user("alice")
    login(api, alice)
    csrf = page_csrf(api, "/ui/keys")
    r = post(api, "/ui/keys", {"csrf": csrf, "name": "laptop", "expires": "2030-01-31"})
    assert r.status_code == 200, r.text
    key = re.search(r'<code id="new-key">(argus_key_[^<]+)</code>', r.text)
    assert key, "the new key is not on the page"
    listed = api.client.get("/api/v2/keys", headers=api.headers(alice)).json()["items"]
    assert [(k["name"], k["expires_at"]) for k in listed] == [
        ("laptop", "2030-01-31T23:59:59+00:00")
    ]
    page = get(api, "/ui/keys").text
    assert key.group(1) not in page and "laptop" in page  # shown once only
    assert 'aria-current="page">Keys' in page

    r = post(api, "/ui/keys", {"csrf": csrf, "name": "x", "models": "carol-202611281200-big"})
    assert r.status_code == 422
    assert 'data-field="models"' in r.text and "no model" in html.unescape(r.text)
    assert 'value="carol-202611281200-big"' in r.text  # what was typed stays
    r = post(api, "/ui/keys", {"csrf": csrf, "name": "y", "expires": "soon"})
    assert r.status_code == 422 and 'data-field="expires_at"' in r.text

    key_id = listed[0]["key_id"]
    assert post(api, f"/ui/keys/{key_id}/revoke", {}).status_code == 403  # no csrf
    note = flash_of(api, post(api, f"/ui/keys/{key_id}/revoke", {"csrf": csrf}))
    assert f"Revoked key {key_id}" in note
    assert (
        api.client.get("/api/v2/keys", headers=api.headers(alice)).json()["items"][0]["state"]
        == "revoked"
    )


def test_only_the_owner_or_the_admin_revokes_and_the_admin_sees_everyone(api: Api) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    made = api.client.post("/api/v2/keys", json={"name": "ci"}, headers=api.headers(alice)).json()
    login(api, bob)
    note = flash_of(
        api, post(api, f"/ui/keys/{made['key_id']}/revoke", {"csrf": page_csrf(api, "/ui/keys")})
    )
    assert "no key" in note
    assert "ci" not in get(api, "/ui/keys").text.split("<h2>Your keys</h2>")[1]
    login(api, ADMIN_TOKEN)
    page = get(api, "/ui/keys").text
    assert "Every user's keys" in html.unescape(page) and f'data-key="{made["key_id"]}"' in page
