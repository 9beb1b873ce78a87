"""Request bodies the routes share: a YAML spec read with a size cap, and blocking calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from argus.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


async def read_yaml_body(request: Request, max_bytes: int) -> str:
    """The body as UTF-8 text, sent as YAML and no larger than `max_bytes`."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise UnsupportedMediaType(
            f"send the spec as YAML with 'Content-Type: application/yaml' (got {media or 'none'})"
        )
    too_large = f"the spec is larger than {max_bytes // 1024} KiB"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(too_large)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(too_large)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the spec is not UTF-8 text") from None


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call (a write transaction) off the event loop."""
    return await run_in_threadpool(fn, *args)
