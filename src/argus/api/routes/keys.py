"""Inference keys for the OpenAI endpoint: create (shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from argus import keys
from argus.api.deps import Caller, Ctx
from argus.api.errors import error_responses

router = APIRouter(prefix="/api/v2", tags=["keys"])
KEY_PATH = Path(max_length=64, description="The key's id (never the key itself).")


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(examples=["laptop"], max_length=64, description="What it is for.")
    models: list[str] | None = Field(
        None,
        max_length=keys.MAX_KEY_MODELS,
        examples=[["alice-202611301200-smol"]],
        description="The models it may call (of those you may); left out: all of them.",
    )
    expires_at: datetime | None = Field(
        None, examples=["2027-01-31T00:00:00Z"], description="When it stops working."
    )


@router.post(
    "/keys",
    status_code=201,
    summary="Create an inference key for the OpenAI endpoint (the key is shown once)",
    responses=error_responses(400, 401, 409, 413, 415, 422),
)
def create_key(body: NewKey, ctx: Ctx, caller: Caller) -> dict[str, Any]:
    return keys.create_key(ctx.db, caller, body.name, body.models, body.expires_at, ctx.clock())


@router.get(
    "/keys",
    summary="List your keys, never their secrets (the admin: everyone's)",
    responses=error_responses(400, 401, 413),
)
def list_keys(ctx: Ctx, caller: Caller) -> dict[str, Any]:
    items = keys.list_keys(ctx.db, caller, ctx.clock())
    return {"items": items, "total": len(items)}


@router.delete(
    "/keys/{key_id}",
    summary="Revoke a key: it stops working within seconds (the admin: anyone's)",
    responses=error_responses(400, 401, 404, 413, 422),
)
def revoke_key(ctx: Ctx, caller: Caller, key_id: str = KEY_PATH) -> dict[str, Any]:
    return keys.revoke_key(ctx.db, caller, key_id, ctx.clock())
