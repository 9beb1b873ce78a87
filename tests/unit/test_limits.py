"""Rate limits as the ingress applies them: a sliding minute of calls and tokens per user."""

from __future__ import annotations

import pytest

from argus.cluster.limits import Limits, RateLimiter, limits_of, retry_after

pytestmark = pytest.mark.unit


def test_calls_past_the_limit_wait_until_the_oldest_leaves_the_minute() -> None:
    limiter = RateLimiter()
    three = Limits(rpm=3)
    assert [limiter.admit("alice", t, three) for t in (0.0, 10.0, 20.0)] == [None] * 3
    refused = limiter.admit("alice", 30.0, three)
    assert refused is not None and refused.kind == "requests" and refused.wait_s == 30.0
    assert limiter.admit("bob", 30.0, three) is None  # another user's minute
    assert limiter.admit("alice", 60.0, three) is None  # the call at 0 s has left
    refused = limiter.admit("alice", 61.0, three)
    assert refused is not None and refused.wait_s == pytest.approx(9.0)


def test_tokens_spent_in_the_minute_stop_calls_until_enough_of_them_leave() -> None:
    limiter = RateLimiter()
    hundred = Limits(tpm=100)
    assert limiter.admit("alice", 0.0, hundred) is None
    limiter.spent("alice", 1.0, 60)
    assert limiter.admit("alice", 2.0, hundred) is None  # 60 < 100: admitted
    limiter.spent("alice", 5.0, 60)
    refused = limiter.admit("alice", 6.0, hundred)
    assert refused is not None and refused.kind == "tokens"
    assert refused.wait_s == pytest.approx(55.0)  # the 60 spent at 1 s leave at 61 s
    assert limiter.admit("alice", 61.5, hundred) is None


def test_no_limit_admits_everything_and_keeps_nothing() -> None:
    limiter = RateLimiter()
    for t in range(1000):
        assert limiter.admit("alice", float(t), Limits()) is None
    assert limiter.windows == {}
    limiter.admit("bob", 0.0, Limits(rpm=5))
    limiter.forget_idle(61.0)
    assert limiter.windows == {}


def test_the_table_gives_each_replica_its_share() -> None:
    table = {"limits": {"alice": {"rpm": 10, "tpm": 1000}}, "ingress_replicas": 3}
    assert limits_of(table, "alice") == Limits(4, 334)
    assert limits_of(table, "bob") == Limits()
    assert limits_of({"limits": {"alice": {"rpm": True, "tpm": -5}}}, "alice") == Limits()
    assert limits_of({"limits": "nonsense"}, "alice") == Limits()
    assert limits_of({}, "alice") == Limits()


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(s) for s in (0.0, 0.2, 1.0, 9.01)] == ["1", "1", "1", "10"]
