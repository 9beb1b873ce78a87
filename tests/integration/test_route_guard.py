"""Every /api/v2 route refuses a request without a token: a new route cannot be left open."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from argus.api.app import ROUTERS, build_api
from argus.ui import router as ui_router
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration
OPEN = {"/healthz", "/readyz"}
ADMIN_OUTSIDE_API = {"/metrics"}  # admin token unless server.metrics_public


def _routes(api: Api) -> list[tuple[str, str]]:
    out = []
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            for method in sorted(route.methods):
                out.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))
    return out


def test_there_are_routes_to_check(api: Api) -> None:
    assert len(_routes(api)) >= 12


def test_every_api_route_needs_a_token(api: Api) -> None:
    for method, path in _routes(api):
        r = api.client.request(method, path, content=b"model_id: x\n")
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "unauthorized"


def test_only_health_routes_are_outside_the_api(api: Api) -> None:
    others = {
        r.path
        for r in api.client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and not r.path.startswith(("/api/", "/ui"))
    }
    assert others == OPEN | ADMIN_OUTSIDE_API


def test_metrics_needs_a_token_by_default(api: Api) -> None:
    for path in ADMIN_OUTSIDE_API:
        r = api.client.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "unauthorized"


def test_routes_added_as_built_are_the_routes_fastapi_would_build(api: Api) -> None:
    """`include_routes` takes each router's routes as its module built them; FastAPI's own
    `include_router` builds them again. Both must give the same app: a router that relied
    on what `include_router` adds (an override, a prefix given at include time) would not."""
    ours = build_api(api.ctx)
    reference = FastAPI(title=ours.title, version=ours.version, description=ours.description)
    for router in ROUTERS:
        reference.include_router(router)
    assert ours.openapi() == reference.openapi()

    def table(app: FastAPI) -> list[tuple[str, str, list[str], bool]]:
        return [
            (r.path, r.name, sorted(r.methods), r.include_in_schema)
            for r in app.routes
            if isinstance(r, APIRoute)
        ]

    full = api.client.app  # type: ignore[attr-defined]
    reference.include_router(ui_router)
    assert table(full) == table(reference)
