"""The OpenAI endpoint belongs to its users (issue 13), for real: Ray Serve LLM with argus's
ingress, the demo model, the official `openai` client with `api_key=`.

alice's `smol` is private to her; bob is refused it exactly as a model that does not
exist, until she shares it; his key stops within seconds of its revocation, her model
within seconds of her taking the share back, his token within seconds of his being
disabled; no key is a 401; a page on another origin gets no CORS grant; and the model's
replica keeps its pid through all of it (the table reaches the ingress as `user_config`,
in place).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
BITES_WITHIN_S = 5.0


def ask(client: openai.OpenAI, model_id: str) -> str:
    reply = client.chat.completions.create(
        model=model_id, temperature=0, max_tokens=4, messages=[{"role": "user", "content": "Hi"}]
    )
    return reply.choices[0].message.content or ""


def until(check: Callable[[], bool], limit_s: float) -> float:
    """Seconds until `check()` holds; fails past `limit_s`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit_s, f"not within {limit_s} s"
        time.sleep(0.2)
    return time.monotonic() - start


def status(client: openai.OpenAI, model_id: str) -> int:
    """The HTTP status a short chat gets."""
    try:
        ask(client, model_id)
    except openai.APIStatusError as e:
        return e.status_code
    return 200


def models_of(client: openai.OpenAI) -> list[str] | None:
    """The model ids `/v1/models` gives the client's key; None when its key is refused.
    It answers in the ingress, without a model's engine: when a change bit, not how long a
    chat took."""
    try:
        return [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        return None


def test_keys_access_and_revocation_bite_within_seconds_and_restart_nothing(
    stack: Stack, smol: tuple[str, str]
) -> None:
    key, model_id = smol
    pids = stack.settled_pids(model_id, 1)
    bob = stack.new_user("bob")
    r = stack.call("POST", "/api/v2/keys", bob, json={"name": "bob's laptop"})
    assert r.status_code == 201, r.text
    bobs_key = r.json()
    as_bob = stack.openai(bobs_key["key"])
    live_in = until(lambda: status(as_bob, model_id) == 404, 30)  # his key is live
    print(f"a new key took {live_in:.1f} s to work")

    # No key, a wrong key: 401 in the OpenAI shape.
    bare = httpx.get(f"{stack.openai_url}/models", timeout=10)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        ask(stack.openai("argus_key_000000000000_" + "x" * 43), model_id)

    # alice's token calls her model; bob gets what a model that does not exist gets.
    assert ask(stack.openai(), model_id)
    with pytest.raises(openai.NotFoundError) as mine:
        ask(as_bob, model_id)
    with pytest.raises(openai.NotFoundError) as nobodys:
        ask(as_bob, "alice-209901010000-nothing")
    assert mine.value.code == nobodys.value.code == "model_not_found"
    assert str(mine.value).replace(model_id, "X") == str(nobodys.value).replace(
        "alice-209901010000-nothing", "X"
    )
    assert [m.id for m in as_bob.models.list()] == []
    assert model_id in [m.id for m in stack.openai().models.list()]

    # alice shares it with bob: it bites within seconds; streaming too.
    r = stack.call("PATCH", f"/api/v2/serve/models/{key}", json={"access": {"users": ["bob"]}})
    assert r.status_code == 202, r.text
    shared_in = until(lambda: models_of(as_bob) == [model_id], 30)
    print(f"sharing took {shared_in:.1f} s to bite")
    assert shared_in < BITES_WITHIN_S
    assert ask(as_bob, model_id)
    pieces = [
        c.choices[0].delta.content or ""
        for c in as_bob.chat.completions.create(
            model=model_id,
            max_tokens=8,
            stream=True,
            messages=[{"role": "user", "content": "Hi"}],
        )
        if c.choices
    ]
    assert "".join(pieces)

    # bob's key revoked: 401 within seconds, while his token still works.
    r = stack.call("DELETE", f"/api/v2/keys/{bobs_key['key_id']}", bob)
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    revoked_in = until(lambda: models_of(as_bob) is None, 30)
    print(f"revocation took {revoked_in:.1f} s to bite")
    assert revoked_in < BITES_WITHIN_S
    assert status(as_bob, model_id) == 401
    assert ask(stack.openai(bob), model_id)

    # Another origin's page gets no grant (Ray's own ingress answers `*` with credentials).
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    pre = httpx.options(f"{stack.openai_url}/chat/completions", headers=evil, timeout=10)
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    listed = httpx.get(
        f"{stack.openai_url}/models",
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {stack.token}"},
        timeout=10,
    )
    assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers

    # Back to private: removed access bites within seconds too.
    as_bobs_token = stack.openai(bob)
    r = stack.call("PATCH", f"/api/v2/serve/models/{key}", json={"access": "private"})
    assert r.status_code == 202
    unshared_in = until(lambda: models_of(as_bobs_token) == [], 30)
    print(f"unsharing took {unshared_in:.1f} s to bite")
    assert unshared_in < BITES_WITHIN_S
    assert status(as_bobs_token, model_id) == 404

    # bob disabled by the admin: his token stops at the endpoint within seconds as well.
    r = stack.call("PATCH", "/api/v2/users/bob", stack.admin, json={"disabled": True})
    assert r.status_code == 200
    disabled_in = until(lambda: models_of(as_bobs_token) is None, 30)
    print(f"disabling bob took {disabled_in:.1f} s to bite")
    assert disabled_in < BITES_WITHIN_S

    # Nothing was restarted on the way.
    assert stack.replica_pids(model_id) == pids
    events = [e["event_type"] for e in stack.model(key)["events"]]
    assert events[:2] == ["ACCESS_CHANGED", "ACCESS_CHANGED"]
    assert "APPLIED" not in events[:2] and stack.model(key)["model"]["state"] == "RUNNING"


def test_usage_totals_equal_what_the_answers_reported_streaming_too(
    stack: Stack, smol: tuple[str, str]
) -> None:
    """Every call is metered in the ingress and reaches argus's store within seconds; the
    totals equal the `usage` the answers carried. A stream whose client did not ask for
    usage is metered too, and its client gets no usage chunk."""
    _, model_id = smol
    pids = stack.settled_pids(model_id, 1)
    r = stack.call("POST", "/api/v2/keys", json={"name": "metered"})
    assert r.status_code == 201, r.text
    metered = r.json()
    client = stack.openai(metered["key"])

    def live() -> bool:  # `/v1/models` is not metered: it reaches no model
        try:
            return model_id in [m.id for m in client.models.list()]
        except openai.AuthenticationError:
            return False

    until(live, 30)
    prompt = completion = 0
    for question in ("Hi", "What is the capital of France?", "Name a colour."):
        reply = client.chat.completions.create(
            model=model_id, max_tokens=6, messages=[{"role": "user", "content": question}]
        )
        assert reply.usage is not None
        prompt, completion = (
            prompt + reply.usage.prompt_tokens,
            completion + reply.usage.completion_tokens,
        )
    chunks = list(
        client.chat.completions.create(
            model=model_id,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Hello"}],
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
    plain = list(
        stack.openai().chat.completions.create(  # alice's token, no include_usage
            model=model_id, max_tokens=5, stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
    )
    assert all(c.usage is None and c.choices for c in plain)  # no usage chunk for this client

    def by_key() -> dict[str, dict[str, int]]:
        got = stack.call("GET", "/api/v2/usage", params={"group_by": "key"}).json()
        return {i["key"]: i for i in got["items"]}

    stored_in = until(lambda: by_key().get(metered["key_id"], {}).get("requests") == 4, 30)
    print(f"usage stored {stored_in:.1f} s after the last call")
    row = by_key()[metered["key_id"]]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    token_id = stack.token.split("_")[1]  # argus_<token id>_<secret>
    until(lambda: token_id in by_key(), 30)
    assert by_key()[token_id]["completion_tokens"] >= 1  # the plain stream's, counted all the same
    text = stack.call("GET", "/metrics", stack.admin).text
    assert f'argus_tokens_total{{kind="completion",model="{model_id}",user="alice"}}' in text
    assert stack.replica_pids(model_id) == pids


def test_past_a_users_rate_limit_calls_get_429_with_retry_after(
    stack: Stack, smol: tuple[str, str]
) -> None:
    _, model_id = smol
    pids = stack.settled_pids(model_id, 1)
    r = stack.call("PATCH", "/api/v2/users/alice", stack.admin, json={"requests_per_minute": 2})
    assert r.status_code == 200, r.text
    try:
        refused: list[openai.RateLimitError] = []

        def limited() -> bool:
            try:
                ask(stack.openai(), model_id)
            except openai.RateLimitError as e:
                refused.append(e)
                return True
            return False

        bit_in = until(limited, 30)
        print(f"a rate limit took {bit_in:.1f} s to bite")
        error = refused[-1]
        assert error.code == "rate_limit_exceeded"
        assert 1 <= int(error.response.headers["retry-after"]) <= 60
        assert stack.openai(stack.admin).models.list()  # the admin has no limit
        ask(stack.openai(stack.admin), model_id)
    finally:
        r = stack.call(
            "PATCH", "/api/v2/users/alice", stack.admin, json={"requests_per_minute": None}
        )
        assert r.status_code == 200, r.text
    until(lambda: status(stack.openai(), model_id) == 200, 30)  # lifted within seconds
    assert stack.replica_pids(model_id) == pids
