from __future__ import annotations

import pytest

from tests.integration.conftest import Api

pytestmark = pytest.mark.integration


def test_healthz_needs_no_token(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_ray(api: Api) -> None:
    r = api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "ray": "ok"}


def test_readyz_is_503_when_ray_is_gone(api: Api) -> None:
    api.ray.error = "connection refused"
    r = api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["ray"] == "unreachable (RuntimeError)"  # no raw exception text
    assert r.json()["checks"]["database"] == "ok"


def test_readyz_is_503_when_the_database_is_gone(api: Api) -> None:
    api.ctx.db.engine.dispose()
    api.ctx.db.ping = _broken  # type: ignore[method-assign]
    r = api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("unreachable")


def _broken() -> None:
    raise OSError("disk gone")
