"""Who may call which model on the OpenAI endpoint, as argus pushes it to the ingress.

`build_gate` reads it from the store in the reconciler's own read (`ServingController`):
every live argus token and inference key of an enabled user (by hash), the admin token,
and each live model's owner and sharing. The table's shape and the rules the ingress
applies to it are `argus.cluster.access`'s. The reconciler applies the app again when
the table changes; Serve reconfigures the ingress in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from argus.auth.tokens import ADMIN_USER_ID
from argus.quotas import Quota
from argus.store import keys as key_store
from argus.store import serving as model_store
from argus.store import users as user_store
from argus.store.schema import ServeModel

ADMIN_KEY = "admin-token"  # what usage names the admin token by
# argus deploys one ingress replica (Ray Serve LLM's default autoscaling never adds one);
# each replica enforces its share of a rate limit (`argus.cluster.limits`).
INGRESS_REPLICAS = 1
NO_QUOTA = Quota(0, 0, 0)  # only its rate limits (none) are read here


def build_gate(
    s: Session,
    admin_token_hash: str,
    cors_origins: Sequence[str],
    now: datetime,
    models: Sequence[ServeModel] | None = None,
    defaults: Quota | None = None,
) -> dict[str, Any]:
    users = {u.user_id: u for u in user_store.list_users(s) if not u.disabled}
    limits = {}
    for u in users.values():
        q = user_store.quota_of(u, defaults or NO_QUOTA)
        if not u.is_admin and (q.requests_per_minute or q.tokens_per_minute):
            limits[u.user_id] = {"rpm": q.requests_per_minute, "tpm": q.tokens_per_minute}
    principals: dict[str, dict[str, Any]] = {}
    if admin_token_hash:
        principals[admin_token_hash] = _principal(ADMIN_USER_ID, True, ADMIN_KEY)
    for t in user_store.live_tokens(s):
        user = users.get(t.user_id)
        if user is not None:
            principals[t.token_hash] = _principal(user.user_id, user.is_admin, t.token_id)
    for k in key_store.live_keys(s, now):
        user = users.get(k.user_id)
        if user is not None:
            expires = k.expires_at.timestamp() if k.expires_at is not None else None
            principals[k.key_hash] = _principal(
                user.user_id, user.is_admin, k.key_id, k.models, expires
            )
    live = models if models is not None else model_store.list_active_models(s)
    return {
        "principals": principals,
        "models": {m.model_id: sharing(m) for m in live},
        "cors_origins": sorted(cors_origins),
        "limits": limits,
        "ingress_replicas": INGRESS_REPLICAS,
    }


def _principal(
    user: str,
    admin: bool,
    key: str,
    models: list[str] | None = None,
    expires: float | None = None,
) -> dict[str, Any]:
    return {"user": user, "admin": admin, "key": key, "models": models, "expires": expires}


def sharing(m: ServeModel) -> dict[str, Any]:
    access = m.resolved_spec.get("access", "private")
    users = access.get("users", []) if isinstance(access, dict) else []
    return {"owner": m.user_id, "users": sorted(users), "all": access == "all-users"}
