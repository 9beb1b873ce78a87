"""Back up and restore argus's SQLite database with SQLite's online backup API.

A backup is one consistent snapshot, taken while argus runs: the backup API copies
the database in a single read transaction, and in WAL mode writers go on meanwhile
(a file copy of `argus.db` alone would miss what still sits in `argus.db-wal`). The
copy is a self-contained file (journal mode DELETE), readable by its owner only: it
holds the token hashes.

A restore replaces the database with a backup, only while argus is stopped: it checks
that the file is an argus database this version knows, keeps the current database
beside it (`<db>.before-restore-<time>`), copies the backup in with the same API and
migrates it. The next `argus up` reconciles Ray Serve to the restored models.

PostgreSQL installs use `pg_dump` / `pg_restore` instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from argus.store.db import Database, alembic_config

SQLITE_HEADER = b"SQLite format 3\x00"
REQUIRED_TABLES = ("alembic_version", "serve_models")


class BackupError(Exception):
    """A backup or restore was refused or failed; the message says what to do."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What an argus database file holds, as checked before trusting it."""

    path: Path
    revision: str
    users: int
    models: dict[str, int]  # state -> count


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size_bytes: int
    seconds: float
    facts: DatabaseFacts


@dataclass(frozen=True)
class RestoreResult:
    database: Path
    restored_revision: str  # the backup's schema revision, before migrating
    facts: DatabaseFacts  # the database after migrating
    previous: Path | None  # where the replaced database was kept
    seconds: float


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite URL; anything else is refused with what to use."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        shown = parsed.render_as_string(hide_password=True)
        raise BackupError(
            f"the database is {shown}, not SQLite: argus backs up SQLite only. Back up "
            "PostgreSQL with pg_dump (e.g. `pg_dump --format=custom --file=argus.dump "
            "<database>`) and restore it with pg_restore."
        )
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError(f"the database {url} is in memory: there is no file to back up")
    return Path(parsed.database).expanduser().absolute()


def inspect_database(
    path: Path, timeout_s: float = 5.0, shown_as: Path | None = None
) -> DatabaseFacts:
    """Check that `path` is an intact argus database this version can migrate.

    Messages name `shown_as` (what the user gave) when `path` is a working copy.
    """
    name = shown_as or path
    if not path.is_file():
        raise BackupError(f"{name}: no such file")
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise BackupError(f"{name} is not a SQLite database")
    try:
        with _connect(path, timeout_s) as conn:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"{name} fails SQLite's integrity check: {check}")
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            missing = [t for t in REQUIRED_TABLES if t not in tables]
            if missing:
                raise BackupError(
                    f"{name} is a SQLite database but not an argus database "
                    f"(no {', '.join(missing)} table)"
                )
            revisions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
            users = (
                conn.execute("SELECT count(*) FROM users").fetchone()[0] if "users" in tables else 0
            )
            models = dict(conn.execute("SELECT state, count(*) FROM serve_models GROUP BY state"))
    except sqlite3.DatabaseError as e:
        raise BackupError(f"{name} cannot be read as a database: {e}") from None
    if len(revisions) != 1:
        raise BackupError(f"{name} has no single schema revision (alembic_version: {revisions})")
    _check_known_revision(name, revisions[0])
    return DatabaseFacts(
        name, revisions[0], int(users), {str(k): int(v) for k, v in models.items()}
    )


def backup_database(
    url: str, dest: Path, *, force: bool = False, timeout_s: float = 5.0
) -> BackupResult:
    """Copy the live database to `dest` (a new file unless `force`), consistently."""
    started = time.monotonic()
    source = sqlite_file(url)
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up yet")
    dest = dest.expanduser().absolute()
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder; give the backup's file name")
    if dest.exists() and not force:
        raise BackupError(f"{dest} exists; pass --force to overwrite it")
    if dest.exists() and dest.samefile(source):
        raise BackupError(f"{dest} is the live database itself")
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")
    try:
        facts = _snapshot(source, dest, timeout_s, verify=True)
    except (sqlite3.Error, OSError) as e:
        raise BackupError(f"could not back up {source} to {dest}: {e}") from None
    assert facts is not None
    return BackupResult(dest, dest.stat().st_size, time.monotonic() - started, facts)


def restore_database(
    url: str,
    source: Path,
    *,
    argus_pid: int | None,
    now: datetime | None = None,
    timeout_s: float = 5.0,
) -> RestoreResult:
    """Replace the database with the backup at `source`; argus must not be running.

    `argus_pid` is the pid of a running `argus up` for this database, or None.
    """
    started = time.monotonic()
    target = sqlite_file(url)
    if argus_pid is not None:
        raise BackupError(
            f"argus is running (pid {argus_pid}): stop it with `argus down` first; a "
            "restore under a running reconciler would race it"
        )
    source = source.expanduser().absolute()
    restored = inspect_database(source, timeout_s)
    if target.exists() and target.samefile(source):
        raise BackupError(f"{source} is the live database itself")
    previous = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.stat().st_size > 0:
            stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
            previous = target.with_name(f"{target.name}.before-restore-{stamp}")
            if not _keep_previous(target, previous, timeout_s):
                # SQLite cannot read it (often why one restores): start from a new file.
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{target}{suffix}").unlink(missing_ok=True)
    except OSError as e:
        raise BackupError(f"could not keep the current database before restoring: {e}") from None
    try:
        with _connect(source, timeout_s) as src, _connect(target, timeout_s) as dst:
            # A WAL database refuses a backup of another page size; WAL comes back below.
            dst.execute("PRAGMA journal_mode=DELETE")
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as e:
        kept = f"; the database it replaced is kept as {previous}" if previous else ""
        raise BackupError(
            f"could not write {target}: {e}{kept}. Move {target} (and its -wal, -shm "
            "files) aside and restore again"
        ) from None
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.dispose()
    return RestoreResult(
        target,
        restored.revision,
        inspect_database(target, timeout_s),
        previous,
        time.monotonic() - started,
    )


@contextlib.contextmanager
def _connect(path: Path, timeout_s: float) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _snapshot(
    source: Path, dest: Path, timeout_s: float, *, verify: bool = False
) -> DatabaseFacts | None:
    """Write a consistent copy of `source` to `dest` (mode 0600), replacing it atomically.

    With `verify`, the copy must pass `inspect_database` before it takes `dest`'s place.
    """
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with _connect(source, timeout_s) as src, _connect(partial, timeout_s) as dst:
            src.backup(dst)  # all pages in one step: one read transaction, one snapshot
            # The copied header still says WAL; make the copy one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE")
        facts = inspect_database(partial, timeout_s, shown_as=dest) if verify else None
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, dest)
        return facts
    finally:
        partial.unlink(missing_ok=True)


def _keep_previous(target: Path, previous: Path, timeout_s: float) -> bool:
    """Keep the database a restore replaces: a snapshot, or its files as they are when
    SQLite cannot read it (then False)."""
    try:
        _snapshot(target, previous, timeout_s)
        return True
    except sqlite3.Error:
        for suffix in ("", "-wal"):
            if Path(f"{target}{suffix}").exists():
                shutil.copyfile(f"{target}{suffix}", f"{previous}{suffix}")
        return False


def _check_known_revision(path: Path, revision: str) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    try:
        known = script.get_revision(revision) is not None
    except Exception:  # alembic raises its own errors for an unknown id
        known = False
    if not known:
        raise BackupError(
            f"{path} has schema revision {revision}, which this argus does not know "
            "(a newer argus made it?); restore it with that version"
        )
