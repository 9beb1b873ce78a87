"""Users and tokens (admin), and `GET /me`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from argus import accounts
from argus.api.deps import Admin, Caller, Ctx
from argus.api.errors import error_responses

router = APIRouter(prefix="/api/v2", tags=["users"])
USER_PATH = Path(max_length=64, description="The user's id.")
TOKEN_PATH = Path(max_length=64, description="The token's id (never the token itself).")
QUOTA = Field(
    None, ge=0, le=accounts.MAX_QUOTA, description="Set this user's own limit; null: the default."
)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    user_id: str = Field(examples=["alice"], max_length=64, description="[a-z][a-z0-9_-]{0,31}")


class UserPatch(BaseModel):
    """Any of the fields; the ones left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)
    disabled: bool | None = Field(
        None,
        examples=[True],
        description="Disable: tokens stop working, tasks are cancelled, models suspended.",
    )
    allow_commands: bool | None = Field(
        None, description="May run `command` tasks (their own code on the cluster)."
    )
    max_gpus: int | None = QUOTA
    max_models: int | None = QUOTA
    max_replicas: int | None = QUOTA
    requests_per_minute: int | None = Field(
        None,
        ge=1,
        le=accounts.MAX_RATE,
        description="Calls to the OpenAI endpoint a minute (429 past it); null: the default.",
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        le=accounts.MAX_RATE,
        description="Tokens (prompt and completion) a minute (429 past it); null: the default.",
    )


@router.get(
    "/me",
    summary="Who the caller is, their permissions, their quota and what they hold",
    responses=error_responses(400, 401, 413),
)
def me(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return accounts.get_user(ctx.db, caller.user_id, ctx.serving.quotas)


@router.post(
    "/users",
    status_code=201,
    summary="Create a user (admin)",
    responses=error_responses(400, 401, 403, 409, 413, 415, 422),
)
def create_user(body: NewUser, ctx: Ctx, _: Admin) -> dict[str, Any]:
    return accounts.create_user(ctx.db, body.user_id, ctx.clock())


@router.get(
    "/users",
    summary="List users with their quotas and use (admin)",
    responses=error_responses(400, 401, 403, 413),
)
def list_users(ctx: Ctx, _: Admin) -> dict[str, Any]:
    items = accounts.list_users(ctx.db, ctx.serving.quotas)
    return {"items": items, "total": len(items)}


@router.patch(
    "/users/{user_id}",
    summary="Disable or enable a user, grant commands, set their quotas (admin)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422),
)
def patch_user(body: UserPatch, ctx: Ctx, _: Admin, user_id: str = USER_PATH) -> dict[str, Any]:
    given = body.model_fields_set
    change = accounts.UserUpdate(
        disabled=body.disabled,
        allow_commands=body.allow_commands,
        quota={f: getattr(body, f) for f in accounts.QUOTA_FIELDS if f in given},
    )
    return accounts.update_user(ctx.db, user_id, change, ctx.clock(), ctx.serving.quotas)


@router.get(
    "/users/{user_id}/tokens",
    summary="List a user's tokens, never their secrets (admin)",
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def list_tokens(ctx: Ctx, _: Admin, user_id: str = USER_PATH) -> dict[str, Any]:
    items = accounts.list_tokens(ctx.db, user_id)
    return {"items": items, "total": len(items)}


@router.post(
    "/users/{user_id}/tokens",
    status_code=201,
    summary="Issue a token (admin)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
def issue_token(ctx: Ctx, _: Admin, user_id: str = USER_PATH) -> dict[str, Any]:
    return accounts.issue_token(ctx.db, user_id, ctx.clock())


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token (admin)",
    responses=error_responses(400, 401, 403, 404, 413, 422),
)
def revoke_token(ctx: Ctx, _: Admin, token_id: str = TOKEN_PATH) -> dict[str, Any]:
    return accounts.revoke_token(ctx.db, token_id, ctx.clock())
