"""Users and tokens (admin), and `GET /me`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from argus import accounts
from argus.api.deps import Admin, Caller, Ctx

router = APIRouter(prefix="/api/v2", tags=["users"])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    user_id: str = Field(examples=["alice"], description="[a-z][a-z0-9_-]{0,31}")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    disabled: bool = Field(examples=[True])


@router.get("/me", summary="Who the caller is")
def me(caller: Caller) -> dict[str, Any]:
    return {"user_id": caller.user_id, "is_admin": caller.is_admin}


@router.post("/users", status_code=201, summary="Create a user (admin)")
def create_user(body: NewUser, ctx: Ctx, _: Admin) -> dict[str, Any]:
    return accounts.create_user(ctx.db, body.user_id, ctx.clock())


@router.get("/users", summary="List users (admin)")
def list_users(ctx: Ctx, _: Admin) -> dict[str, Any]:
    items = accounts.list_users(ctx.db)
    return {"items": items, "total": len(items)}


@router.patch("/users/{user_id}", summary="Disable or enable a user (admin)")
def patch_user(user_id: str, body: UserPatch, ctx: Ctx, _: Admin) -> dict[str, Any]:
    return accounts.set_disabled(ctx.db, user_id, body.disabled)


@router.get("/users/{user_id}/tokens", summary="List a user's tokens, never their secrets (admin)")
def list_tokens(user_id: str, ctx: Ctx, _: Admin) -> dict[str, Any]:
    items = accounts.list_tokens(ctx.db, user_id)
    return {"items": items, "total": len(items)}


@router.post("/users/{user_id}/tokens", status_code=201, summary="Issue a token (admin)")
def issue_token(user_id: str, ctx: Ctx, _: Admin) -> dict[str, Any]:
    return accounts.issue_token(ctx.db, user_id, ctx.clock())


@router.delete("/tokens/{token_id}", summary="Revoke a token (admin)")
def revoke_token(token_id: str, ctx: Ctx, _: Admin) -> dict[str, Any]:
    return accounts.revoke_token(ctx.db, token_id, ctx.clock())
