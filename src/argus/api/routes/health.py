"""Liveness and readiness, without auth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from argus.api.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database and the Ray cluster are reachable")
def readyz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, Any] = {}
    ok = True
    try:
        ctx.db.ping()
        checks["database"] = "ok"
    except Exception as e:  # any failure means "not ready", with the reason shown
        ok = False
        checks["database"] = f"unreachable: {e}"
    try:
        ctx.ray.ping()
        checks["ray"] = "ok"
    except Exception as e:
        ok = False
        checks["ray"] = f"unreachable: {e}"
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
