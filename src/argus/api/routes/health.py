"""Liveness and readiness, without auth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from argus.api.deps import Ctx

router = APIRouter(tags=["health"])
_READY = {
    "content": {
        "application/json": {
            "example": {"status": "ready", "checks": {"database": "ok", "ray": "ok"}}
        }
    }
}
_NOT_READY = {
    "description": "A dependency is not reachable; each check says which and since when.",
    "content": {
        "application/json": {
            "example": {
                "status": "not ready",
                "checks": {
                    "database": "ok",
                    "ray": "unreachable since 2026-11-30T12:00:05+00:00",
                },
            }
        }
    },
}


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the Ray cluster are reachable",
    responses={200: _READY, 503: _NOT_READY},
)
def readyz(ctx: Ctx) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        ctx.db.ping()
        checks["database"] = "ok"
    except Exception as e:  # any failure means "not ready"; the reason stays short
        checks["database"] = f"unreachable ({type(e).__name__})"
    note = ctx.status.cluster_note()
    if note is not None:
        checks["ray"] = f"unreachable since {note['unreachable_since']}"
    else:
        try:
            ctx.ray.ping()
            checks["ray"] = "ok"
        except Exception as e:
            checks["ray"] = f"unreachable ({type(e).__name__})"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)
