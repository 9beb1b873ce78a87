"""The web UI in-process: login, pages, forms, CSRF, isolation, the try-it box.

The pages call the same operations as the API, so a test here checks what a browser
user sees: the status, where a redirect goes, what the page says, what changed.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute

from argus.demo import DEMO_MODEL_DIRNAME, DEMO_SPEC_YAML
from argus.runtime.bootstrap import build_loop
from argus.store import serving as store
from argus.ui.pages import locate_field, needs_refresh
from tests.conftest import ADMIN_TOKEN, make_model_folder, spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api
from tests.openai_stub import FakeOpenAI

pytestmark = pytest.mark.integration

BASE_URL = "http://127.0.0.1:8000/v1"
ALICE_MODEL_ID = "alice-202611281200-smol"


# -- helpers -------------------------------------------------------------------------
def login(api: Api, token: str) -> httpx.Response:
    api.client.cookies.clear()
    r = api.client.post("/ui/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r


def get(api: Api, path: str) -> httpx.Response:
    return api.client.get(path, follow_redirects=False)


def post(api: Api, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
    return api.client.post(path, data=data, headers=headers, follow_redirects=False)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{32})"', page)
    assert m, "the page carries no csrf field"
    return m.group(1)


def page_csrf(api: Api, path: str = "/ui/serving") -> str:
    r = get(api, path)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


def flash_of(api: Api, r: httpx.Response) -> str:
    """Follow a form's redirect and return the note the next page shows."""
    assert r.status_code == 303, r.text
    page = get(api, r.headers["location"])
    m = re.search(r'<div class="alert alert-(?:ok|error)" role="status">(.*?)</div>', page.text)
    assert m, "no flash note on the page after the redirect"
    return html.unescape(m.group(1))


def deploy_api(api: Api, token: str, suffix: str = "smol", **extra: object) -> str:
    r = api.post_spec(token, spec_yaml(model_id=suffix, **extra))
    assert r.status_code == 202, r.text
    return str(r.json()["model_key"])


def model_json(api: Api, key: str) -> dict[str, Any]:
    r = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers())
    assert r.status_code == 200, r.text
    model: dict[str, Any] = r.json()["model"]
    return model


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice")


@pytest.fixture
def bob(api: Api) -> str:
    return api.new_user("bob")


@pytest.fixture
def alice_model(api: Api, alice: str) -> str:
    return deploy_api(api, alice)


# -- login, logout, redirects ----------------------------------------------------------
def test_login_sets_a_strict_httponly_cookie_and_goes_to_next(api: Api, alice: str) -> None:
    r = api.client.post(
        "/ui/login", data={"token": alice, "next": "/ui/serving/new"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/serving/new"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"argus_token={alice};")
    attrs = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path=/ui", "samesite=strict"} <= attrs
    assert "secure" not in attrs  # plain http here; https gets Secure
    page = get(api, "/ui/serving")
    assert page.status_code == 200
    assert '<span class="who-name" title="signed in as">alice</span>' in page.text


def test_login_without_next_goes_to_serving_and_ignores_outside_targets(
    api: Api, alice: str
) -> None:
    assert login(api, alice).headers["location"] == "/ui/serving"
    for bad in ("https://evil.example/ui/", "//evil.example/ui/", "/api/v2/me", "/ui\\x", ""):
        r = api.client.post("/ui/login", data={"token": alice, "next": bad}, follow_redirects=False)
        assert r.headers["location"] == "/ui/serving", bad


def test_login_page_when_logged_in_goes_on(api: Api, alice: str) -> None:
    login(api, alice)
    r = get(api, "/ui/login?next=/ui/serving/new")
    assert (r.status_code, r.headers["location"]) == (303, "/ui/serving/new")


def test_a_bad_token_shows_an_error_on_the_login_page(api: Api) -> None:
    r = api.client.post("/ui/login", data={"token": "argus_0123456789ab_nope"})
    assert r.status_code == 401
    assert "invalid token" in r.text
    assert 'id="token"' in r.text  # the form is shown again
    assert "set-cookie" not in r.headers
    r = api.client.post("/ui/login", data={"token": "  "})
    assert r.status_code == 401
    assert "paste your token" in r.text


def test_every_page_redirects_to_login_without_the_cookie(
    api: Api, alice: str, alice_model: str
) -> None:
    pages = [
        "/ui",
        "/ui/serving",
        "/ui/serving?deleted=true",
        "/ui/serving/new",
        f"/ui/serving/{alice_model}",
        "/ui/admin/users",
        "/ui/admin/cluster",
        "/ui/keys",
    ]
    for path in pages:
        r = get(api, path)
        assert r.status_code == 303, path
        target = urlsplit(r.headers["location"])
        assert target.path == "/ui/login"
        assert parse_qs(target.query)["next"] == [path if path != "/ui" else "/ui/serving"]
    login_page = api.client.get("/ui/serving/new")  # following the redirect
    assert login_page.status_code == 200
    assert 'name="next" value="/ui/serving/new"' in login_page.text


def test_every_ui_route_needs_a_session(api: Api, alice_model: str) -> None:
    """Like the API's route guard: a new page cannot be left open by mistake."""
    checked = 0
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute) or not route.path.startswith("/ui"):
            continue
        if route.path in ("/ui/login", "/ui/logout"):
            continue
        path = re.sub(r"\{[^}]+\}", alice_model, route.path)
        for method in sorted(route.methods):
            r = api.client.request(method, path, data={"x": "1"}, follow_redirects=False)
            assert r.status_code == 303, (method, path, r.status_code)
            assert r.headers["location"].startswith("/ui/login?next="), (method, path)
            checked += 1
    assert checked >= 12


def test_a_revoked_token_in_the_cookie_is_cleared(api: Api, alice: str) -> None:
    login(api, alice)
    token_id = alice.split("_")[1]
    r = api.client.delete(f"/api/v2/tokens/{token_id}", headers=api.headers())
    assert r.status_code == 200
    r = get(api, "/ui/serving")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login")
    assert 'argus_token=""' in r.headers["set-cookie"]


def test_logout_needs_the_csrf_field_and_clears_the_cookie(api: Api, alice: str) -> None:
    login(api, alice)
    assert post(api, "/ui/logout", {}).status_code == 403
    assert get(api, "/ui/serving").status_code == 200  # still logged in
    r = post(api, "/ui/logout", {"csrf": page_csrf(api)})
    assert (r.status_code, r.headers["location"]) == (303, "/ui/login")
    assert 'argus_token=""' in r.headers["set-cookie"]
    assert get(api, "/ui/serving").status_code == 303


# -- pages -----------------------------------------------------------------------------
def test_every_page_answers_200_for_its_owner(api: Api, alice: str, alice_model: str) -> None:
    login(api, alice)
    for path in (
        "/ui",
        "/ui/serving",
        "/ui/serving?deleted=true",
        "/ui/serving/new",
        f"/ui/serving/new?edit={alice_model}",
        f"/ui/serving/{alice_model}",
    ):
        r = get(api, path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    login(api, ADMIN_TOKEN)
    for path in ("/ui", "/ui/admin/users", "/ui/admin/cluster", f"/ui/serving/{alice_model}"):
        assert get(api, path).status_code == 200, path


def test_the_sidebar_marks_the_page_and_shows_admin_links_to_the_admin_only(
    api: Api, alice: str
) -> None:
    login(api, alice)
    page = get(api, "/ui/serving").text
    assert '<a href="/ui/serving" class="current" aria-current="page">Serving</a>' in page
    assert '<a href="/ui">Overview</a>' in page
    assert "/ui/admin/users" not in page
    assert "/ui/admin/cluster" not in page
    assert 'href="/ui/serving/new"' in page  # the way to deploy
    login(api, ADMIN_TOKEN)
    page = get(api, "/ui/admin/users").text
    assert 'class="current" aria-current="page">Users &amp; Tokens</a>' in page
    assert 'href="/ui/admin/cluster"' in page
    assert 'href="/ui/serving"' in page


def test_another_users_model_is_a_404_and_cannot_be_changed(
    api: Api, alice_model: str, bob: str
) -> None:
    login(api, bob)
    csrf = page_csrf(api)
    for path in (f"/ui/serving/{alice_model}", f"/ui/serving/new?edit={alice_model}"):
        r = get(api, path)
        assert r.status_code == 404, path
        assert "Model not found" in r.text
        assert ALICE_MODEL_ID not in r.text
    r = post(api, f"/ui/serving/{alice_model}/scale", {"csrf": csrf, "num_replicas": "3"})
    assert r.status_code == 404
    r = post(api, f"/ui/serving/{alice_model}/delete", {"csrf": csrf})
    assert r.status_code == 404
    r = post(api, f"/ui/serving/{alice_model}/try", {"csrf": csrf, "message": "hi"})
    assert r.status_code == 404
    assert r.json()["ok"] is False and "no model with key" in r.json()["error"]
    got = model_json(api, alice_model)
    assert (got["state"], got["target_replicas"]) == ("QUEUED", 1)
    assert ALICE_MODEL_ID not in get(api, "/ui/serving").text


def test_admin_pages_are_403_for_a_user(api: Api, alice: str) -> None:
    login(api, alice)
    csrf = page_csrf(api)
    for path in ("/ui/admin/users", "/ui/admin/cluster"):
        r = get(api, path)
        assert r.status_code == 403, path
        assert "Admins only" in r.text
    r = post(api, "/ui/admin/users", {"csrf": csrf, "user_id": "mallory"})
    assert r.status_code == 403
    r = post(api, "/ui/admin/users/alice/tokens", {"csrf": csrf})
    assert r.status_code == 403
    users = api.client.get("/api/v2/users", headers=api.headers()).json()["items"]
    assert "mallory" not in {u["user_id"] for u in users}
    assert next(u for u in users if u["user_id"] == "alice")["active_tokens"] == 1


def test_the_base_url_with_port_8000_is_on_the_list_and_detail_pages(
    api: Api, alice: str, alice_model: str
) -> None:
    login(api, alice)
    listing = get(api, "/ui/serving").text
    assert f'<code id="base-url">{BASE_URL}</code>' in listing
    assert 'data-copy-target="base-url"' in listing
    detail = get(api, f"/ui/serving/{alice_model}").text
    assert f'<code id="base-url">{BASE_URL}</code>' in detail
    curl = re.search(r'<code id="example-curl">(.*?)</code>', detail, re.S)
    python = re.search(r'<code id="example-python">(.*?)</code>', detail, re.S)
    assert curl and python
    assert f"curl {BASE_URL}/chat/completions" in html.unescape(curl.group(1))
    assert f'"model": "{ALICE_MODEL_ID}"' in html.unescape(curl.group(1))
    assert f'base_url="{BASE_URL}"' in html.unescape(python.group(1))
    assert f'model="{ALICE_MODEL_ID}"' in html.unescape(python.group(1))


def test_the_list_shows_state_replicas_and_an_empty_state(
    api: Api, alice: str, alice_model: str, bob: str
) -> None:
    login(api, alice)
    page = get(api, "/ui/serving").text
    row = re.search(rf'<tr id="row-{alice_model}".*?</tr>', page, re.S)
    assert row, "no row for the model"
    assert f'href="/ui/serving/{alice_model}"' in row.group(0)
    assert '<span class="badge badge-queued">QUEUED</span>' in row.group(0)
    assert "0 / 1" in row.group(0)
    assert 'data-confirm="Delete' in row.group(0)
    login(api, bob)
    page = get(api, "/ui/serving").text
    assert "No models yet" in page
    assert '<a class="button primary" href="/ui/serving/new">Deploy a model</a>' in page


def test_pages_refresh_themselves_only_while_something_is_moving(
    api: Api, alice: str, alice_model: str, bob: str
) -> None:
    login(api, alice)
    assert 'data-refresh="2000"' in get(api, "/ui/serving").text  # QUEUED
    assert 'data-refresh="2000"' in get(api, f"/ui/serving/{alice_model}").text
    login(api, bob)
    assert "data-refresh" not in get(api, "/ui/serving").text  # nothing to watch
    base = {"generation": 1, "observed_generation": 1, "ready_replicas": 1, "target_replicas": 1}
    assert needs_refresh({**base, "state": "DEPLOYING"})
    assert not needs_refresh({**base, "state": "RUNNING"})
    assert needs_refresh({**base, "state": "RUNNING", "target_replicas": 2})  # scaling up
    assert not needs_refresh({**base, "state": "FAILED"})


def test_static_files_are_served_and_nothing_comes_from_elsewhere(
    api: Api, alice: str, alice_model: str
) -> None:
    css = api.client.get("/ui/static/argus.css")
    js = api.client.get("/ui/static/argus.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    login(api, alice)
    for path in ("/ui/serving", f"/ui/serving/{alice_model}", "/ui/serving/new"):
        page = get(api, path).text
        assert not re.search(r'(src|href)="(https?:)?//', page), path
        assert "<script>" not in page  # no inline script: the CSP forbids it
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


# -- forms: CSRF and origin --------------------------------------------------------------
def test_a_post_without_or_with_a_wrong_csrf_is_refused_and_changes_nothing(
    api: Api, alice: str, alice_model: str
) -> None:
    login(api, alice)
    for data in ({}, {"csrf": "0" * 32}, {"csrf": "é"}):
        r = post(api, f"/ui/serving/{alice_model}/scale", {**data, "num_replicas": "2"})
        assert r.status_code == 403, data
        assert "security token" in r.text
        r = post(api, f"/ui/serving/{alice_model}/delete", data)
        assert r.status_code == 403
        r = post(api, "/ui/serving/new", {**data, "spec": spec_yaml("other")})
        assert r.status_code == 403
    got = model_json(api, alice_model)
    assert (got["state"], got["target_replicas"], got["generation"]) == ("QUEUED", 1, 1)
    listed = api.client.get("/api/v2/serve/models", headers=api.headers()).json()
    assert listed["total"] == 1
    login(api, ADMIN_TOKEN)
    r = post(api, "/ui/admin/users", {"csrf": "x", "user_id": "carol"})
    assert r.status_code == 403
    assert api.client.get("/api/v2/users/carol/tokens", headers=api.headers()).status_code == 404


def test_a_cross_origin_post_is_refused(api: Api, alice: str, alice_model: str) -> None:
    login(api, alice)
    csrf = page_csrf(api)
    for origin in ("http://evil.example", "null", "http://testserver.evil.example"):
        r = post(
            api,
            f"/ui/serving/{alice_model}/scale",
            {"csrf": csrf, "num_replicas": "2"},
            origin=origin,
        )
        assert r.status_code == 403, origin
        assert "another site" in r.text
    assert model_json(api, alice_model)["target_replicas"] == 1
    r = api.client.post(
        "/ui/login",
        data={"token": alice},
        headers={"origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    r = post(
        api,
        f"/ui/serving/{alice_model}/scale",
        {"csrf": csrf, "num_replicas": "2"},
        origin="http://testserver",
    )
    assert r.status_code == 303
    assert model_json(api, alice_model)["target_replicas"] == 2


# -- the spec editor -----------------------------------------------------------------------
def test_the_editor_is_prefilled_with_the_demo_spec(api: Api, alice: str) -> None:
    login(api, alice)
    page = get(api, "/ui/serving/new").text
    area = re.search(r'<textarea id="spec"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert area
    assert html.unescape(area.group(1)) == DEMO_SPEC_YAML


def test_a_bad_spec_is_shown_again_with_each_error_next_to_its_field(api: Api, alice: str) -> None:
    login(api, alice)
    typed = (
        "model_id: smol\r\n"
        "model_source: $HOME/common/hf/tiny\r\n"
        "num_replicas: 1.5\r\n"
        "engine_kwargs:\r\n"
        "  max_model_len: 2048\r\n"
        "  trust_remote_code: true\r\n"
        "# <b>not bold</b>\r\n"
    )
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": typed})
    assert r.status_code == 422
    page = r.text
    # The text the user typed is still in the editor (line ends as the browser shows them).
    area = re.search(r'<textarea id="spec"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert area
    assert html.unescape(area.group(1)) == typed.replace("\r\n", "\n")
    assert "<b>not bold</b>" not in page  # escaped
    # The API refuses the same spec with the same message.
    api_error = api.post_spec(alice, typed).json()["error"]
    assert [d["field"] for d in api_error["details"]] == ["engine_kwargs.trust_remote_code"]
    # The error sits right under the line where the field is written.
    line = re.search(
        r'<div class="spec-line has-error"><span class="ln">6</span>'
        r"<code>  trust_remote_code: true</code></div>\s*"
        r'<div class="field-error" data-field="engine_kwargs.trust_remote_code" data-line="6">'
        r"(.*?)</div>",
        page,
        re.S,
    )
    assert line, page
    assert html.escape(api_error["details"][0]["message"], quote=False) in line.group(1)
    assert api.client.get("/api/v2/serve/models", headers=api.headers()).json()["total"] == 0

    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": spec_yaml(num_replicas=0)})
    assert r.status_code == 422
    assert re.search(
        r'<code>num_replicas: 0</code></div>\s*<div class="field-error" data-field="num_replicas"',
        r.text,
    )


def test_a_spec_error_without_a_line_and_a_forbidden_source_are_shown_too(
    api: Api, alice: str
) -> None:
    login(api, alice)
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": "model_id: smol\n"})
    assert r.status_code == 422
    assert '<li class="field-error" data-field="model_source"><code>model_source</code>: ' in r.text
    assert "is required" in r.text
    r = post(
        api,
        "/ui/serving/new",
        {"csrf": page_csrf(api), "spec": "model_id: smol\nmodel_source: /etc\n"},
    )
    assert r.status_code == 403
    assert re.search(r'<code>model_source: /etc</code></div>\s*<div class="field-error"', r.text)
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": "model_id: [smol\n"})
    assert r.status_code == 400
    assert "not valid YAML" in r.text
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": "x" * (32 * 1024 + 1)})
    assert r.status_code == 413


def test_a_good_spec_goes_to_the_models_page(api: Api, alice: str) -> None:
    make_model_folder(api.storage_root / "hf" / DEMO_MODEL_DIRNAME)
    login(api, alice)
    typed = DEMO_SPEC_YAML.replace("\n", "\r\n")
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": typed})
    assert r.status_code == 303
    key = r.headers["location"].removeprefix("/ui/serving/")
    assert re.fullmatch(r"mdl_[0-9a-f]{20}", key)
    assert f"Accepted {ALICE_MODEL_ID}: it is QUEUED" in flash_of(api, r)
    page = get(api, f"/ui/serving/{key}").text
    assert f'<code id="model-id">{ALICE_MODEL_ID}</code>' in page
    assert '<span class="badge badge-queued">QUEUED</span>' in page
    assert 'data-event="CREATED"' in page
    assert "model_source: " + str(api.storage_root / "hf" / DEMO_MODEL_DIRNAME) in page
    with api.ctx.db.read() as s:
        stored = store.get_serve_model(s, key)
        assert stored is not None
        assert stored.spec_yaml == DEMO_SPEC_YAML  # what the user saw, without CRs
    # Posting the same model_id again from the editor updates it in place.
    r = post(
        api,
        "/ui/serving/new",
        {"csrf": page_csrf(api), "spec": DEMO_SPEC_YAML.replace("2048", "1024")},
    )
    assert r.headers["location"] == f"/ui/serving/{key}"
    assert "updated in place" in flash_of(api, r)
    edit = get(api, f"/ui/serving/new?edit={key}").text
    assert "max_model_len: 1024" in edit


# -- scale and delete ----------------------------------------------------------------------
def test_scale_and_delete_through_the_forms(api: Api, alice: str, alice_model: str) -> None:
    login(api, alice)
    csrf = page_csrf(api, f"/ui/serving/{alice_model}")
    r = post(api, f"/ui/serving/{alice_model}/scale", {"csrf": csrf, "num_replicas": "2"})
    assert r.headers["location"] == f"/ui/serving/{alice_model}"
    assert flash_of(api, r) == f"Scaling {ALICE_MODEL_ID} to 2 replica(s)."
    assert model_json(api, alice_model)["target_replicas"] == 2

    r = post(api, f"/ui/serving/{alice_model}/scale", {"csrf": csrf, "num_replicas": "1.5"})
    assert "must be a whole number" in flash_of(api, r)
    r = post(api, f"/ui/serving/{alice_model}/scale", {"csrf": csrf, "num_replicas": "99"})
    assert "99 is more than this cluster allows (16)" in flash_of(api, r)
    r = post(
        api,
        f"/ui/serving/{alice_model}/scale",
        {"csrf": csrf, "num_replicas": "3", "back": "list"},
    )
    assert r.headers["location"] == "/ui/serving"
    assert model_json(api, alice_model)["target_replicas"] == 3

    r = post(api, f"/ui/serving/{alice_model}/delete", {"csrf": csrf})
    assert r.headers["location"] == f"/ui/serving/{alice_model}"
    assert flash_of(api, r) == f"Deleting {ALICE_MODEL_ID}: it is DELETING."
    assert model_json(api, alice_model)["state"] == "DELETING"
    page = get(api, f"/ui/serving/{alice_model}").text
    assert '<span class="badge badge-deleting">DELETING</span>' in page
    assert f"/ui/serving/{alice_model}/scale" not in page
    r = post(api, f"/ui/serving/{alice_model}/scale", {"csrf": csrf, "num_replicas": "1"})
    assert "being deleted" in flash_of(api, r)


# -- admin ---------------------------------------------------------------------------------
def test_the_admin_creates_a_user_issues_revokes_and_disables(api: Api) -> None:
    login(api, ADMIN_TOKEN)
    csrf = page_csrf(api, "/ui/admin/users")

    r = post(api, "/ui/admin/users", {"csrf": csrf, "user_id": "Bad Id"})
    assert r.status_code == 422
    assert 'value="Bad Id"' in r.text  # what was typed stays in the field
    assert re.search(r'<div class="field-error" id="user-id-error" data-field="user_id">', r.text)
    r = post(api, "/ui/admin/users", {"csrf": csrf, "user_id": "carol"})
    assert r.headers["location"] == "/ui/admin/users#user-carol"
    assert "Created user carol" in flash_of(api, r)
    r = post(api, "/ui/admin/users", {"csrf": csrf, "user_id": "carol"})
    assert r.status_code == 409
    assert "already exists" in r.text

    r = post(api, "/ui/admin/users/carol/tokens", {"csrf": csrf})
    assert r.status_code == 200
    tokens = re.findall(r"argus_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", r.text)
    assert len(set(tokens)) == 1
    token = tokens[0]
    assert f'<code id="new-token">{token}</code>' in r.text
    assert 'data-copy-target="new-token"' in r.text
    assert "only time it is shown" in r.text
    assert 'data-replace-url="/ui/admin/users"' in r.text  # a reload shows the plain list
    assert token not in get(api, "/ui/admin/users").text  # shown once

    login(api, token)  # carol can log in with it
    assert get(api, "/ui/serving").status_code == 200

    login(api, ADMIN_TOKEN)
    csrf = page_csrf(api, "/ui/admin/users")
    token_id = token.split("_")[1]
    r = post(api, f"/ui/admin/tokens/{token_id}/revoke", {"csrf": csrf})
    assert f"Revoked token {token_id} of carol" in flash_of(api, r)
    assert re.search(
        rf'<tr id="token-{token_id}".*?revoked ', get(api, "/ui/admin/users").text, re.S
    )
    r = api.client.post("/ui/login", data={"token": token})
    assert r.status_code == 401

    r = post(api, "/ui/admin/users/carol/tokens", {"csrf": csrf})
    second = re.findall(r"argus_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", r.text)[0]
    r = post(api, "/ui/admin/users/carol/disabled", {"csrf": csrf, "disabled": "true"})
    assert "Disabled user carol" in flash_of(api, r)
    assert api.client.post("/ui/login", data={"token": second}).status_code == 401
    r = post(api, "/ui/admin/users/carol/tokens", {"csrf": csrf})
    assert "is disabled" in flash_of(api, r)
    r = post(api, "/ui/admin/users/carol/disabled", {"csrf": csrf, "disabled": "false"})
    assert "Enabled user carol" in flash_of(api, r)
    login(api, second)
    r = post(api, "/ui/admin/users/nobody/tokens", {"csrf": page_csrf(api)})
    assert r.status_code == 403  # carol is no admin


def test_the_cluster_page_before_and_after_the_reconciler_looked(api: Api) -> None:
    login(api, ADMIN_TOKEN)
    assert "No status yet" in get(api, "/ui/admin/cluster").text
    fake = FakeServeClient()
    rec = build_loop(api.settings, api.ctx.db, fake)
    api.ctx.status = rec.status
    rec.tick()
    page = get(api, "/ui/admin/cluster").text
    assert '<strong id="cpu-total">16 / 16</strong>' in page
    assert '<strong id="gpu-total">0 / 0</strong>' in page  # a CPU cluster
    assert "<code>node-1</code>" in page
    assert "Serve application <code>argus-llm</code>" in page


# -- try it ----------------------------------------------------------------------------------
@pytest.fixture
def openai_stub() -> Iterator[FakeOpenAI]:
    stub = FakeOpenAI()
    yield stub
    stub.close()


def make_running(api: Api, token: str) -> str:
    fake = FakeServeClient()
    rec = build_loop(api.settings, api.ctx.db, fake)
    rec.clock = lambda: datetime.now(UTC)
    api.ctx.status = rec.status
    key = deploy_api(api, token)
    rec.tick()
    fake.set_ready(model_json(api, key)["model_id"])
    rec.tick()
    assert model_json(api, key)["state"] == "RUNNING"
    return key


def test_try_it_on_a_model_that_is_not_running_says_so(
    api: Api, alice: str, alice_model: str
) -> None:
    login(api, alice)
    csrf = page_csrf(api, f"/ui/serving/{alice_model}")
    r = post(api, f"/ui/serving/{alice_model}/try", {"csrf": csrf, "message": "Hi"})
    assert r.status_code == 409
    assert r.json() == {"ok": False, "error": "model is not RUNNING yet (it is QUEUED)"}
    r = post(api, f"/ui/serving/{alice_model}/try", {"csrf": csrf, "message": "  "})
    assert (r.status_code, r.json()["error"]) == (422, "message: type a message first")
    r = post(api, f"/ui/serving/{alice_model}/try", {"message": "Hi"})
    assert r.status_code == 403


def events_of(r: Any) -> list[dict[str, Any]]:
    assert r.headers["content-type"].startswith("application/x-ndjson"), r.text
    return [json.loads(line) for line in r.text.splitlines()]


def alice_playground(
    api_factory: Callable[..., Api], openai_stub: FakeOpenAI
) -> tuple[Api, str, str, str]:
    """An argus whose :8000 is the stub; alice logged in on her RUNNING model's page."""
    api = api_factory(ARGUS_SERVE_PORT=str(openai_stub.port), ARGUS_SERVE_HOST="0.0.0.0")
    alice = api.new_user("alice")
    key = make_running(api, alice)
    login(api, alice)
    return api, alice, key, page_csrf(api, f"/ui/serving/{key}")


def test_the_playground_streams_the_answer_with_its_usage_and_settings(
    api_factory: Callable[..., Api], openai_stub: FakeOpenAI
) -> None:
    api, alice, key, csrf = alice_playground(api_factory, openai_stub)
    form = {"csrf": csrf, "message": "Capital of France?", "system": "Be brief."}
    r = post(api, f"/ui/serving/{key}/try", form | {"temperature": "0.7", "max_tokens": "64"})
    assert r.status_code == 200, r.text
    events = events_of(r)
    assert events[0] == {
        "model": ALICE_MODEL_ID,
        "settings": {"temperature": 0.7, "max_tokens": 64, "system": "Be brief."},
    }
    deltas = [e["delta"] for e in events if "delta" in e]
    assert len(deltas) == 6  # one event per word, as the endpoint streamed them
    assert "".join(deltas) == "The capital of France is Paris."
    done = events[-1]
    assert done["done"] is True
    assert done["usage"] == {"prompt_tokens": 9, "completion_tokens": 6}
    assert done["finish_reason"] == "stop"

    (sent,) = openai_stub.requests
    assert sent["path"] == "/v1/chat/completions"
    # The user's own token: the gate checks, limits and meters the playground as any client.
    assert sent["authorization"] == f"Bearer {alice}"
    assert sent["body"] == {
        "model": ALICE_MODEL_ID,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.7,
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    # Empty settings take the defaults: temperature 0, 128 tokens, no system prompt.
    r = post(api, f"/ui/serving/{key}/try", {"csrf": csrf, "message": "Hi", "temperature": ""})
    assert events_of(r)[0]["settings"] == {"temperature": 0.0, "max_tokens": 128, "system": ""}
    assert openai_stub.requests[-1]["body"]["messages"] == [{"role": "user", "content": "Hi"}]

    # The endpoint's own refusal keeps its status where it is the user's to act on.
    openai_stub.refuse = (429, "over 2 requests a minute; retry in 41 s")
    r = post(api, f"/ui/serving/{key}/try", {"csrf": csrf, "message": "Hello?"})
    assert r.status_code == 429
    assert r.json()["error"] == "the model refused: over 2 requests a minute; retry in 41 s"
    openai_stub.refuse = (500, "engine died")
    r = post(api, f"/ui/serving/{key}/try", {"csrf": csrf, "message": "Hello?"})
    assert (r.status_code, r.json()["error"]) == (502, "the model answered HTTP 500: engine died")

    openai_stub.close()  # nothing listens there any more
    r = post(api, f"/ui/serving/{key}/try", {"csrf": csrf, "message": "Hello?"})
    assert r.status_code == 502
    assert r.json()["error"].startswith("could not reach the model: ")


PLAYGROUND_REFUSALS = [
    ({"temperature": "hot"}, "temperature: a number from 0 to 2"),
    ({"temperature": "2.5"}, "temperature: a number from 0 to 2"),
    ({"temperature": "-0.1"}, "temperature: a number from 0 to 2"),
    ({"temperature": "nan"}, "temperature: a number from 0 to 2"),
    ({"max_tokens": "0"}, "max_tokens: a whole number from 1 to 1024"),
    ({"max_tokens": "1025"}, "max_tokens: a whole number from 1 to 1024"),
    ({"max_tokens": "9" * 400}, "max_tokens: a whole number from 1 to 1024"),
    ({"max_tokens": "1.5"}, "max_tokens: a whole number from 1 to 1024"),
    ({"system": "x" * 4001}, "system: keep it under 4000 characters"),
    ({"message": "x" * 4001}, "message: keep it under 4000 characters"),
    (
        {"temperature": "9", "max_tokens": "-1"},
        "temperature: a number from 0 to 2; max_tokens: a whole number from 1 to 1024",
    ),
]


def test_the_playground_refuses_bad_settings_before_sending(
    api_factory: Callable[..., Api], openai_stub: FakeOpenAI
) -> None:
    api, _, key, csrf = alice_playground(api_factory, openai_stub)
    for fields, error in PLAYGROUND_REFUSALS:
        r = post(api, f"/ui/serving/{key}/try", {"csrf": csrf, "message": "Hi"} | fields)
        assert (r.status_code, r.json()) == (422, {"ok": False, "error": error}), fields
    assert openai_stub.requests == []


# -- pure helper ---------------------------------------------------------------------------
def test_locate_field_finds_top_level_and_nested_keys() -> None:
    text = "model_id: a\nengine_kwargs:\n  model_id: x\n  dtype: f\nnum_replicas: 2\n"
    assert locate_field(text, "model_id") == 0
    assert locate_field(text, "engine_kwargs.dtype") == 3
    assert locate_field(text, "engine_kwargs.model_id") == 2
    assert locate_field(text, "num_replicas") == 4
    assert locate_field(text, "engine_kwargs.seed") is None
    assert locate_field(text, "model_source") is None
