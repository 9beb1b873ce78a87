"""Usage rows: one per minute, user, key, model and HTTP status (`argus.cluster.usage`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, func, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.orm import Session

from argus.store.schema import UsageBatchStored, UsageMinute

GROUPS = ("model", "key", "user", "day")
_MAX_COUNT = 2**31 - 1
_MAX_LATENCY_MS = 2**62


def _count(value: Any, limit: int = _MAX_COUNT) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return 0
    return min(max(n, 0), limit)


def _row(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A row from the cluster as the table takes it, or None if it is not one."""
    try:
        minute = datetime.fromtimestamp(int(raw["minute"]) // 60 * 60, UTC)
        status = int(raw["status"])
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
    if not 100 <= status <= 599:
        return None
    return {
        "minute": minute,
        "user_id": str(raw.get("user", ""))[:32],
        "key_id": str(raw.get("key", ""))[:40],
        "model_id": str(raw.get("model", ""))[:160],
        "status": status,
        "requests": _count(raw.get("requests")),
        "prompt_tokens": _count(raw.get("prompt_tokens")),
        "completion_tokens": _count(raw.get("completion_tokens")),
        "latency_ms": _count(raw.get("latency_ms"), _MAX_LATENCY_MS),
    }


def store_batch(
    session: Session, batch_id: str, rows: Iterable[dict[str, Any]], now: datetime
) -> int | None:
    """Add a drained batch's rows to the minutes; None if this batch was stored before."""
    if session.get(UsageBatchStored, batch_id[:64]) is not None:
        return None
    stored = 0
    for raw in rows:
        row = _row(raw)
        if row is None:
            continue
        stmt = insert(UsageMinute).values(**row)
        added = {
            name: getattr(UsageMinute, name) + getattr(stmt.excluded, name)
            for name in ("requests", "prompt_tokens", "completion_tokens", "latency_ms")
        }
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["minute", "user_id", "key_id", "model_id", "status"], set_=added
            )
        )
        stored += 1
    session.add(UsageBatchStored(batch_id=batch_id[:64], stored_at=now, rows=stored))
    return stored


def usage(
    session: Session,
    since: datetime,
    until: datetime,
    group_by: str,
    user_id: str | None = None,
) -> list[dict[str, Any]]:
    """Sums over [since, until), one row per group (`GROUPS`), biggest first; a user's own
    when `user_id` is given, everyone's otherwise."""
    column: Any
    if group_by == "model":
        column = UsageMinute.model_id
    elif group_by == "key":
        column = UsageMinute.key_id
    elif group_by == "user":
        column = UsageMinute.user_id
    elif group_by == "day":
        column = func.substr(UsageMinute.minute, 1, 10, type_=String())  # SQLite keeps text
    else:
        raise ValueError(f"group_by is one of {', '.join(GROUPS)}")
    owner = [UsageMinute.user_id] if group_by == "key" else []
    q = (
        select(
            column.label("group"),
            *owner,
            func.sum(UsageMinute.requests),
            func.sum(UsageMinute.prompt_tokens),
            func.sum(UsageMinute.completion_tokens),
            func.sum(UsageMinute.latency_ms),
        )
        .where(UsageMinute.minute >= since, UsageMinute.minute < until)
        .group_by(column, *owner)
    )
    if user_id is not None:
        q = q.where(UsageMinute.user_id == user_id)
    out = []
    for row in session.execute(q):
        group, *rest = row
        owner_id = rest.pop(0) if owner else None
        requests, prompt, completion, latency = (int(v or 0) for v in rest)
        item: dict[str, Any] = {
            group_by: str(group),
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "mean_latency_ms": round(latency / requests, 1) if requests else 0.0,
        }
        if owner_id is not None:
            item["user"] = owner_id
        out.append(item)
    if group_by == "day":
        return sorted(out, key=lambda r: r["day"])
    return sorted(out, key=lambda r: (-r["requests"], r[group_by]))


def totals(session: Session) -> list[tuple[str, str, int, int, int, int]]:
    """(user, model, status, requests, prompt tokens, completion tokens), for Prometheus."""
    q = select(
        UsageMinute.user_id,
        UsageMinute.model_id,
        UsageMinute.status,
        func.sum(UsageMinute.requests),
        func.sum(UsageMinute.prompt_tokens),
        func.sum(UsageMinute.completion_tokens),
    ).group_by(UsageMinute.user_id, UsageMinute.model_id, UsageMinute.status)
    return [
        (str(u), str(m), int(s), int(r or 0), int(p or 0), int(c or 0))
        for u, m, s, r, p, c in session.execute(q)
    ]


def daily(
    session: Session, since: datetime, until: datetime, user_id: str | None = None
) -> list[tuple[str, str, int, int]]:
    """(day, model, requests, tokens) over [since, until): the Usage page's chart."""
    day = func.substr(UsageMinute.minute, 1, 10, type_=String())
    q = (
        select(
            day,
            UsageMinute.model_id,
            func.sum(UsageMinute.requests),
            func.sum(UsageMinute.prompt_tokens + UsageMinute.completion_tokens),
        )
        .where(UsageMinute.minute >= since, UsageMinute.minute < until)
        .group_by(day, UsageMinute.model_id)
        .order_by(day, UsageMinute.model_id)
    )
    if user_id is not None:
        q = q.where(UsageMinute.user_id == user_id)
    return [(str(d), str(m), int(r or 0), int(t or 0)) for d, m, r, t in session.execute(q)]
