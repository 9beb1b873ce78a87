"""Usage of the OpenAI endpoint: requests and tokens by model, key, user or day."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from argus import usage
from argus.api.deps import Caller, Ctx
from argus.api.errors import error_responses

router = APIRouter(prefix="/api/v2", tags=["usage"])


@router.get(
    "/usage",
    summary="Requests and tokens through the OpenAI endpoint (yours; the admin: everyone's)",
    responses=error_responses(400, 401, 413, 422),
)
def read_usage(
    ctx: Ctx,
    caller: Caller,
    since: str | None = Query(
        None, max_length=64, description="ISO 8601 date or time; 7 days before `until` if left out"
    ),
    until: str | None = Query(None, max_length=64, description="ISO 8601; now if left out"),
    group_by: Literal["model", "key", "user", "day"] = Query("model"),
) -> dict[str, Any]:
    return usage.read_usage(ctx.db, caller, ctx.clock(), since, until, group_by)
