"""The serving store and the serving control operations on a real SQLite file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from argus.auth.tokens import Principal
from argus.cluster.serve_app import EngineMode
from argus.errors import Conflict
from argus.quotas import Quota
from argus.serving import control
from argus.serving.spec import SpecLimits
from argus.serving.states import Trigger, transition
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeModel
from argus.store.users import create_user
from tests.conftest import HEAD_REVISION, make_model_folder

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
UNLIMITED = Quota(max_gpus=1000, max_models=1000, max_replicas=16)


@pytest.fixture
def ctx(tmp_path: Path) -> control.ServingContext:
    d = Database(f"sqlite:///{tmp_path / 'a.db'}")
    d.migrate()
    with d.write() as s:
        create_user(s, "alice", T0)
        create_user(s, "bob", T0)
    make_model_folder(tmp_path / "root" / "hf" / "tiny")
    return control.ServingContext(
        db=d,
        storage_root=tmp_path / "root",
        limits=SpecLimits(EngineMode.CPU, max_replicas=16),
        quotas=UNLIMITED,
    )


@pytest.fixture
def db(ctx: control.ServingContext) -> Database:
    return ctx.db


@dataclass
class Upserted:
    model: ServeModel
    created: bool


def upsert(
    ctx: control.ServingContext,
    user: str = "alice",
    n: int = 1,
    now: datetime = T0,
    suffix: str = "smol",
) -> Upserted:
    text_ = f"model_id: {suffix}\nmodel_source: $HOME/common/hf/tiny\nnum_replicas: {n}\n"
    model, created = control.submit_spec(ctx, Principal(user, False), text_, now)
    return Upserted(model, created)


def events(db: Database, key: str) -> list[str]:
    with db.read() as s:
        return [e.event_type for e in reversed(store.list_serve_events(s, key)[0])]


def move(db: Database, key: str, *triggers: Trigger, error: str | None = None) -> None:
    with db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        for t in triggers:
            transition(s, m, t, T0, error_summary=error)


def test_pragmas(ctx: control.ServingContext, db: Database) -> None:
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_migrate_is_idempotent(ctx: control.ServingContext, db: Database) -> None:
    db.migrate()
    with db.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION


def test_create_then_update_in_place(ctx: control.ServingContext, db: Database) -> None:
    first = upsert(ctx)
    assert first.created and first.model.state == "QUEUED"
    assert first.model.model_id == "alice-202611281200-smol"
    later = upsert(ctx, n=3, now=T0 + timedelta(hours=5))
    assert not later.created
    assert later.model.model_key == first.model.model_key
    assert later.model.model_id == first.model.model_id  # the prefix keeps the creation time
    assert later.model.generation == 2 and later.model.resolved_spec["num_replicas"] == 3
    assert later.model.gpus == 3
    assert events(db, first.model.model_key) == ["CREATED", "SPEC_UPDATED"]


def test_same_spec_again_writes_nothing(ctx: control.ServingContext, db: Database) -> None:
    key = upsert(ctx).model.model_key
    again = upsert(ctx)
    assert again.model.generation == 1
    assert events(db, key) == ["CREATED"]


def test_after_deleted_the_suffix_is_free(ctx: control.ServingContext, db: Database) -> None:
    first = upsert(ctx).model
    move(db, first.model_key, Trigger.DELETE_REQUESTED, Trigger.REMOVED)
    second = upsert(ctx, now=T0 + timedelta(minutes=3)).model
    assert second.model_key != first.model_key
    assert second.model_id == "alice-202611281203-smol"


def test_partial_unique_index_refuses_two_live_rows(
    ctx: control.ServingContext, db: Database
) -> None:
    upsert(ctx)
    with pytest.raises(IntegrityError), db.write() as s:
        s.add(
            ServeModel(
                model_key="mdl_x",
                user_id="alice",
                model_id_suffix="smol",
                model_id_prefix="p",
                model_id="p-smol",
                spec_yaml="",
                resolved_spec={},
                state="RUNNING",
                generation=1,
                observed_generation=0,
                ready_replicas=0,
                created_at=T0,
                updated_at=T0,
            )
        )


def test_two_users_may_share_a_suffix(ctx: control.ServingContext, db: Database) -> None:
    a, b = upsert(ctx, "alice").model, upsert(ctx, "bob").model
    assert a.model_key != b.model_key


def test_events_are_append_only(ctx: control.ServingContext, db: Database) -> None:
    key = upsert(ctx).model.model_key
    with pytest.raises(IntegrityError, match="append-only"), db.write() as s:
        s.execute(text("UPDATE serve_events SET event_type='X'"))
    with pytest.raises(IntegrityError, match="append-only"), db.write() as s:
        s.execute(text("DELETE FROM serve_events"))
    assert events(db, key) == ["CREATED"]


def test_state_and_event_commit_together(ctx: control.ServingContext, db: Database) -> None:
    key = upsert(ctx).model.model_key
    with pytest.raises(RuntimeError), db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        transition(s, m, Trigger.APPLIED, T0)
        raise RuntimeError("crash between the writes")
    with db.read() as s:
        m = store.get_serve_model(s, key)
        assert m is not None and m.state == "QUEUED"
    assert events(db, key) == ["CREATED"]


def test_failed_state_keeps_the_error_and_a_new_spec_clears_it(
    ctx: control.ServingContext, db: Database
) -> None:
    key = upsert(ctx).model.model_key
    move(db, key, Trigger.APPLIED)
    move(db, key, Trigger.FAILED, error="OOM")
    with db.read() as s:
        m = store.get_serve_model(s, key)
        assert m is not None and (m.state, m.error_summary) == ("FAILED", "OOM")
    retried = upsert(ctx).model  # the same spec again retries a FAILED model
    assert (retried.state, retried.error_summary, retried.generation) == ("QUEUED", None, 2)


def test_list_filters_orders_and_pages(ctx: control.ServingContext, db: Database) -> None:
    for i in range(5):
        upsert(ctx, suffix=f"m{i}", now=T0 + timedelta(minutes=i))
    upsert(ctx, "bob", suffix="b")
    with db.read() as s:
        items, total = store.list_serve_models(s, user_id="alice", limit=2, offset=1)
        assert total == 5
        assert [m.model_id_suffix for m in items] == ["m3", "m2"]
        _, everyone = store.list_serve_models(s)
        assert everyone == 6


def test_list_hides_deleted_unless_asked(ctx: control.ServingContext, db: Database) -> None:
    key = upsert(ctx).model.model_key
    alice = Principal("alice", False)
    control.delete(ctx, alice, key, T0)
    control.delete(ctx, alice, key, T0)  # already DELETING: nothing written
    move(db, key, Trigger.REMOVED)
    with pytest.raises(Conflict, match="DELETED and cannot be changed"):
        control.delete(ctx, alice, key, T0)
    with db.read() as s:
        assert store.list_serve_models(s, "alice")[1] == 0
        assert store.list_serve_models(s, "alice", include_deleted=True)[1] == 1
    assert events(db, key) == ["CREATED", "DELETE_REQUESTED", "REMOVED"]


def test_scale_to_the_same_count_writes_nothing(ctx: control.ServingContext, db: Database) -> None:
    key = upsert(ctx).model.model_key
    alice = Principal("alice", False)
    assert control.scale(ctx, alice, key, 1, T0).generation == 1
    scaled = control.scale(ctx, alice, key, 2, T0)
    assert (scaled.generation, scaled.gpus) == (2, 2)
    assert events(db, key) == ["CREATED", "SCALED"]


def test_a_reader_does_not_block_a_writer(ctx: control.ServingContext, db: Database) -> None:
    upsert(ctx)
    with db.read() as r:
        r.execute(text("SELECT * FROM serve_models")).all()
        upsert(ctx, suffix="other")  # would time out if the reader held a write lock


def test_naive_datetimes_are_refused(ctx: control.ServingContext, db: Database) -> None:
    with pytest.raises((ValueError, OperationalError)):
        upsert(ctx, now=datetime(2026, 1, 1))


def test_ids_that_ray_would_name_alike_are_refused(ctx: control.ServingContext) -> None:
    """Ray names a deployment after the model id with '.' as '_': a.b and a_b would share one."""
    upsert(ctx, suffix="a.b")
    with pytest.raises(Conflict, match="share Ray Serve's deployment name"):
        upsert(ctx, suffix="a_b")
    assert upsert(ctx, suffix="a.b", n=2).created is False  # the same suffix: an update


def test_a_model_id_another_user_already_serves_is_refused(
    ctx: control.ServingContext, db: Database
) -> None:
    """User ids may hold '-' and digits, so two users' ids could spell one model id."""
    with db.write() as s:
        create_user(s, "alice-202611281200-x", T0)
    first = upsert(ctx, suffix="x-202611281300-y").model
    assert first.model_id == "alice-202611281200-x-202611281300-y"
    with pytest.raises(Conflict, match="share Ray Serve's deployment name"):
        upsert(ctx, user="alice-202611281200-x", suffix="y", now=T0 + timedelta(hours=1))
