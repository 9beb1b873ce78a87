from __future__ import annotations

import pytest

from argus.auth.tokens import hash_token, issue_token, parse_token_id, token_matches

pytestmark = pytest.mark.unit


def test_issued_token_is_random_and_stored_only_as_hash() -> None:
    a, b = issue_token(), issue_token()
    assert a.token != b.token and a.token_id != b.token_id
    assert a.token not in a.token_hash
    assert a.token_hash == hash_token(a.token)
    assert len(a.token) > 50


def test_token_id_is_parsed_back() -> None:
    t = issue_token()
    assert parse_token_id(t.token) == t.token_id


@pytest.mark.parametrize("bad", ["", "argus_", "Bearer x", "argus_zzzzzzzzzzzz_" + "a" * 43])
def test_malformed_tokens_have_no_id(bad: str) -> None:
    assert parse_token_id(bad) is None


def test_matching_is_exact() -> None:
    t = issue_token()
    assert token_matches(t.token, t.token_hash)
    assert not token_matches(t.token[:-1] + ("A" if t.token[-1] != "A" else "B"), t.token_hash)
