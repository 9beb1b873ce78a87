"""A cap on every request body, before any route reads it or authenticates the caller.

A declared `Content-Length` over the cap is answered 413 at once, unread; a malformed one
400. A body that streams past the cap (chunked, or lying about its length) stops being
read at the cap: the route's read raises `BodyTooLarge`, which the API answers with 413.
Routes that take a spec or JSON apply their own, smaller caps on top (`api.bodies`).
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 256 * 1024  # a 32 KiB spec posted from the UI's form, percent-encoded
_DIGITS = re.compile(r"[0-9]{1,19}")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit // 1024} KiB")


def declared_length(raw: str) -> int | None:
    """The Content-Length as a number; ValueError when it is not plain digits."""
    if not _DIGITS.fullmatch(raw):
        raise ValueError(raw)
    return int(raw)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"content-length")
        if raw is not None:
            try:
                length = declared_length(raw.decode("latin-1").strip())
            except ValueError:
                await _answer(send, 400, "bad_request", "Content-Length is not a number")
                return
            if length is not None and length > self.max_bytes:
                await _answer(
                    send,
                    413,
                    "payload_too_large",
                    f"the request body is larger than {self.max_bytes // 1024} KiB",
                )
                return
        seen = 0
        limit = self.max_bytes

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped, send)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
