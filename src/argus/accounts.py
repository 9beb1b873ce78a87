"""Users and tokens, the operations: the admin routes, the pages and `argus admin` share them.

Disabling a user is where the boundary bites: in the same transaction their tokens stop
working (authentication checks the flag), their queued and running tasks are cancelled,
and their models are SUSPENDED (taken out of Serve by the next tick, kept). Enabling
them again queues those models to be deployed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from argus.auth.tokens import ADMIN_USER_ID
from argus.errors import Conflict, NotFound, Unprocessable
from argus.ids import InvalidId, validate_user_id
from argus.quotas import Quota
from argus.serving.states import Trigger, transition
from argus.store import serving as serving_store
from argus.store import tasks as task_store
from argus.store import users as store
from argus.store.db import Database
from argus.store.schema import User
from argus.store.states import ACTIVE_TASK_STATES, ServeState
from argus.text import shown
from argus.training.control import request_cancel
from argus.views import token_view, user_view

_SUSPENDABLE = frozenset({ServeState.QUEUED, ServeState.DEPLOYING, ServeState.RUNNING})
RATE_FIELDS = ("requests_per_minute", "tokens_per_minute")
QUOTA_FIELDS = ("max_gpus", "max_models", "max_replicas", *RATE_FIELDS)
MAX_QUOTA = 100_000
MAX_RATE = 1_000_000_000


@dataclass(frozen=True)
class UserUpdate:
    """What the admin changes of a user; a field left as None is left as it is."""

    disabled: bool | None = None
    allow_commands: bool | None = None
    quota: dict[str, int | None] | None = None  # a value of None: back to the default


def _no_user(user_id: str) -> NotFound:
    return NotFound(f"no user {shown(user_id)}; list users with GET /api/v2/users")


def create_user(db: Database, user_id: str, now: datetime) -> dict[str, Any]:
    try:
        validate_user_id(user_id)
    except InvalidId as e:
        raise Unprocessable(str(e), details=[{"field": "user_id", "message": str(e)}]) from None
    with db.write() as s:
        if store.get_user(s, user_id) is not None:
            raise Conflict(f"user {user_id!r} already exists")
        return user_view(store.create_user(s, user_id, now))


def list_users(db: Database, defaults: Quota) -> list[dict[str, Any]]:
    with db.read() as s:
        items = []
        for u in store.list_users(s):
            view = user_view(u)
            view["active_tokens"] = store.count_active_tokens(s, u.user_id)
            view.update(_quota_view(s, u, defaults))
            items.append(view)
    return items


def get_user(db: Database, user_id: str, defaults: Quota) -> dict[str, Any]:
    with db.read() as s:
        user = store.get_user(s, user_id)
        if user is None:
            raise _no_user(user_id)
        return {**user_view(user), **_quota_view(s, user, defaults)}


def _quota_view(s: Session, user: User, defaults: Quota) -> dict[str, Any]:
    usage = store.usage_of(s, user.user_id)
    quota = None if user.is_admin else store.quota_of(user, defaults)
    return {
        "quota": None
        if quota is None
        else {
            "max_gpus": quota.max_gpus,
            "max_models": quota.max_models,
            "max_replicas": quota.max_replicas,
            "requests_per_minute": quota.requests_per_minute,
            "tokens_per_minute": quota.tokens_per_minute,
            "set_by_admin": [f for f in QUOTA_FIELDS if getattr(user, f) is not None],
        },
        "usage": {
            "models": usage.models,
            "gpus": usage.gpus,
            "model_gpus": usage.model_gpus,
            "task_gpus": usage.task_gpus,
        },
    }


def update_user(
    db: Database, user_id: str, change: UserUpdate, now: datetime, defaults: Quota
) -> dict[str, Any]:
    if user_id == ADMIN_USER_ID and change.disabled:
        raise Conflict("the admin user cannot be disabled; rotate ARGUS_ADMIN_TOKEN instead")
    for name, value in (change.quota or {}).items():
        if name not in QUOTA_FIELDS:
            raise Unprocessable.of_field(name, f"unknown quota; use {', '.join(QUOTA_FIELDS)}")
        low, high = (1, MAX_RATE) if name in RATE_FIELDS else (0, MAX_QUOTA)
        if value is not None and not low <= value <= high:
            raise Unprocessable.of_field(
                name, f"must be between {low} and {high}, or null for the default"
            )
    with db.write() as s:
        user = store.get_user(s, user_id)
        if user is None:
            raise _no_user(user_id)
        if change.allow_commands is not None:
            user.allow_commands = change.allow_commands
        for name, value in (change.quota or {}).items():
            setattr(user, name, value)
        if change.disabled is not None and change.disabled != user.disabled:
            user.disabled = change.disabled
            if change.disabled:
                _suspend(s, user_id, now)
            else:
                _resume(s, user_id, now)
        s.flush()
        return {**user_view(user), **_quota_view(s, user, defaults)}


def _suspend(s: Session, user_id: str, now: datetime) -> None:
    """Cancel the user's tasks; take their models out of Serve, keeping them."""
    for task in task_store.list_user_tasks(s, user_id, ACTIVE_TASK_STATES):
        request_cancel(s, task, ADMIN_USER_ID, now)
    for model in serving_store.list_user_models(s, user_id, _SUSPENDABLE):
        transition(s, model, Trigger.SUSPENDED, now, payload={"reason": "its owner was disabled"})


def _resume(s: Session, user_id: str, now: datetime) -> None:
    for model in serving_store.list_user_models(s, user_id, frozenset({ServeState.SUSPENDED})):
        transition(
            s, model, Trigger.RESUMED, now, payload={"reason": "its owner was enabled again"}
        )


def list_tokens(db: Database, user_id: str) -> list[dict[str, Any]]:
    with db.read() as s:
        if store.get_user(s, user_id) is None:
            raise _no_user(user_id)
        return [token_view(t) for t in store.list_tokens(s, user_id)]


def issue_token(db: Database, user_id: str, now: datetime) -> dict[str, Any]:
    with db.write() as s:
        user = store.get_user(s, user_id)
        if user is None:
            raise NotFound(f"no user {shown(user_id)}; create it first with POST /api/v2/users")
        if user.disabled:
            raise Conflict(f"user {user_id!r} is disabled; enable it before issuing a token")
        issued = store.issue_user_token(s, user_id, now)
    return {
        "token_id": issued.token_id,
        "token": issued.token,
        "user_id": user_id,
        "note": "this is the only time the token is shown; store it now",
    }


def revoke_token(db: Database, token_id: str, now: datetime) -> dict[str, Any]:
    with db.write() as s:
        token = store.get_token(s, token_id)
        if token is None:
            raise NotFound(f"no token {shown(token_id)}")
        if token.revoked_at is None:
            token.revoked_at = now
        return token_view(token)
