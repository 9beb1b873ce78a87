"""Backup and restore of the SQLite database, and what the reconciler makes of a restore."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from argus.runtime.bootstrap import build_loop
from argus.store.backup import (
    BackupError,
    backup_database,
    inspect_database,
    restore_database,
    sqlite_file,
)
from argus.store.db import Database
from tests.conftest import HEAD_REVISION, spec_yaml
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration
PREFIX = "alice-202611281200-"


def post(api: Api, token: str, suffix: str, **kw: object) -> str:
    r = api.post_spec(token, spec_yaml(model_id=suffix, **kw))
    assert r.status_code == 202, r.text
    return str(r.json()["model_key"])


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_a_backup_is_one_self_contained_private_file(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice")
    post(api, alice, "a")
    live = sqlite_file(api.settings.database_url)
    assert Path(f"{live}-wal").exists()  # the newest writes may sit in the WAL only
    dest = tmp_path / "argus-backup.db"
    result = backup_database(api.settings.database_url, dest)
    assert result.path == dest and result.size_bytes == dest.stat().st_size
    assert result.facts.revision == HEAD_REVISION
    assert result.facts.models == {"QUEUED": 1}
    assert result.facts.users == 2  # the admin and alice
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # it holds the token hashes
    assert rows(dest, "PRAGMA journal_mode") == [("delete",)]
    assert not Path(f"{dest}-wal").exists()
    assert rows(dest, "SELECT model_id FROM serve_models") == [(f"{PREFIX}a",)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_backups_taken_under_writes_are_consistent(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice")
    unlimited = {"max_models": 100_000, "max_gpus": 100_000}
    assert api.client.patch("/api/v2/users/alice", json=unlimited, headers=api.headers()).is_success
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            post(api, alice, f"m{i}")
            i += 1
            written.append(i)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    try:
        for n in range(3):
            while len(written) < 5 * (n + 1):  # each backup lands amid more writes
                time.sleep(0.01)
            dest = tmp_path / f"b{n}.db"
            backup_database(api.settings.database_url, dest)
            # a model and its CREATED event are one transaction: never one without the other
            models = rows(dest, "SELECT model_key FROM serve_models")
            created = rows(dest, "SELECT model_key FROM serve_events WHERE event_type='CREATED'")
            assert models and sorted(models) == sorted(created)
            seen.append(len(models))
    finally:
        stop.set()
        thread.join(30)
    assert thread.is_alive() is False and seen == sorted(seen) and seen[-1] > seen[0]


def test_a_backup_never_overwrites_unless_forced(api: Api, tmp_path: Path) -> None:
    dest = tmp_path / "b.db"
    dest.write_text("precious")
    with pytest.raises(BackupError, match="exists; pass --force"):
        backup_database(api.settings.database_url, dest)
    assert dest.read_text() == "precious"
    backup_database(api.settings.database_url, dest, force=True)
    assert inspect_database(dest).revision == HEAD_REVISION
    with pytest.raises(BackupError, match="is a folder"):
        backup_database(api.settings.database_url, tmp_path)
    with pytest.raises(BackupError, match="does not exist"):
        backup_database(api.settings.database_url, tmp_path / "nope" / "b.db")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://argus:s3cret@db.example/argus", "pg_dump"),
        ("sqlite://", "in memory"),
    ],
)
def test_only_sqlite_files_are_backed_up(url: str, needle: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match=needle) as e:
        backup_database(url, tmp_path / "b.db")
    assert "s3cret" not in str(e.value)


def test_restore_refuses_what_is_not_an_argus_database(api: Api, tmp_path: Path) -> None:
    url = api.settings.database_url
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x)")
    conn.close()
    cases = [
        (tmp_path / "missing.db", "no such file"),
        (text, "not a SQLite database"),
        (other, "not an argus database \\(no alembic_version, serve_models table\\)"),
    ]
    for path, needle in cases:
        with pytest.raises(BackupError, match=needle):
            restore_database(url, path, argus_pid=None)
    assert not (tmp_path / "missing.db").exists()  # looking did not create it


def test_restore_refuses_a_newer_schema(api: Api, tmp_path: Path) -> None:
    dest = tmp_path / "b.db"
    backup_database(api.settings.database_url, dest)
    conn = sqlite3.connect(dest)
    conn.execute("UPDATE alembic_version SET version_num = '0099'")
    conn.commit()
    conn.close()
    with pytest.raises(BackupError, match="schema revision 0099, which this argus does not know"):
        restore_database(api.settings.database_url, dest, argus_pid=None)


def test_restore_refuses_while_argus_runs(api: Api, tmp_path: Path) -> None:
    dest = tmp_path / "b.db"
    backup_database(api.settings.database_url, dest)
    with pytest.raises(BackupError, match=f"argus is running \\(pid {os.getpid()}\\)"):
        restore_database(api.settings.database_url, dest, argus_pid=os.getpid())


def test_restore_brings_the_cluster_back_to_the_backup(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice")
    fake = FakeServeClient()
    rec = build_loop(api.settings, api.ctx.db, fake)
    a, b = post(api, alice, "a"), post(api, alice, "b")
    rec.tick()
    fake.set_ready(f"{PREFIX}a")
    fake.set_ready(f"{PREFIX}b")
    rec.tick()
    backup = tmp_path / "before-changes.db"
    backup_database(api.settings.database_url, backup)

    # after the backup: a deleted, b scaled to 3, c created, all of it applied
    api.client.delete(f"/api/v2/serve/models/{a}", headers=api.headers(alice))
    api.client.patch(
        f"/api/v2/serve/models/{b}", json={"num_replicas": 3}, headers=api.headers(alice)
    )
    post(api, alice, "c")
    for _ in range(2):
        rec.tick()
    assert sorted(d.model_id for d in fake.deployments.values()) == [f"{PREFIX}b", f"{PREFIX}c"]

    # argus stops; the database is restored; argus starts again over the same cluster
    api.ctx.db.dispose()
    result = restore_database(
        api.settings.database_url,
        backup,
        argus_pid=None,
        now=datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
    )
    assert result.facts.models == {"RUNNING": 2}
    assert result.previous is not None
    assert result.previous.name == "argus.db.before-restore-20261129T080000Z"
    assert inspect_database(result.previous).models == {"DELETED": 1, "RUNNING": 1, "DEPLOYING": 1}
    db = Database(api.settings.database_url)
    try:
        restarted = build_loop(api.settings, db, fake)
        for _ in range(3):
            restarted.tick()
    finally:
        db.dispose()
    assert fake.apply_calls[-1] == [f"{PREFIX}a", f"{PREFIX}b"]
    assert sorted(fake.deployments) == [f"LLMServer:{PREFIX}a", f"LLMServer:{PREFIX}b"]
    replicas = fake._dep(f"{PREFIX}b").config["deployment_config"]["num_replicas"]  # type: ignore[index]
    assert replicas == 1  # the backup's replica count, not the later scale


def test_restore_into_an_empty_data_dir(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice")
    post(api, alice, "a")
    backup = tmp_path / "b.db"
    backup_database(api.settings.database_url, backup)
    url = f"sqlite:///{tmp_path / 'fresh' / 'argus.db'}"
    result = restore_database(url, backup, argus_pid=None)
    assert result.previous is None
    assert result.facts.models == {"QUEUED": 1}
    assert rows(result.database, "PRAGMA journal_mode") == [("wal",)]


def test_a_backup_of_a_database_that_is_not_argus_writes_nothing(tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.db"
    conn = sqlite3.connect(stranger)
    conn.execute("CREATE TABLE things (x)")
    conn.close()
    dest = tmp_path / "b.db"
    dest.write_text("an older backup")
    with pytest.raises(BackupError, match="not an argus database"):
        backup_database(f"sqlite:///{stranger}", dest, force=True)
    assert dest.read_text() == "an older backup"  # checked before it replaced anything
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.db", "stranger.db"]


def test_restore_over_a_database_sqlite_cannot_read(api: Api, tmp_path: Path) -> None:
    alice = api.new_user("alice")
    post(api, alice, "a")
    backup = tmp_path / "b.db"
    backup_database(api.settings.database_url, backup)
    api.ctx.db.dispose()
    live = sqlite_file(api.settings.database_url)
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    broken = b"SQLite format 3\x00" + b"\xff" * 8000
    live.write_bytes(broken)
    result = restore_database(api.settings.database_url, backup, argus_pid=None)
    assert result.facts.models == {"QUEUED": 1}
    assert result.previous is not None and result.previous.read_bytes() == broken
