"""Inference keys: created by their user, shown once, stored as a hash."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.auth.tokens import IssuedToken, issue_key
from argus.store.schema import ApiKey


def create_key(
    session: Session,
    user_id: str,
    name: str,
    models: list[str] | None,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[ApiKey, IssuedToken]:
    issued = issue_key()
    row = ApiKey(
        key_id=issued.token_id,
        user_id=user_id,
        name=name,
        key_hash=issued.token_hash,
        models=models,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, issued


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(session: Session, user_id: str | None = None) -> list[ApiKey]:
    """A user's keys, or everyone's (None), oldest first."""
    q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)
    if user_id is not None:
        q = q.where(ApiKey.user_id == user_id)
    return list(session.scalars(q))


def count_live_keys(session: Session, user_id: str, now: datetime) -> int:
    q = select(func.count()).where(
        ApiKey.user_id == user_id,
        ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
    )
    return int(session.scalar(q) or 0)


def live_keys(session: Session, now: datetime) -> list[ApiKey]:
    """Every key not revoked and not expired (whatever its user's state)."""
    q = select(ApiKey).where(
        ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now),
    )
    return list(session.scalars(q))
