"""Users and tokens, the operations: the admin routes and `argus admin --offline` share them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from argus.auth.tokens import ADMIN_USER_ID
from argus.errors import Conflict, NotFound, Unprocessable
from argus.ids import InvalidId, validate_user_id
from argus.store import users as store
from argus.store.db import Database
from argus.views import token_view, user_view


def create_user(db: Database, user_id: str, now: datetime) -> dict[str, Any]:
    try:
        validate_user_id(user_id)
    except InvalidId as e:
        raise Unprocessable(str(e), details=[{"field": "user_id", "message": str(e)}]) from None
    with db.write() as s:
        if store.get_user(s, user_id) is not None:
            raise Conflict(f"user {user_id!r} already exists")
        return user_view(store.create_user(s, user_id, now))


def list_users(db: Database) -> list[dict[str, Any]]:
    with db.read() as s:
        items = []
        for u in store.list_users(s):
            view = user_view(u)
            view["active_tokens"] = store.count_active_tokens(s, u.user_id)
            items.append(view)
    return items


def set_disabled(db: Database, user_id: str, disabled: bool) -> dict[str, Any]:
    if user_id == ADMIN_USER_ID and disabled:
        raise Conflict("the admin user cannot be disabled; rotate ARGUS_ADMIN_TOKEN instead")
    with db.write() as s:
        user = store.get_user(s, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}; list users with GET /api/v2/users")
        user.disabled = disabled
        return user_view(user)


def list_tokens(db: Database, user_id: str) -> list[dict[str, Any]]:
    with db.read() as s:
        if store.get_user(s, user_id) is None:
            raise NotFound(f"no user {user_id!r}")
        return [token_view(t) for t in store.list_tokens(s, user_id)]


def issue_token(db: Database, user_id: str, now: datetime) -> dict[str, Any]:
    with db.write() as s:
        user = store.get_user(s, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}; create it first with POST /api/v2/users")
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
            raise NotFound(f"no token {token_id!r}")
        if token.revoked_at is None:
            token.revoked_at = now
        return token_view(token)
