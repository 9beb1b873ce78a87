"""Who may call which model: the rules the ingress runs on the table argus pushes."""

from __future__ import annotations

import pytest

from argus.cluster.access import Caller, bearer, caller_of, key_hash, may_call, origin_allowed

pytestmark = pytest.mark.unit

SMOL, OTHER = "alice-202611281200-smol", "carol-202611281200-big"
TABLE = {
    "principals": {
        key_hash("alice-token"): {"user": "alice", "admin": False, "models": None, "expires": None},
        key_hash("alice-narrow"): {
            "user": "alice",
            "admin": False,
            "models": [OTHER],
            "expires": 2000.0,
        },
        key_hash("bob-key"): {"user": "bob", "admin": False, "models": None, "expires": None},
        key_hash("root"): {"user": "admin", "admin": True, "models": None, "expires": None},
    },
    "models": {
        SMOL: {"owner": "alice", "users": ["bob"], "all": False},
        OTHER: {"owner": "carol", "users": [], "all": False},
        "dave-202611281200-pub": {"owner": "dave", "users": [], "all": True},
    },
    "cors_origins": ["https://app.example"],
}


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer k1", "k1"),
        ("bearer   k1  ", "k1"),
        ("Basic k1", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
        ("k1", None),
    ],
)
def test_only_a_bearer_header_carries_a_key(header: str | None, key: str | None) -> None:
    assert bearer(header) == key


def test_a_key_is_known_by_its_hash_and_lapses_at_its_expiry() -> None:
    assert caller_of(TABLE, "alice-token", now=1e12) == Caller("alice", False, None)
    assert caller_of(TABLE, "alice-narrow", now=1999.0) == Caller(
        "alice", False, frozenset({OTHER})
    )
    assert caller_of(TABLE, "alice-narrow", now=2000.0) is None  # expired
    assert caller_of(TABLE, "unknown", now=0.0) is None
    assert caller_of({}, "alice-token", now=0.0) is None  # before the first table: nobody


def test_the_owner_those_it_is_shared_with_and_the_admin_may_call_a_model() -> None:
    alice, bob = Caller("alice", False, None), Caller("bob", False, None)
    carol, admin = Caller("carol", False, None), Caller("admin", True, None)
    assert may_call(TABLE, alice, SMOL) and may_call(TABLE, bob, SMOL)
    assert not may_call(TABLE, carol, SMOL)  # private to alice, shared with bob only
    assert may_call(TABLE, carol, "dave-202611281200-pub")  # all-users
    assert may_call(TABLE, admin, OTHER)
    assert not may_call(TABLE, alice, "no-such-model") and not may_call(TABLE, bob, OTHER)


def test_a_key_that_lists_models_calls_those_only_and_never_more_than_its_user() -> None:
    narrow = Caller("alice", False, frozenset({OTHER}))
    assert not may_call(TABLE, narrow, SMOL)  # alice's own, but not on this key's list
    assert not may_call(TABLE, narrow, OTHER)  # on the list, but carol's and private
    admin_narrow = Caller("admin", True, frozenset({SMOL}))
    assert may_call(TABLE, admin_narrow, SMOL) and not may_call(TABLE, admin_narrow, OTHER)


def test_only_listed_origins_are_allowed() -> None:
    assert origin_allowed(TABLE, "https://app.example")
    assert not origin_allowed(TABLE, "https://evil.example")
    assert not origin_allowed({}, "https://app.example")
