"""Usage from the sink to the API: the control loop drains, stores and acks (the fake's
sink is the real `UsageSink`); `GET /api/v2/usage`, its bad inputs, and Prometheus."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from argus.cluster.usage import Tokens, UsageBook
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from argus.store.schema import UsageMinute
from tests.conftest import ADMIN_TOKEN
from tests.fake_cluster import FakeServeClient
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def rec(api: Api, fake: FakeServeClient) -> ControlLoop:
    r = build_loop(api.settings, api.ctx.db, fake)
    r.clock = lambda: datetime.now(UTC)
    return r


def metered(fake: FakeServeClient, *calls: tuple[float, str, str, str, int, int, int]) -> None:
    """Calls as the ingress records them, handed to the sink."""
    book = UsageBook()
    for at, user, key, model, status, prompt, completion in calls:
        book.record(at, user, key, model, status, Tokens(prompt, completion), 0.2)
    fake.usage.add(book.take())


def usage(api: Api, token: str | None = None, **params: str) -> Any:
    headers = api.headers(token) if token else api.headers()
    params.setdefault("since", "2026-11-30")
    params.setdefault("until", "2026-12-03")
    return api.client.get("/api/v2/usage", params=params, headers=headers)


def test_metered_calls_reach_the_api_users_see_their_own_the_admin_all(
    api: Api, fake: FakeServeClient, rec: ControlLoop
) -> None:
    alice, bob = api.new_user("alice"), api.new_user("bob")
    metered(
        fake,
        (T0, "alice", "key_a", "alice-m", 200, 10, 4),
        (T0 + 5, "alice", "key_a", "alice-m", 200, 6, 2),
        (T0 + 70, "alice", "tok_b", "alice-m", 404, 0, 0),
        (T0 + 86400, "bob", "key_c", "alice-m", 200, 3, 1),  # the next day
    )
    rec.tick()
    assert fake.usage.drain() is None  # stored and acked

    mine = usage(api, alice).json()
    assert mine["items"] == [
        {
            "model": "alice-m",
            "requests": 3,
            "prompt_tokens": 16,
            "completion_tokens": 6,
            "mean_latency_ms": 200.0,
        }
    ]
    assert mine["totals"] == {"requests": 3, "prompt_tokens": 16, "completion_tokens": 6}
    assert usage(api, bob).json()["totals"]["requests"] == 1
    everyone = usage(api, group_by="user").json()["items"]
    assert {i["user"]: i["requests"] for i in everyone} == {"alice": 3, "bob": 1}
    by_key = usage(api, alice, group_by="key").json()["items"]
    assert [(i["key"], i["user"], i["requests"]) for i in by_key] == [
        ("key_a", "alice", 2),
        ("tok_b", "alice", 1),
    ]
    by_day = usage(api, group_by="day").json()["items"]
    assert [(i["day"], i["requests"]) for i in by_day] == [("2026-12-01", 3), ("2026-12-02", 1)]
    only_the_first = usage(api, alice, since="2026-12-01T08:00Z", until="2026-12-01T08:01Z")
    assert only_the_first.json()["totals"]["requests"] == 2

    text = api.client.get("/metrics", headers=api.headers()).text
    assert 'argus_tokens_total{kind="prompt",model="alice-m",user="alice"} 16.0' in text
    assert 'argus_requests_total{code="404",model="alice-m",user="alice"} 1.0' in text


def test_a_batch_whose_ack_was_lost_is_counted_once(
    api: Api, fake: FakeServeClient, rec: ControlLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    metered(fake, (T0, "alice", "key_a", "m", 200, 10, 4))
    real_ack = fake.ack_usage

    def lost(batch: str) -> None:
        raise ConnectionError("the Ray agent does not answer (ReadTimeout)")

    monkeypatch.setattr(fake, "ack_usage", lost)
    rec.tick()  # stored, then the ack fails: the sink hands the batch out again
    metered(fake, (T0 + 1, "alice", "key_a", "m", 200, 1, 1))  # waits behind it
    monkeypatch.setattr(fake, "ack_usage", real_ack)
    rec.tick()  # the same batch: already stored, acked now
    rec.tick()  # the next one
    with api.ctx.db.read() as s:
        rows = s.query(UsageMinute).all()
    assert [(r.requests, r.prompt_tokens, r.completion_tokens) for r in rows] == [(2, 11, 5)]


def test_rows_the_store_cannot_take_are_skipped_and_the_rest_kept(
    api: Api, fake: FakeServeClient, rec: ControlLoop
) -> None:
    good = {"minute": int(T0), "user": "alice", "key": "k", "model": "m", "status": 200}
    counts = {"requests": 1, "prompt_tokens": 2, "completion_tokens": 3, "latency_ms": 4}
    fake.usage.add(
        [
            {**good, **counts},
            {**good, "status": 99, **counts},
            {**good, "minute": "soon", **counts},
            {**good, "user": "u" * 500, **counts, "requests": -5},
            {**good, "user": "bob", **counts, "prompt_tokens": "x"},
            "not a row",
        ]
    )
    rec.tick()
    with api.ctx.db.read() as s:
        rows = sorted(s.query(UsageMinute).all(), key=lambda r: r.user_id)
    assert [(r.user_id, r.requests, r.prompt_tokens) for r in rows] == [
        ("alice", 1, 2),
        ("u" * 32, 0, 2),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "since"),
        ({"since": "2024-01-01", "until": "2026-12-01"}, "since"),
        ({"group_by": "minute"}, "group_by"),
        ({"since": "x" * 65}, "since"),
        ({"since": "", "until": "0001-01-01"}, "until"),
        ({"until": "9999-12-31T23:59-05:00"}, "until"),
    ],
)
def test_a_bad_range_or_grouping_says_what_to_fix(
    api: Api, params: dict[str, str], field: str
) -> None:
    r = usage(api, **params)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_usage_needs_a_token(api: Api) -> None:
    assert api.client.get("/api/v2/usage").status_code == 401


def test_the_usage_page_charts_the_callers_days_by_model(
    api: Api, fake: FakeServeClient, rec: ControlLoop
) -> None:
    from tests.integration.test_ui import get, login

    alice = api.new_user("alice")
    api.new_user("bob")
    now = api.clock.now.timestamp()  # the page's clock
    metered(
        fake,
        (now - 86400, "alice", "k", "alice-a", 200, 300, 100),
        (now, "alice", "k", "alice-a", 200, 100, 100),
        (now, "alice", "k", "alice-b", 200, 50, 50),
        (now, "bob", "k2", "bob-c", 200, 1000, 1000),
    )
    rec.tick()
    login(api, alice)
    page = get(api, "/ui/usage").text
    assert 'aria-current="page">Usage' in page
    assert "bob-c" not in page  # alice sees her own
    today = api.clock.now.date().isoformat()
    row = page[page.index(f'data-day="{today}"') :]
    row = row[: row.index("</tr>")]
    # The busiest day is the whole width; today's 300 tokens are 3/4 of yesterday's 400.
    assert 'x="0.0" y="0" width="50.0"' in row and 'data-model="alice-a"' in row
    assert 'x="50.0" y="0" width="25.0"' in row and 'data-model="alice-b"' in row
    assert '<tr data-model="alice-a"><td><code>alice-a</code></td><td class="num">2</td>' in page
    login(api, ADMIN_TOKEN)
    assert "bob-c" in get(api, "/ui/usage").text  # the admin sees everyone's
