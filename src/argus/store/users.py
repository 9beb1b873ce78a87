"""Users and their tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from argus.auth.tokens import IssuedToken, issue_token, parse_token_id, token_matches
from argus.quotas import Quota, Usage
from argus.store import serving, tasks
from argus.store.schema import Token, User


def get_user(session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.user_id)))


def create_user(session: Session, user_id: str, now: datetime, is_admin: bool = False) -> User:
    user = User(user_id=user_id, is_admin=is_admin, disabled=False, created_at=now)
    session.add(user)
    session.flush()
    return user


def ensure_admin_user(session: Session, user_id: str, now: datetime) -> User:
    user = session.get(User, user_id)
    if user is None:
        return create_user(session, user_id, now, is_admin=True)
    if not user.is_admin:
        user.is_admin = True
    return user


def issue_user_token(session: Session, user_id: str, now: datetime) -> IssuedToken:
    issued = issue_token()
    session.add(
        Token(
            token_id=issued.token_id,
            user_id=user_id,
            token_hash=issued.token_hash,
            created_at=now,
        )
    )
    session.flush()
    return issued


def get_token(session: Session, token_id: str) -> Token | None:
    return session.get(Token, token_id)


def list_tokens(session: Session, user_id: str) -> list[Token]:
    return list(
        session.scalars(select(Token).where(Token.user_id == user_id).order_by(Token.created_at))
    )


def count_active_tokens(session: Session, user_id: str) -> int:
    q = select(func.count()).where(Token.user_id == user_id, Token.revoked_at.is_(None))
    return int(session.scalar(q) or 0)


def authenticate_token(session: Session, token: str) -> User | None:
    """The enabled user a live token belongs to, or None."""
    token_id = parse_token_id(token)
    if token_id is None:
        return None
    row = session.get(Token, token_id)
    if row is None or row.revoked_at is not None or not token_matches(token, row.token_hash):
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    return user


def quota_of(user: User, defaults: Quota) -> Quota:
    """The user's limits: what the admin set for them, else the config's defaults."""
    return Quota(
        max_gpus=defaults.max_gpus if user.max_gpus is None else user.max_gpus,
        max_models=defaults.max_models if user.max_models is None else user.max_models,
        max_replicas=defaults.max_replicas if user.max_replicas is None else user.max_replicas,
        requests_per_minute=defaults.requests_per_minute
        if user.requests_per_minute is None
        else user.requests_per_minute,
        tokens_per_minute=defaults.tokens_per_minute
        if user.tokens_per_minute is None
        else user.tokens_per_minute,
    )


def usage_of(session: Session, user_id: str, exclude_model_key: str | None = None) -> Usage:
    """What the user's models and tasks hold now (an updated model leaves itself out)."""
    models, model_gpus = serving.held_by(session, user_id, exclude_model_key)
    return Usage(models=models, model_gpus=model_gpus, task_gpus=tasks.gpus_held(session, user_id))


def live_tokens(session: Session) -> list[Token]:
    """Every token not revoked (whatever its user's state)."""
    return list(session.scalars(select(Token).where(Token.revoked_at.is_(None))))
