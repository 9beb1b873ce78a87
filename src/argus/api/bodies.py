"""Request bodies the routes share: YAML specs and small JSON documents, each read with a
size cap before it is parsed, and blocking calls run off the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from argus.api.limits import declared_length
from argus.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MAX_JSON_BYTES = 4 * 1024
MAX_JSON_DEPTH = 8


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_capped(request: Request, max_bytes: int, what: str) -> bytes:
    """The whole body, refused (413) as soon as it passes `max_bytes`."""
    too_large = f"the {what} is larger than {max_bytes // 1024} KiB"
    declared = request.headers.get("content-length")
    if declared:
        try:
            if (declared_length(declared.strip()) or 0) > max_bytes:
                raise PayloadTooLarge(too_large)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(too_large)
    return body


async def read_yaml_body(request: Request, max_bytes: int) -> str:
    """The body as UTF-8 text, sent as YAML and no larger than `max_bytes`."""
    media = media_type(request)
    if media not in YAML_TYPES:
        raise UnsupportedMediaType(
            "send the spec as YAML with 'Content-Type: application/yaml' "
            f"(got {media[:60] or 'none'})"
        )
    body = await read_capped(request, max_bytes, "spec")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the spec is not UTF-8 text") from None


async def read_json_object(
    request: Request, example: str, max_bytes: int = MAX_JSON_BYTES
) -> dict[str, Any]:
    """A small JSON object (at most `max_bytes`, nested at most MAX_JSON_DEPTH deep)."""
    if media_type(request) != "application/json":
        raise UnsupportedMediaType(
            f"send JSON such as {example} with 'Content-Type: application/json'"
        )
    body = await read_capped(request, max_bytes, "body")
    if _depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(f"the body is not valid JSON; send {example}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object such as {example}")
    return data


def _depth(body: bytes) -> int:
    """How deep brackets nest, outside strings (a cheap scan before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking call (a write transaction) off the event loop."""
    return await run_in_threadpool(fn, *args)
