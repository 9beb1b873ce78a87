"""The tables, as SQLAlchemy 2 mapped classes. Migrations create them; this mirrors them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Granted by the admin: run `command` tasks (arbitrary code as the Ray nodes' user).
    allow_commands: Mapped[bool] = mapped_column(default=False)
    # Per-user quotas; None: the config's default.
    max_gpus: Mapped[int | None] = mapped_column(Integer, default=None)
    max_models: Mapped[int | None] = mapped_column(Integer, default=None)
    max_replicas: Mapped[int | None] = mapped_column(Integer, default=None)
    # The OpenAI endpoint's rate limits; None: the config's default.
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer, default=None)


class Token(Base):
    __tablename__ = "tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ApiKey(Base):
    """An inference key: calls the OpenAI endpoint as its user, never the argus API."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64))
    models: Mapped[list[str] | None] = mapped_column(JSON, default=None)  # None: all its user's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ServeModel(Base):
    __tablename__ = "serve_models"

    model_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"))
    model_id_suffix: Mapped[str] = mapped_column(String(64))
    model_id_prefix: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(160), index=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    resolved_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error_summary: Mapped[str | None] = mapped_column(Text, default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)
    ready_replicas: Mapped[int] = mapped_column(Integer, default=0)
    # GPUs the current spec holds at most (replicas x GPUs each): what quotas count.
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (
        Index("ix_serve_models_user_updated", "user_id", "updated_at"),
        Index(
            "uq_serve_models_live_suffix",
            "user_id",
            "model_id_suffix",
            unique=True,
            sqlite_where=text("state != 'DELETED'"),
            postgresql_where=text("state != 'DELETED'"),
        ),
    )


class ServeEvent(Base):
    __tablename__ = "serve_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_key: Mapped[str] = mapped_column(ForeignKey("serve_models.model_key"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Task(Base):
    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"))
    name: Mapped[str] = mapped_column(String(64))
    workload: Mapped[str] = mapped_column(String(16))
    spec_yaml: Mapped[str] = mapped_column(Text)
    resolved_spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error_summary: Mapped[str | None] = mapped_column(Text, default=None)
    ray_job_id: Mapped[str] = mapped_column(String(64), unique=True)
    gpus: Mapped[int] = mapped_column(Integer, default=0)  # what quotas count while it runs
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    __table_args__ = (Index("ix_tasks_user_created", "user_id", "created_at"),)


class TaskEvent(Base):
    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UsageMinute(Base):
    """What one user's key used of one model in one minute, by HTTP status."""

    __tablename__ = "usage_minutes"
    __table_args__ = (Index("ix_usage_minutes_user_minute", "user_id", "minute"),)

    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    status: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(BigInteger)


class UsageBatchStored(Base):
    """A usage batch argus stored: drained again (its ack was lost), it is not counted twice."""

    __tablename__ = "usage_batches"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rows: Mapped[int] = mapped_column(Integer)
