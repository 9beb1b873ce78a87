"""Usage of the OpenAI endpoint, the operations: collecting it, and reading it.

The ingress counts every call that reaches a model (`argus.cluster.usage`) and hands the
rows to the usage sink; each control-loop tick, `UsageCollector` drains the sink through
the Ray agent, stores the batch and acks it, in that order: an argus killed in between
gets the same batch again, and the batch ids it keeps make it count once. Reading
(`read_usage`) is the API's, the CLI's and the Usage page's one path: users see their
own, the admin everyone's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argus.auth.tokens import Principal
from argus.cluster.serve_client import ServeClient
from argus.errors import Unprocessable
from argus.store import usage as store
from argus.store.db import Database

DEFAULT_SPAN = timedelta(days=7)
MAX_SPAN = timedelta(days=366)
GROUPS = store.GROUPS
CURRENT_MINUTE = timedelta(minutes=1)  # "until now" takes the minute now is in


@dataclass
class UsageCollector:
    db: Database
    client: ServeClient
    clock: Callable[[], datetime]

    def collect(self) -> int | None:
        """Store the sink's batch out and ack it; the rows stored (None: none waiting, or
        a batch stored before whose ack was lost)."""
        batch = self.client.drain_usage()
        if batch is None:
            return None
        with self.db.write() as s:
            stored = store.store_batch(s, batch.batch, batch.rows, self.clock())
        self.client.ack_usage(batch.batch)
        return stored


def parse_time(field: str, value: str) -> datetime:
    """An ISO 8601 date or time; one without a zone is UTC."""
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError):
        example = "e.g. 2026-12-01 or 2026-12-01T08:00Z"
        raise Unprocessable.of_field(field, f"an ISO 8601 date or time, {example}") from None


def read_usage(
    db: Database,
    caller: Principal,
    now: datetime,
    since: str | None = None,
    until: str | None = None,
    group_by: str = "model",
) -> dict[str, Any]:
    if group_by not in GROUPS:
        raise Unprocessable.of_field("group_by", f"one of {', '.join(GROUPS)}")
    end = parse_time("until", until) if until else now + CURRENT_MINUTE
    try:
        start = parse_time("since", since) if since else end - DEFAULT_SPAN
    except OverflowError:
        raise Unprocessable.of_field("until", "a time after year 1") from None
    if start >= end:
        raise Unprocessable.of_field("since", "must come before until")
    if end - start > MAX_SPAN:
        raise Unprocessable.of_field("since", f"at most {MAX_SPAN.days} days before until")
    user_id = None if caller.is_admin else caller.user_id
    with db.read() as s:
        items = store.usage(s, start, end, group_by, user_id)
    totals = {
        k: sum(int(i[k]) for i in items) for k in ("requests", "prompt_tokens", "completion_tokens")
    }
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "group_by": group_by,
        "items": items,
        "totals": totals,
    }


CHART_DAYS = 14


def chart(db: Database, caller: Principal, now: datetime) -> dict[str, Any]:
    """The Usage page: tokens a day over the last CHART_DAYS days, by model, and the sums
    by model (the caller's own; the admin's: everyone's)."""
    end = now + CURRENT_MINUTE
    start = (now - timedelta(days=CHART_DAYS - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    user_id = None if caller.is_admin else caller.user_id
    with db.read() as s:
        rows = store.daily(s, start, end, user_id)
    models = sorted({m for _, m, _, _ in rows})
    by_day: dict[str, list[tuple[str, int]]] = {}
    for day, model, _, tokens in rows:
        by_day.setdefault(day, []).append((model, tokens))
    top = max((sum(t for _, t in v) for v in by_day.values()), default=0)
    days = []
    for i in range(CHART_DAYS):
        day = (start + timedelta(days=i)).date().isoformat()
        parts = [(m, t) for m, t in by_day.get(day, []) if t]
        segments, x = [], 0.0
        for m, t in parts:
            width = round(100 * t / top, 2)
            segments.append(
                {"model": m, "tokens": t, "color": models.index(m) % 8, "x": x, "width": width}
            )
            x = round(x + width, 2)
        days.append({"day": day, "tokens": sum(t for _, t in parts), "segments": segments})
    summed = read_usage(db, caller, now, start.isoformat(), end.isoformat(), "model")
    return {
        "days": days,
        "models": [{"model": m, "color": i % 8} for i, m in enumerate(models)],
        **summed,
    }
