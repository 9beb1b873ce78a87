"""Build what the API needs from the settings: database (migrated), admin, storage folders."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argus.api.deps import AppContext, NoStatus, RayProbe, StatusView, utcnow
from argus.auth.tokens import ADMIN_USER_ID, generate_admin_token, hash_token
from argus.cluster.job_client import JobClient
from argus.cluster.serve_client import ServeClient
from argus.config import Settings
from argus.runtime.loop import ControlLoop
from argus.runtime.status import ClusterStatus
from argus.serving.chat import chat_url
from argus.serving.control import Check, ServingContext
from argus.serving.controller import ServingController
from argus.serving.llm_config import EngineSettings
from argus.serving.spec import SpecLimits
from argus.storage import ensure_home
from argus.store.db import Database
from argus.store.users import ensure_admin_user
from argus.training.control import TaskContext
from argus.training.datasets import install_demo_chat
from argus.training.scheduler import TaskScheduler
from argus.training.spec import TaskLimits
from argus.training.submission import LaunchSettings
from argus.usage import UsageCollector


@dataclass(frozen=True)
class AdminToken:
    token: str
    source: str  # "ARGUS_ADMIN_TOKEN" or the file it was read from / written to


def ensure_admin_token(settings: Settings) -> AdminToken:
    """The admin token: from the environment, else the data dir's file, else a new one."""
    if settings.admin_token:
        return AdminToken(settings.admin_token, "ARGUS_ADMIN_TOKEN")
    path = settings.admin_token_file
    if path.is_file():
        os.chmod(path, 0o600)  # also when an earlier hand left it readable
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return AdminToken(token, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    token = generate_admin_token()
    # 0600 from the first byte: readable by its owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return AdminToken(token, str(path))


def ensure_data_dir(settings: Settings) -> Path:
    """The data directory, 0700 at every start: it holds the database and the tokens."""
    path = settings.data_path
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # also when it existed before, with looser bits
    return path


def ensure_storage(settings: Settings) -> Path:
    ensure_data_dir(settings)
    root = settings.storage_root
    for sub in ("hf", "datasets", "users"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for home in (root / "users").iterdir():
        if home.is_dir() and not home.is_symlink():
            ensure_home(root, home.name)  # 0700, also for homes made before
    install_demo_chat(root)  # the demo task's training set, <root>/datasets/demo-chat
    return root


def open_database(settings: Settings) -> Database:
    ensure_data_dir(settings)
    db = Database(settings.database_url, settings.database.busy_timeout_ms)
    db.migrate()
    db.restrict_file_modes()  # 0600: the database holds token hashes
    with db.write() as s:
        ensure_admin_user(s, ADMIN_USER_ID, datetime.now(UTC))
    return db


def engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        mode=settings.serving.engine,
        accelerator_type=settings.serving.llm.accelerator_type,
        cpu_kvcache_space_gib=settings.serving.llm.cpu_kvcache_space_gib,
        hf_cache=str(settings.storage_root / ".hf-home"),
        cpu_holds_gpus=settings.serving.llm.cpu_holds_gpus,
        allowed_media_domains=tuple(settings.serving.llm.allowed_media_domains),
    )


def launch_settings(settings: Settings) -> LaunchSettings:
    return LaunchSettings(
        python=settings.training.python or sys.executable,
        storage_root=settings.storage_root,
        accelerator_type=settings.serving.llm.accelerator_type,
        hf_home=str(settings.storage_root / ".hf-home"),
    )


def build_loop(
    settings: Settings, db: Database, client: ServeClient, jobs: JobClient | None = None
) -> ControlLoop:
    """The control loop and its status view; with a JobClient it also runs training tasks."""
    tasks = (
        TaskScheduler(
            db=db,
            client=jobs,
            launch=launch_settings(settings),
            clock=utcnow,
            quotas=settings.quotas.as_quota(),
        )
        if jobs is not None
        else None
    )
    serving = ServingController(
        db=db,
        client=client,
        engine=engine_settings(settings),
        app_name=settings.serving.app_name,
        storage_root=settings.storage_root,
        clock=utcnow,
        admin_token_hash=hash_token(ensure_admin_token(settings).token),
        cors_origins=tuple(settings.serving.serve.cors_origins),
        quotas=settings.quotas.as_quota(),
    )
    interval = settings.serving.reconcile_interval_s
    status = ClusterStatus(settings.serving.app_name, interval, tasks)
    return ControlLoop(
        client=client,
        serving=serving,
        status=status,
        interval_s=interval,
        clock=utcnow,
        tasks=tasks,
        usage=UsageCollector(db, client, utcnow),
    )


def build_context(
    settings: Settings,
    ray: RayProbe,
    status: StatusView | None = None,
    db: Database | None = None,
    check: Check | None = None,
) -> AppContext:
    """What the API needs; `check` is Ray Serve LLM's check of a spec's LLMConfig."""
    storage_root = ensure_storage(settings)
    admin = ensure_admin_token(settings)
    database = db if db is not None else open_database(settings)
    serving = ServingContext(
        db=database,
        storage_root=storage_root,
        limits=SpecLimits(
            engine=settings.serving.engine,
            max_replicas=settings.serving.max_replicas,
            cpu_holds_gpus=settings.serving.llm.cpu_holds_gpus,
        ),
        quotas=settings.quotas.as_quota(),
        chat_url=chat_url(settings.serving.serve.http_host, settings.serving.serve.http_port),
        engine=engine_settings(settings),
        check=check,
    )
    tasks = TaskContext(
        db=database,
        storage_root=storage_root,
        limits=TaskLimits(engine=settings.serving.engine),
        max_active_per_user=settings.training.max_active_per_user,
        quotas=settings.quotas.as_quota(),
    )
    return AppContext(
        settings=settings,
        db=database,
        serving=serving,
        tasks=tasks,
        ray=ray,
        status=status or NoStatus(),
        admin_token_hash=hash_token(admin.token),
    )
