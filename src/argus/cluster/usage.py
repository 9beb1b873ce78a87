"""What each call to the OpenAI endpoint used, counted where it is answered.

The ingress (`argus.cluster.ingress`) records every call that reached a model: who made
it (user and key), the model, the HTTP status, the prompt and completion tokens the
answer's `usage` reported, and how long it took. It keeps one row per minute, user, key,
model and status in memory (`UsageBook`) and every few seconds hands the rows to the
usage sink, a detached actor (`argus.cluster.usage_sink`); argus drains the sink through
its Ray agent and stores the rows (`argus.usage`). Nothing on a request's path waits on
argus or on the sink.

Streaming answers carry usage only when the client asks for it (`stream_options:
{include_usage: true}`); the ingress asks for it on every stream and takes the extra
chunk out again when the client did not ask (`strip_usage_chunks`).

Plain values only: no Ray import, so the unit tests run the code the ingress runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MINUTE_S = 60
ROW_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "latency_ms")


@dataclass(frozen=True)
class Tokens:
    prompt: int
    completion: int


def _from_usage(usage: Any) -> Tokens | None:
    if usage is None:
        return None
    if not isinstance(usage, dict):
        usage = getattr(usage, "model_dump", lambda: None)()
        if not isinstance(usage, dict):
            return None
    try:
        return Tokens(
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        )
    except (TypeError, ValueError):
        return None


def _events(packet: str) -> Iterable[str]:
    """The JSON payloads of a packet of server-sent events ("data: {...}\\n\\n" ...)."""
    for line in packet.split("\n"):
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]":
                yield payload


def tokens_in(item: Any) -> Tokens | None:
    """The usage an item of the model's answer reports: a response object, a dict, a
    packet of server-sent events, or a list of these (the last usage found wins)."""
    if isinstance(item, list):
        found = None
        for part in item:
            found = tokens_in(part) or found
        return found
    if isinstance(item, str):
        found = None
        for payload in _events(item):
            if '"usage"' not in payload:
                continue
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if isinstance(data, dict):
                found = _from_usage(data.get("usage")) or found
        return found
    if isinstance(item, dict):
        return _from_usage(item.get("usage"))
    return _from_usage(getattr(item, "usage", None))


def _is_usage_chunk(payload: str) -> bool:
    try:
        data = json.loads(payload)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("choices") == [] and data.get("usage") is not None


def strip_usage_chunks(item: Any) -> Any:
    """The item without the usage-only chunk `include_usage` adds to a stream (for a
    client that did not ask for it); anything else passes unchanged."""
    if isinstance(item, list):
        kept = [strip_usage_chunks(part) for part in item]
        return [part for part in kept if part != ""]
    if not isinstance(item, str) or '"usage"' not in item:
        return item
    out = []
    for event in item.split("\n\n"):
        payload = event.strip()
        if payload.startswith("data:") and _is_usage_chunk(payload[5:].strip()):
            continue
        if event:
            out.append(event + "\n\n")
    return "".join(out)


def error_status(item: Any) -> int | None:
    """The HTTP status of an error the model's deployment answered with, else None."""
    error = getattr(item, "error", None)
    code = getattr(error, "code", None)
    if isinstance(code, int) and 400 <= code <= 599:
        return code
    return None


RowKey = tuple[int, str, str, str, int]  # minute (unix s), user, key, model, status


@dataclass
class UsageBook:
    """The rows of calls not yet handed on, one per minute, user, key, model and status."""

    rows: dict[RowKey, list[int]] = field(default_factory=dict)

    def record(
        self,
        now: float,
        user: str,
        key: str,
        model: str,
        status: int,
        tokens: Tokens | None,
        latency_s: float,
    ) -> None:
        row_key = (int(now) // MINUTE_S * MINUTE_S, user, key, model, status)
        t = tokens or Tokens(0, 0)
        add = (1, t.prompt, t.completion, int(latency_s * 1000))
        row = self.rows.setdefault(row_key, [0, 0, 0, 0])
        for i, n in enumerate(add):
            row[i] += n

    def take(self) -> list[dict[str, Any]]:
        """Every row as a plain dict; the book is empty after."""
        taken = [row_dict(k, v) for k, v in self.rows.items()]
        self.rows = {}
        return taken

    def put_back(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows that could not be handed on, counted again with whatever came since."""
        for row in rows:
            try:
                k = row_key(row)
                counts = [max(int(row[name]), 0) for name in ROW_FIELDS]
            except (KeyError, TypeError, ValueError):
                continue  # not a row (the sink is a named actor any Ray driver can call)
            mine = self.rows.setdefault(k, [0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n


def row_key(row: dict[str, Any]) -> RowKey:
    return (
        int(row["minute"]),
        str(row["user"]),
        str(row["key"]),
        str(row["model"]),
        int(row["status"]),
    )


def row_dict(k: RowKey, counts: list[int]) -> dict[str, Any]:
    minute, user, key, model, status = k
    return {
        "minute": minute,
        "user": user,
        "key": key,
        "model": model,
        "status": status,
        **dict(zip(ROW_FIELDS, counts, strict=True)),
    }


def merge_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the same minute, user, key, model and status added into one."""
    book = UsageBook()
    book.put_back(rows)
    return book.take()
