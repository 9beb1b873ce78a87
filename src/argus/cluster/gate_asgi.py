"""The gate in front of the OpenAI ingress, as plain ASGI: CORS, then the caller's key.

`argus.cluster.ingress` puts it where Ray's wildcard CORS middleware was. It reads the
ingress's table (`argus.cluster.access`) on every request and leaves the caller in the
request's state; the ingress then decides per model. Starlette only, no Ray: the
integration tests run it as it runs in the replica.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from argus.cluster.access import (
    BAD_KEY,
    NO_KEY,
    bearer,
    caller_of,
    model_not_found,
    openai_error,
    origin_allowed,
)
from argus.cluster.limits import retry_after


class HoldsTable(Protocol):
    table: dict[str, Any]


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
CALLER = "argus_caller"  # where the gate leaves the caller in the request's state


class ModelNotFound(HTTPException):
    def __init__(self, model: str) -> None:
        super().__init__(404, detail=model_not_found(model))  # type: ignore[arg-type]


class RateLimited(HTTPException):
    """429 in the OpenAI shape, with `Retry-After` (`argus.cluster.limits`)."""

    def __init__(self, user: str, kind: str, wait_s: float) -> None:
        after = retry_after(wait_s)
        message = (
            f"Rate limit reached for {user}: {kind} per minute; try again in {after} s "
            "(the admin sets the limits)."
        )
        detail = openai_error(message, kind, "rate_limit_exceeded")
        super().__init__(429, detail=detail, headers={"Retry-After": after})  # type: ignore[arg-type]


# A model at zero replicas with no room for one: how soon to ask again. A replica of the
# demo model starts in about half a minute once it has room.
NO_ROOM_RETRY_S = 30.0


class NoRoom(HTTPException):
    """503 in the OpenAI shape, with `Retry-After`: the model scaled to zero and the GPUs
    (or CPUs) its next replica needs are held by others; it starts once they are free."""

    def __init__(self, model: str) -> None:
        message = (
            f"The model `{model}` is scaled to zero and the cluster has no room for a "
            f"replica now; try again in {retry_after(NO_ROOM_RETRY_S)} s."
        )
        detail = openai_error(message, "server_error", "model_scaled_to_zero_no_room")
        headers = {"Retry-After": retry_after(NO_ROOM_RETRY_S)}
        super().__init__(503, detail=detail, headers=headers)  # type: ignore[arg-type]


class Gate:
    """Pure ASGI middleware, where Ray's wildcard CORS middleware was: CORS, then the key."""

    def __init__(self, app: Any, ingress: HoldsTable) -> None:
        self.app, self.ingress = app, ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        table = self.ingress.table
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        allowed_origin = origin is not None and origin_allowed(table, origin)
        if scope["method"] == "OPTIONS" and origin and "access-control-request-method" in headers:
            await self._preflight(origin, allowed_origin)(scope, receive, send)
            return
        key = bearer(headers.get("authorization"))
        caller = None if key is None else caller_of(table, key, time.time())
        if caller is None:
            why = BAD_KEY if key else NO_KEY
            body = openai_error(why, "invalid_request_error", "invalid_api_key")
            await JSONResponse(body, 401, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER] = caller
        if not allowed_origin:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [
                    (b"access-control-allow-origin", str(origin).encode("latin-1")),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _preflight(origin: str, allowed: bool) -> Response:
        if not allowed:
            body = openai_error(
                f"cross-origin calls from {origin} are not allowed here",
                "invalid_request_error",
                "origin_not_allowed",
            )
            return JSONResponse(body, 403)
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": "Authorization, Content-Type",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )


async def http_error(request: Request, e: Exception) -> JSONResponse:
    """FastAPI's `{"detail": ...}` errors (a bad route, a bad method) in the OpenAI shape."""
    assert isinstance(e, HTTPException)
    if isinstance(e.detail, dict) and "error" in e.detail:
        return JSONResponse(e.detail, e.status_code, headers=e.headers)
    kind = "invalid_request_error" if e.status_code < 500 else "server_error"
    code = "not_found" if e.status_code == 404 else "invalid_request"
    return JSONResponse(openai_error(str(e.detail), kind, code), e.status_code)
