"""The serving store on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from argus.serving.states import ServeState, Trigger
from argus.store import serving as store
from argus.store.db import Database
from argus.store.schema import ServeModel
from argus.store.users import create_user

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'a.db'}")
    d.migrate()
    with d.write() as s:
        create_user(s, "alice", T0)
        create_user(s, "bob", T0)
    return d


def resolved(n: int = 1, model_id: str = "smol") -> dict[str, object]:
    return {
        "model_id": model_id,
        "model_source": "/m",
        "num_replicas": n,
        "gpus_per_replica": 1,
        "engine_kwargs": {},
    }


def upsert(
    db: Database, user: str = "alice", n: int = 1, now: datetime = T0, suffix: str = "smol"
) -> store.UpsertResult:
    with db.write() as s:
        return store.upsert_serve_model(
            s,
            user_id=user,
            suffix=suffix,
            spec_yaml=f"n: {n}",
            resolved_spec=resolved(n, suffix),
            now=now,
        )


def events(db: Database, key: str) -> list[str]:
    with db.read() as s:
        return [e.event_type for e in store.list_serve_events(s, key)]


def test_pragmas(db: Database) -> None:
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_migrate_is_idempotent(db: Database) -> None:
    db.migrate()
    with db.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"


def test_create_then_update_in_place(db: Database) -> None:
    first = upsert(db)
    assert first.created and first.model.state == "QUEUED"
    assert first.model.model_id == "alice-202611281200-smol"
    later = upsert(db, n=3, now=T0 + timedelta(hours=5))
    assert not later.created
    assert later.model.model_key == first.model.model_key
    assert later.model.model_id == first.model.model_id  # the prefix keeps the creation time
    assert (later.model.generation, later.model.target_replicas) == (2, 3)
    assert events(db, first.model.model_key) == ["CREATED", "SPEC_UPDATED"]


def test_same_spec_again_writes_nothing(db: Database) -> None:
    key = upsert(db).model.model_key
    again = upsert(db)
    assert again.model.generation == 1
    assert events(db, key) == ["CREATED"]


def test_after_deleted_the_suffix_is_free(db: Database) -> None:
    first = upsert(db).model
    with db.write() as s:
        m = store.get_serve_model(s, first.model_key)
        assert m is not None
        store.request_delete(s, m, T0)
        store.set_serve_model_state(s, m, Trigger.REMOVED, T0)
    second = upsert(db, now=T0 + timedelta(minutes=3)).model
    assert second.model_key != first.model_key
    assert second.model_id == "alice-202611281203-smol"


def test_partial_unique_index_refuses_two_live_rows(db: Database) -> None:
    upsert(db)
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
                target_replicas=1,
                ready_replicas=0,
                created_at=T0,
                updated_at=T0,
            )
        )


def test_two_users_may_share_a_suffix(db: Database) -> None:
    a, b = upsert(db, "alice").model, upsert(db, "bob").model
    assert a.model_key != b.model_key


def test_events_are_append_only(db: Database) -> None:
    key = upsert(db).model.model_key
    with pytest.raises(IntegrityError, match="append-only"), db.write() as s:
        s.execute(text("UPDATE serve_events SET event_type='X'"))
    with pytest.raises(IntegrityError, match="append-only"), db.write() as s:
        s.execute(text("DELETE FROM serve_events"))
    assert events(db, key) == ["CREATED"]


def test_state_and_event_commit_together(db: Database) -> None:
    key = upsert(db).model.model_key
    with pytest.raises(RuntimeError), db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        store.set_serve_model_state(s, m, Trigger.APPLIED, T0)
        raise RuntimeError("crash between the writes")
    with db.read() as s:
        m = store.get_serve_model(s, key)
        assert m is not None and m.state == "QUEUED"
    assert events(db, key) == ["CREATED"]


def test_failed_state_keeps_the_error_and_a_new_spec_clears_it(db: Database) -> None:
    key = upsert(db).model.model_key
    with db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        store.set_serve_model_state(s, m, Trigger.APPLIED, T0)
        store.set_serve_model_state(s, m, Trigger.FAILED, T0, error_summary="OOM")
    with db.read() as s:
        m = store.get_serve_model(s, key)
        assert m is not None and (m.state, m.error_summary) == ("FAILED", "OOM")
    retried = upsert(db).model  # the same spec again retries a FAILED model
    assert (retried.state, retried.error_summary, retried.generation) == ("QUEUED", None, 2)


def test_list_filters_orders_and_pages(db: Database) -> None:
    for i in range(5):
        upsert(db, suffix=f"m{i}", now=T0 + timedelta(minutes=i))
    upsert(db, "bob", suffix="b")
    with db.read() as s:
        items, total = store.list_serve_models(s, user_id="alice", limit=2, offset=1)
        assert total == 5
        assert [m.model_id_suffix for m in items] == ["m3", "m2"]
        _, everyone = store.list_serve_models(s)
        assert everyone == 6


def test_list_hides_deleted_unless_asked(db: Database) -> None:
    key = upsert(db).model.model_key
    with db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        store.request_delete(s, m, T0)
        assert not store.request_delete(s, m, T0)  # already DELETING: nothing written
        store.set_serve_model_state(s, m, Trigger.REMOVED, T0)
    with db.read() as s:
        assert store.list_serve_models(s, "alice")[1] == 0
        assert store.list_serve_models(s, "alice", include_deleted=True)[1] == 1
    assert events(db, key) == ["CREATED", "DELETE_REQUESTED", "REMOVED"]


def test_pick_next_runnable_change(db: Database) -> None:
    a = upsert(db, suffix="a", now=T0).model.model_key
    b = upsert(db, suffix="b", now=T0 + timedelta(seconds=1)).model.model_key
    with db.write() as s:
        nxt = store.pick_next_runnable_serve_change(s)
        assert nxt is not None and nxt.model_key == a
        nxt.observed_generation = nxt.generation
        store.set_serve_model_state(s, nxt, Trigger.APPLIED, T0)
        store.set_serve_model_state(s, nxt, Trigger.READY, T0)
        nxt2 = store.pick_next_runnable_serve_change(s)
        assert nxt2 is not None and nxt2.model_key == b
        nxt2.observed_generation = nxt2.generation
        store.set_serve_model_state(s, nxt2, Trigger.APPLIED, T0)
        store.set_serve_model_state(s, nxt2, Trigger.READY, T0)
        assert store.pick_next_runnable_serve_change(s) is None
        m = store.get_serve_model(s, a)
        assert m is not None
        store.scale_serve_model(s, m, 2, T0)
        again = store.pick_next_runnable_serve_change(s)
        assert again is not None and again.model_key == a
        assert ServeState(again.state) is ServeState.RUNNING


def test_scale_to_the_same_count_writes_nothing(db: Database) -> None:
    key = upsert(db).model.model_key
    with db.write() as s:
        m = store.get_serve_model(s, key)
        assert m is not None
        assert not store.scale_serve_model(s, m, 1, T0)
        assert store.scale_serve_model(s, m, 2, T0)
    assert events(db, key) == ["CREATED", "SCALED"]


def test_a_reader_does_not_block_a_writer(db: Database) -> None:
    upsert(db)
    with db.read() as r:
        r.execute(text("SELECT * FROM serve_models")).all()
        upsert(db, suffix="other")  # would time out if the reader held a write lock


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises((ValueError, OperationalError)):
        upsert(db, now=datetime(2026, 1, 1))
