"""Who may call which model on the OpenAI endpoint: the table argus pushes to the ingress.

argus builds the table from its store (`argus.serving.gate`) and pushes it with every
apply as the ingress deployment's `user_config`; Serve reconfigures the running ingress
in place (no replica restarts). The ingress (`argus.cluster.ingress`) answers each
request from it, with no call to argus on the request's path.

The table holds hashes only, never a key: Serve keeps `user_config` in its checkpoint
and shows it to whoever may read the Serve API.

    {"principals": {sha256(key): {"user": "alice", "admin": false, "key": "key_...",
                                  "models": null | ["alice-...-smol", ...],
                                  "expires": null | unix seconds}},
     "models": {"alice-...-smol": {"owner": "alice", "users": ["bob"], "all": false}},
     "cors_origins": ["https://app.example"],
     "limits": {"alice": {"rpm": 60, "tpm": null}}, "ingress_replicas": 1,
     "no_room": ["alice-...-smol"]}  # at zero replicas, no room for one: 503

Plain values only: no Ray import, so the unit tests exercise the very rules the ingress runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# The errors, in the OpenAI shape: {"error": {"message", "type", "param", "code"}}.
NO_KEY = "Missing API key: send `Authorization: Bearer <key>` (an argus token or an inference key)."
BAD_KEY = "Invalid API key: it is unknown, revoked, expired, or its user is disabled."


@dataclass(frozen=True)
class Caller:
    user: str
    admin: bool
    models: frozenset[str] | None  # the key's own list; None: every model its user may call
    key: str = ""  # the key's id (an inference key's, or an argus token's), for usage


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def caller_of(table: dict[str, Any], key: str, now: float) -> Caller | None:
    """Who a key belongs to, or None if it is not live (unknown, revoked, expired)."""
    entry = table.get("principals", {}).get(key_hash(key))
    if entry is None:
        return None
    expires = entry.get("expires")
    if expires is not None and now >= float(expires):
        return None
    models = entry.get("models")
    return Caller(
        user=str(entry["user"]),
        admin=bool(entry.get("admin", False)),
        models=None if models is None else frozenset(models),
        key=str(entry.get("key", "")),
    )


def may_call(table: dict[str, Any], caller: Caller, model_id: str) -> bool:
    """The owner, a user it is shared with (or every user), the admin; within the key's list."""
    if caller.models is not None and model_id not in caller.models:
        return False
    if caller.admin:
        return True
    access = table.get("models", {}).get(model_id)
    if access is None:
        return False
    return (
        access.get("owner") == caller.user
        or bool(access.get("all"))
        or caller.user in access.get("users", ())
    )


def origin_allowed(table: dict[str, Any], origin: str) -> bool:
    return origin in table.get("cors_origins", ())


def openai_error(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def model_not_found(model: str) -> dict[str, Any]:
    """The same answer for a model that does not exist and one the key may not call."""
    return openai_error(
        f"The model `{model}` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )
