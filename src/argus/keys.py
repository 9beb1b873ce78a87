"""Inference keys, the operations: the API, the CLI and the pages share them.

A key calls the OpenAI endpoint as its user: the models that user may call (their own,
the ones shared with them), or fewer when the key lists them. It never calls the argus
API. It is shown once and stored as a hash; revoking it, or disabling its user, stops it
within a reconcile tick or two (the ingress's table is pushed again, `serving.gate`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from argus.auth.tokens import Principal
from argus.cluster.access import Caller, may_call
from argus.errors import Conflict, NotFound, Unprocessable
from argus.serving.gate import sharing
from argus.store import keys as store
from argus.store import serving as model_store
from argus.store.db import Database
from argus.store.schema import ApiKey
from argus.text import shown

MAX_LIVE_KEYS = 50  # per user
MAX_KEY_MODELS = 64
MAX_KEY_LIFE = timedelta(days=3650)
KEY_NAME_RE = re.compile(r"[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,63}")


def key_view(key: ApiKey, now: datetime) -> dict[str, Any]:
    if key.revoked_at is not None:
        state = "revoked"
    elif key.expires_at is not None and key.expires_at <= now:
        state = "expired"
    else:
        state = "live"
    return {
        "key_id": key.key_id,
        "user_id": key.user_id,
        "name": key.name,
        "models": key.models,
        "state": state,
        "created_at": key.created_at.isoformat(),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def create_key(
    db: Database,
    caller: Principal,
    name: str,
    models: list[str] | None,
    expires_at: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    if not KEY_NAME_RE.fullmatch(name):
        raise Unprocessable.of_field(
            "name",
            f"{shown(name)} is not a key name: 1 to 64 printable characters, "
            "not starting with a space",
        )
    if models is not None and not 1 <= len(models) <= MAX_KEY_MODELS:
        raise Unprocessable.of_field(
            "models", f"list 1 to {MAX_KEY_MODELS} model ids, or leave it out for all of yours"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise Unprocessable.of_field(
                "expires_at", "give a time zone, e.g. 2027-01-31T00:00:00Z"
            )
        if expires_at <= now:
            raise Unprocessable.of_field("expires_at", f"{expires_at.isoformat()} has passed")
        if expires_at - now > MAX_KEY_LIFE:
            raise Unprocessable.of_field("expires_at", "a key lives at most ten years")
        expires_at = expires_at.astimezone(UTC)
    with db.write() as s:
        if models is not None:
            _check_models(s, caller, models)
        if store.count_live_keys(s, caller.user_id, now) >= MAX_LIVE_KEYS:
            raise Conflict(
                f"you have {MAX_LIVE_KEYS} live keys, the most a user may; revoke one first"
            )
        row, issued = store.create_key(
            s, caller.user_id, name, sorted(set(models)) if models else None, expires_at, now
        )
        view = key_view(row, now)
    return {**view, "key": issued.token, "note": "this is the only time the key is shown"}


def _check_models(s: Session, caller: Principal, models: list[str]) -> None:
    """Each listed model is live and one the caller may call (else it does not exist)."""
    table = {"models": {m.model_id: sharing(m) for m in model_store.list_active_models(s)}}
    who = Caller(caller.user_id, caller.is_admin, None)
    for model_id in models:
        if model_id not in table["models"] or not may_call(table, who, model_id):
            raise Unprocessable.of_field(
                "models", f"no model {shown(model_id)} that you may call (see GET /v1/models)"
            )


def list_keys(db: Database, caller: Principal, now: datetime) -> list[dict[str, Any]]:
    """The caller's keys; the admin's list holds every user's."""
    with db.read() as s:
        rows = store.list_keys(s, None if caller.is_admin else caller.user_id)
        return [key_view(k, now) for k in rows]


def revoke_key(db: Database, caller: Principal, key_id: str, now: datetime) -> dict[str, Any]:
    with db.write() as s:
        key = store.get_key(s, key_id)
        if key is None or (key.user_id != caller.user_id and not caller.is_admin):
            raise NotFound(f"no key {shown(key_id)}; list yours with GET /api/v2/keys")
        if key.revoked_at is None:
            key.revoked_at = now
        return key_view(key, now)
