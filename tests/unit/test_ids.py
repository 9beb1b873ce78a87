from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from argus.ids import (
    InvalidId,
    make_model_id,
    make_model_id_prefix,
    new_model_key,
    validate_model_id_suffix,
    validate_user_id,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ok", ["a", "alice", "bob_2", "x-y", "a" * 32])
def test_valid_user_ids(ok: str) -> None:
    assert validate_user_id(ok) == ok


@pytest.mark.parametrize("bad", ["", "Alice", "1abc", "_a", "a" * 33, "a b", "a/b", "ä"])
def test_invalid_user_ids(bad: str) -> None:
    with pytest.raises(InvalidId, match="lowercase letter first"):
        validate_user_id(bad)


@pytest.mark.parametrize("ok", ["smol", "S", "9", "a.b_c-d", "x" * 64, "Qwen2.5-7B"])
def test_valid_suffixes(ok: str) -> None:
    assert validate_model_id_suffix(ok) == ok


@pytest.mark.parametrize("bad", ["", ".a", "-a", "a b", "x" * 65, "a/b", "a:b"])
def test_invalid_suffixes(bad: str) -> None:
    with pytest.raises(InvalidId):
        validate_model_id_suffix(bad)


def test_prefix_uses_the_utc_minute() -> None:
    t = datetime(2026, 1, 2, 3, 4, 59, tzinfo=UTC)
    assert make_model_id_prefix("alice", t) == "alice-202601020304"
    plus2 = timezone(timedelta(hours=2))
    assert make_model_id_prefix("alice", t.astimezone(plus2)) == "alice-202601020304"
    assert make_model_id("alice-202601020304", "smol") == "alice-202601020304-smol"


def test_prefix_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_model_id_prefix("alice", datetime(2026, 1, 1))


def test_model_keys_are_unique_and_opaque() -> None:
    keys = {new_model_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith("mdl_") and len(k) == 24 for k in keys)
