"""Request-scoped dependencies: the app's context and the authenticated caller."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Protocol

from fastapi import Depends, Request

from argus.auth.tokens import ADMIN_USER_ID, Principal, hash_token
from argus.config import Settings
from argus.errors import Forbidden, Unauthorized
from argus.serving.control import ServingContext
from argus.store.db import Database
from argus.store.users import authenticate_token
from argus.training.control import TaskContext

MAX_TOKEN_CHARS = 512


class RayProbe(Protocol):
    def ping(self) -> None:
        """Raise if the Ray cluster cannot be reached."""


class StatusView(Protocol):
    def cluster_note(self) -> dict[str, object] | None:
        """None while the Ray cluster answers; else since when it has not."""

    def model_status(self, model_id: str) -> dict[str, object] | None:
        """What the reconciler last observed of a model in Serve, or None."""

    def cluster_status(self) -> dict[str, object] | None:
        """What the reconciler last observed of the cluster and the app, or None."""

    def job_status(self, job_id: str) -> dict[str, object] | None:
        """What the scheduler last heard from Ray of a task's job, or None."""


class NoStatus:
    def cluster_note(self) -> dict[str, object] | None:
        return None

    def model_status(self, model_id: str) -> dict[str, object] | None:
        return None

    def cluster_status(self) -> dict[str, object] | None:
        return None

    def job_status(self, job_id: str) -> dict[str, object] | None:
        return None


def utcnow() -> datetime:
    return datetime.now(UTC)


def no_loop() -> None:
    """Where no control loop runs beside the API (tests of the API alone)."""


@dataclass
class AppContext:
    settings: Settings
    db: Database
    serving: ServingContext
    tasks: TaskContext
    ray: RayProbe
    status: StatusView
    admin_token_hash: str
    clock: Callable[[], datetime] = utcnow
    wake: Callable[[], None] = no_loop  # the control loop's: tick now, after a write


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized(
            "missing token: send the header 'Authorization: Bearer <token>'; "
            "an admin issues tokens with 'argus admin token issue <user>'"
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: use 'Authorization: Bearer <token>'")
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("invalid token: it is unknown, revoked, or its user is disabled")
    return token


def authenticate(ctx: AppContext, token: str) -> Principal:
    if hmac.compare_digest(hash_token(token), ctx.admin_token_hash):
        return Principal(user_id=ADMIN_USER_ID, is_admin=True)
    with ctx.db.read() as s:
        user = authenticate_token(s, token)
        if user is None:
            raise Unauthorized("invalid token: it is unknown, revoked, or its user is disabled")
        return Principal(user_id=user.user_id, is_admin=user.is_admin)


def get_principal(request: Request, ctx: Ctx) -> Principal:
    return authenticate(ctx, _bearer(request))


Caller = Annotated[Principal, Depends(get_principal)]


def require_admin(caller: Caller) -> Principal:
    if not caller.is_admin:
        raise Forbidden("this route is for the admin only")
    return caller


Admin = Annotated[Principal, Depends(require_admin)]
