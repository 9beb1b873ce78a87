"""Every error leaves the API as `{"error": {"code", "message"[, "details"]}}`, mapped here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from argus.errors import ArgusError

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
    503: "unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
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
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        details.append({"field": ".".join(loc) or "(body)", "message": e.get("msg", "")})
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ArgusError, _argus_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
