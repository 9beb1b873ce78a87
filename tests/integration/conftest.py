"""The app in-process on a real SQLite file, with a Ray probe that tests can break."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from argus.api.deps import AppContext
from argus.config import Settings
from argus.runtime.bootstrap import build_context, build_loop
from argus.runtime.loop import ControlLoop
from argus.web import create_app
from tests.conftest import ADMIN_TOKEN, make_model_folder, make_settings
from tests.fake_cluster import FakeServeClient


class FakeRayProbe:
    def __init__(self) -> None:
        self.error: str | None = None

    def ping(self) -> None:
        if self.error:
            raise RuntimeError(self.error)


class StepClock:
    """A clock tests move by hand; every call returns the current time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Api:
    client: TestClient
    ctx: AppContext
    ray: FakeRayProbe
    clock: StepClock
    settings: Settings

    def headers(self, token: str = ADMIN_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def new_user(self, user_id: str, *, commands: bool = False) -> str:
        """Create a user (allowed to run `command` tasks if asked) and return a fresh token."""
        r = self.client.post("/api/v2/users", json={"user_id": user_id}, headers=self.headers())
        assert r.status_code == 201, r.text
        if commands:
            r = self.client.patch(
                f"/api/v2/users/{user_id}", json={"allow_commands": True}, headers=self.headers()
            )
            assert r.status_code == 200, r.text
        r = self.client.post(f"/api/v2/users/{user_id}/tokens", headers=self.headers())
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def post_spec(self, token: str, body: str, content_type: str = "application/yaml"):  # type: ignore[no-untyped-def]
        return self.client.post(
            "/api/v2/serve/models",
            content=body.encode(),
            headers={**self.headers(token), "Content-Type": content_type},
        )

    @property
    def storage_root(self) -> Path:
        return self.settings.storage_root


@pytest.fixture
def api_factory(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []

    def make(**env: str) -> Api:
        settings = make_settings(tmp_path / f"data{len(made)}", **env)
        ray = FakeRayProbe()
        ctx = build_context(settings, ray=ray)
        clock = StepClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
        ctx.clock = clock
        make_model_folder(settings.storage_root / "hf" / "tiny")
        api = Api(TestClient(create_app(ctx)), ctx, ray, clock, settings)
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.close()
        api.ctx.db.dispose()


@pytest.fixture
def fake() -> FakeServeClient:
    """The steppable stand-in for Ray Serve a test's reconciler drives."""
    return FakeServeClient()


@pytest.fixture
def api(api_factory: Callable[..., Api]) -> Api:
    return api_factory()


class Clock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rec(api: Api, fake: FakeServeClient) -> ControlLoop:
    """The control loop on the test's store and fake cluster, ticked by hand."""
    r = build_loop(api.settings, api.ctx.db, fake)
    r.clock = lambda: datetime.now(UTC)
    r.monotonic = Clock()
    api.ctx.status = r.status
    return r
