"""The app in-process on a real SQLite file, with a Ray probe that tests can break."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from fastapi.testclient import TestClient

from argus.api.deps import AppContext
from argus.config import Settings
from argus.runtime.bootstrap import build_context, build_loop
from argus.runtime.loop import ControlLoop
from argus.store.db import Database
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


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file at the newest migration, made once per worker: each app below starts
    on a copy. Migrating a fresh file took 48 ms of CPU (seven migrations' DDL) against
    12 ms for one already at the head, for each of some three hundred apps. Migrations from
    an empty file are tested on their own (tests/integration/test_store_serving.py)."""
    path = tmp_path_factory.mktemp("migrated") / "argus.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()  # its write-ahead log checkpointed into the file
    return path


def seed_database(settings: Settings, migrated: Path) -> None:
    """The data dir's database as a copy of `migrated`, unless it has one already."""
    target = settings.data_path / "argus.db"
    if settings.database.url is None and not target.exists():
        settings.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(migrated, target)


@pytest.fixture
def api_factory(tmp_path: Path, migrated_database: Path) -> Iterator[Callable[..., Api]]:
    made: list[Api] = []
    portals = ExitStack()

    def make(**env: str) -> Api:
        settings = make_settings(tmp_path / f"data{len(made)}", **env)
        seed_database(settings, migrated_database)
        ray = FakeRayProbe()
        ctx = build_context(settings, ray=ray)
        clock = StepClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
        ctx.clock = clock
        make_model_folder(settings.storage_root / "hf" / "tiny")
        client = TestClient(create_app(ctx))
        # One event loop (in its thread) for all of an app's requests, as a server has,
        # instead of a new one per request: 3 ms of CPU a request less here.
        client.portal = portals.enter_context(start_blocking_portal(**client.async_backend))
        api = Api(client, ctx, ray, clock, settings)
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.close()
    portals.close()
    for api in made:
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
