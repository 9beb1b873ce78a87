from __future__ import annotations

import pytest

from tests.conftest import spec_yaml
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


def test_a_full_disk_refuses_writes_with_a_503_and_reads_go_on(api: Api) -> None:
    """SQLite out of room (a page limit stands in for a full disk): the write is refused
    whole with a clear 503, nothing half-written stays, reads answer as before."""
    from sqlalchemy import event

    alice = api.new_user("alice")
    assert api.post_spec(alice, spec_yaml("before")).status_code == 202
    engine = api.ctx.db.engine

    def full(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        pages = cur.execute("PRAGMA page_count").fetchone()[0]
        cur.execute(f"PRAGMA max_page_count={pages}")
        cur.close()

    event.listen(engine, "connect", full)
    engine.dispose()  # new connections, each with the page limit
    try:
        big = spec_yaml("after") + "# " + "x" * 30_000 + "\n"
        r = api.post_spec(alice, big)
        assert r.status_code == 503, r.text
        assert "nothing was changed" in r.json()["error"]["message"]
        assert r.headers["Retry-After"] == "30"
        listed = api.client.get("/api/v2/serve/models", headers=api.headers(alice))
        assert listed.status_code == 200
        assert [m["model_id_suffix"] for m in listed.json()["items"]] == ["before"]
        assert api.client.get("/readyz").json()["checks"]["database"] == "ok"
    finally:
        event.remove(engine, "connect", full)
        engine.dispose()
