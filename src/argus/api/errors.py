"""Every error leaves the API as `{"error": {"code", "message"[, "details"]}}`, mapped here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from argus.errors import ArgusError
from argus.text import printable
from argus.yamlspec import field_name

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}
MAX_DETAILS = 25


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every error the API answers: a code, a message that says what to fix, field details."""

    error: ErrorInfo


_DESCRIBED = {
    400: "The request is malformed (not YAML or JSON, a bad header, a query out of range).",
    401: "No token, or a token that is unknown, revoked, or whose user is disabled.",
    403: "The caller may not do this (admin only, a path outside your folders, a permission).",
    404: "No such resource of yours (another user's is a 404 too).",
    409: "The request conflicts with the resource's state or with a quota.",
    413: "The body is larger than this route takes.",
    415: "The body is not of the media type this route takes.",
    422: "A field breaks a rule; `details` names each field and what to fix.",
    503: "A dependency (the database, the Ray cluster) is not reachable.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route answers, in the one error shape."""
    return {s: {"model": ErrorBody, "description": _DESCRIBED[s]} for s in statuses}


def _safe(value: Any) -> Any:
    """Strings that encode as UTF-8 whatever they hold (a lone surrogate comes escaped)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe(v) for v in value[:MAX_DETAILS]]
    return value


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": _safe(message)}
    if details is not None:
        err["details"] = _safe(details)
    return {"error": err}


def _headers_for(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


async def _argus_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArgusError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status,
        headers=_headers_for(exc.status),
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for e in exc.errors()[:MAX_DETAILS]:
        loc = [p for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        details.append({"field": field_name(loc) if loc else "(body)", "message": e.get("msg", "")})
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return JSONResponse(
            error_body("bad_request", "the body is not valid JSON"), status_code=400
        )
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return JSONResponse(error_body("invalid", message, details), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route; see /docs for the API"
    return JSONResponse(
        error_body(code, message),
        status_code=exc.status_code,
        headers=_headers_for(exc.status_code),
    )


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    # SQLite out of disk (or a lock held past the busy timeout): the transaction rolled
    # back whole, so nothing half-written stays; reads go on.
    reason = "the disk is full" if "full" in str(exc).lower() else type(exc).__name__
    return JSONResponse(
        error_body(
            "unavailable",
            f"the database cannot take this write now ({reason}); nothing was changed; "
            "try again later",
        ),
        status_code=503,
        headers={"Retry-After": "30"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(ArgusError, _argus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
