"""What fuzzing found (issue 16) and the review's input findings: each bad input gets a clear
4xx, fast, in a small body, and nothing is stored.

One test per finding, named after it. Each sends what a careless client or a hostile user
would, through the real app in-process (real SQLite, the fake cluster).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import spec_yaml
from tests.integration.conftest import Api

pytestmark = pytest.mark.integration

SMALL = 16 * 1024  # every refusal's body stays under this
# The bound the issue sets, on the CPU time the request costs this process (app and client
# share it): wall time counted the other tests' Ray clusters when make test ran them beside
# this one (3.3 s wall for ~1.2 s of work). Under coverage the parser runs ~8x slower
# (0.15 s vs 1.2 s).
FAST_S = 2.0


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice", commands=True)


def stored_models(api: Api) -> int:
    return int(api.client.get("/api/v2/serve/models", headers=api.headers()).json()["total"])


def stored_tasks(api: Api) -> int:
    return int(api.client.get("/api/v2/tasks", headers=api.headers()).json()["total"])


@contextmanager
def refused(
    api: Api, status: int | tuple[int, ...] = 400
) -> Iterator[Callable[[httpx.Response], None]]:
    """Check each response: the status, a body that says why and stays small, in time;
    and afterwards that nothing was stored."""
    before = (stored_models(api), stored_tasks(api))
    expected = (status,) if isinstance(status, int) else status

    def check(r: httpx.Response) -> None:
        assert r.status_code in expected, (r.status_code, r.text[:500])
        assert len(r.content) < SMALL, len(r.content)
        if r.headers.get("content-type", "").startswith("application/json"):
            assert r.json()["error"]["message"]

    yield check
    assert (stored_models(api), stored_tasks(api)) == before


def post_yaml(api: Api, token: str, path: str, body: str | bytes) -> httpx.Response:
    started = time.process_time()
    r = api.client.post(
        path,
        content=body.encode() if isinstance(body, str) else body,
        headers={**api.headers(token), "Content-Type": "application/yaml"},
    )
    spent = time.process_time() - started
    assert spent < FAST_S, f"{path} took {spent:.2f} s of CPU"
    return r


SPEC_PATHS = ("/api/v2/serve/models", "/api/v2/tasks")


# 1. Unhashable YAML keys ----------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        "? [a]\n: 1\n",
        "{[a, b]: 1}\n",
        "? {a: 1}\n: 1\n",
        "? !!set {a}\n: 1\n",
        "model_id: a\nengine_kwargs:\n  ? [a]\n  : 1\n",
        "name: a\nenv:\n  {[x]: y}\n",
    ],
)
def test_1_unhashable_keys_are_a_400(api: Api, alice: str, body: str) -> None:
    with refused(api) as check:
        for path in SPEC_PATHS:
            r = post_yaml(api, alice, path, body)
            check(r)
            assert "field name must be a plain word" in r.json()["error"]["message"]


# 2. Deep nesting ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    ["[" * 20_000, "{a: " * 7_000, "".join("  " * i + "-\n" for i in range(120))],
    ids=["brackets", "flow-maps", "block-list"],
)
def test_2_deep_nesting_is_a_400(api: Api, alice: str, body: str) -> None:
    with refused(api) as check:
        for path in SPEC_PATHS:
            r = post_yaml(api, alice, path, body)
            check(r)
            assert "nested deeper than" in r.json()["error"]["message"]


# 3. Huge numbers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SPEC_PATHS[0], spec_yaml(num_replicas="9" * 5000)),
        (SPEC_PATHS[0], spec_yaml(num_replicas="0x" + "f" * 5000)),
        (SPEC_PATHS[0], spec_yaml() + "engine_kwargs:\n  seed: " + "1" * 5000 + "\n"),
        (SPEC_PATHS[1], "name: a\nworkload: sft\nlearning_rate: 1" + "0" * 400 + "\n"),
        (SPEC_PATHS[1], "name: a\nworkload: command\nentrypoint: x\ncpus_per_node: " + "7" * 4500),
    ],
)
def test_3_huge_numbers_are_a_400(api: Api, alice: str, path: str, body: str) -> None:
    with refused(api) as check:
        r = post_yaml(api, alice, path, body)
        check(r)
        assert "a number longer than" in r.json()["error"]["message"]


def test_3_a_number_over_a_bound_is_quoted_short(api: Api, alice: str) -> None:
    with refused(api, 422) as check:
        r = post_yaml(api, alice, SPEC_PATHS[0], spec_yaml(num_replicas="9" * 39))
        check(r)
        assert "9" * 39 not in r.text or len(r.text) < 2000


# 4. Aliases -----------------------------------------------------------------------------
def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nmodel_id: *a{levels - 1}\n"


@pytest.mark.parametrize("levels", [6, 8, 9])
def test_4_an_alias_bomb_is_a_small_fast_400_with_flat_memory(
    api: Api, alice: str, levels: int
) -> None:
    body = alias_bomb(levels)
    assert len(body) < 1000
    tracemalloc.start()
    try:
        with refused(api) as check:
            for path in SPEC_PATHS:
                r = post_yaml(api, alice, path, body)
                check(r)
                assert "anchors and aliases" in r.json()["error"]["message"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


# 5. File-system errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (SPEC_PATHS[0], spec_yaml(source="$HOME/" + "x" * 300), 422),
        (
            SPEC_PATHS[1],
            "name: a\nworkload: sft\nmodel_source: $HOME/common/hf/tiny\n"
            "train_file: $HOME/" + "y" * 300 + "\n",
            422,
        ),
        (
            SPEC_PATHS[1],
            "name: a\nworkload: command\nentrypoint: x\nworking_dir: $HOME/" + "z" * 300 + "\n",
            422,
        ),
        (SPEC_PATHS[0], 'model_id: a\nmodel_source: "$HOME/x\\ud800"\n', 400),
        (SPEC_PATHS[1], 'name: a\nworkload: command\nentrypoint: x\nworking_dir: "\\ud800"\n', 400),
    ],
)
def test_5_paths_the_file_system_cannot_take(
    api: Api, alice: str, path: str, body: str, status: int
) -> None:
    with refused(api, status) as check:
        check(post_yaml(api, alice, path, body))


# 6. A lone surrogate in a field name ----------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SPEC_PATHS[0], spec_yaml() + 'engine_kwargs: {"\\ud800": 1}\n'),
        (SPEC_PATHS[1], 'name: a\nworkload: command\nentrypoint: x\nenv: {"\\udfff": y}\n'),
    ],
)
def test_6_a_lone_surrogate_in_a_field_name(api: Api, alice: str, path: str, body: str) -> None:
    with refused(api) as check:
        r = post_yaml(api, alice, path, body)
        check(r)
        assert "lone surrogate" in r.json()["error"]["message"]


def test_6_the_pages_answer_a_lone_surrogate_too(api: Api, alice: str) -> None:
    api.client.cookies.set("argus_token", alice, path="/ui")
    page = api.client.get("/ui/serving/new")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    for path in ("/ui/serving/new", "/ui/tasks/new"):
        r = api.client.post(
            path, data={"csrf": csrf, "spec": spec_yaml() + 'engine_kwargs: {"\\ud800": 1}\n'}
        )
        assert r.status_code == 400 and "lone surrogate" in r.text
    # a JSON body with one: the answer encodes, and names nothing it cannot print
    r = api.client.post(
        "/api/v2/users",
        content=b'{"user_id": "\\ud800"}',
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "user_id"


# 7. PATCH: nesting and size ----------------------------------------------------------------
def test_7_patch_refuses_nesting_and_size_before_parsing(api: Api, alice: str) -> None:
    key = api.post_spec(alice, spec_yaml()).json()["model_key"]
    url = f"/api/v2/serve/models/{key}"
    h = {**api.headers(alice), "Content-Type": "application/json"}
    r = api.client.patch(
        url, content=b'{"num_replicas": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", headers=h
    )
    assert r.status_code == 413  # 100 KB: over the route's 4 KiB, refused unparsed
    r = api.client.patch(url, content=b"[" * 1000 + b"]" * 1000, headers=h)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]["message"]
    r = api.client.patch(url, content=b'{"num_replicas": 1' + b"0" * 4500 + b"}", headers=h)
    assert r.status_code in (400, 413)
    r = api.client.patch(url, content=b'{"num_replicas": 2}' + b" " * (10 * 1024 * 1024), headers=h)
    assert r.status_code == 413
    assert api.client.get(url, headers=api.headers(alice)).json()["model"]["generation"] == 1


# 8. Offsets past SQLite's integers --------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v2/serve/models", "/api/v2/tasks"])
@pytest.mark.parametrize("offset", ["9223372036854775808", "1" + "0" * 30, "-1"])
def test_8_offsets_out_of_range_are_a_422(api: Api, alice: str, path: str, offset: str) -> None:
    r = api.client.get(path, params={"offset": offset}, headers=api.headers(alice))
    assert r.status_code == 422 and len(r.content) < SMALL
    assert r.json()["error"]["details"][0]["field"] == "offset"
    ok = api.client.get(path, params={"offset": 10**9}, headers=api.headers(alice))
    assert ok.status_code == 200 and ok.json()["items"] == []


# 9. The UI's task log offset ------------------------------------------------------------
def test_9_the_task_log_offset_past_any_file(api: Api, alice: str) -> None:
    r = post_yaml(api, alice, "/api/v2/tasks", "name: a\nworkload: command\nentrypoint: x\n")
    task_id = r.json()["task_id"]
    log = api.storage_root / "users" / "alice" / "tasks" / task_id / "task.log"
    log.parent.mkdir(parents=True)
    log.write_text("hello\n")
    api.client.cookies.set("argus_token", alice, path="/ui")
    for offset in (2**40, 3):
        r = api.client.get(f"/ui/tasks/{task_id}/log", params={"offset": offset})
        assert r.status_code == 200
    assert r.json()["text"] == "lo\n"
    for offset in (2**63, 2**40 + 1, 10**30):
        r = api.client.get(f"/ui/tasks/{task_id}/log", params={"offset": offset})
        assert r.status_code == 422 and len(r.content) < SMALL


# 10. An Origin that is not a URL --------------------------------------------------------
@pytest.mark.parametrize("origin", ["http://[", "https://[x]:99999", "http://[::1", "::"])
def test_10_an_origin_that_is_not_a_url_is_refused_not_a_500(
    api: Api, alice: str, origin: str
) -> None:
    api.client.cookies.set("argus_token", alice, path="/ui")
    for path, data in (
        ("/ui/serving/new", {"csrf": "x", "spec": "a: 1"}),
        ("/ui/tasks/new", {"csrf": "x", "spec": "a: 1"}),
        ("/ui/login", {"token": alice}),
        ("/ui/logout", {"csrf": "x"}),
    ):
        r = api.client.post(path, data=data, headers={"Origin": origin}, follow_redirects=False)
        assert r.status_code == 403, (path, r.status_code)


# 11. Ids with a trailing newline --------------------------------------------------------
def test_11_ids_with_a_trailing_newline_are_refused(api: Api, alice: str) -> None:
    r = api.client.post("/api/v2/users", json={"user_id": "carol\n"}, headers=api.headers())
    assert r.status_code == 422
    with refused(api, 422) as check:
        check(post_yaml(api, alice, SPEC_PATHS[0], spec_yaml(model_id='"smolnl\\n"')))
        check(
            post_yaml(api, alice, SPEC_PATHS[1], 'name: "x\\n"\nworkload: command\nentrypoint: x\n')
        )
        check(
            post_yaml(
                api,
                alice,
                SPEC_PATHS[1],
                'name: x\nworkload: command\nentrypoint: x\nenv: {"A\\n": b}\n',
            )
        )
    users = api.client.get("/api/v2/users", headers=api.headers()).json()["items"]
    assert "carol\n" not in [u["user_id"] for u in users]


# 12. The editor and many unknown keys ---------------------------------------------------
def test_12_many_distinct_unknown_keys_are_reported_short_and_fast(api: Api, alice: str) -> None:
    body = spec_yaml() + "".join(f"k{i}: 1\n" for i in range(3500))
    assert 30_000 < len(body) < 32 * 1024
    with refused(api, 422) as check:
        r = post_yaml(api, alice, SPEC_PATHS[0], body)
        check(r)
        assert "more errors not shown" in r.text
    api.client.cookies.set("argus_token", alice, path="/ui")
    csrf = api.client.get("/ui/serving/new").text.split('name="csrf" value="')[1].split('"')[0]
    started = time.process_time()
    page = api.client.post("/ui/serving/new", data={"csrf": csrf, "spec": body})
    assert time.process_time() - started < FAST_S
    assert page.status_code == 422
    assert len(page.content) < len(body) + 48 * 1024  # the spec echoed once, errors around it
    big = api.client.post("/ui/serving/new", data={"csrf": csrf, "spec": body * 2})
    assert big.status_code == 413 and len(big.content) < SMALL


# 13. A Content-Length that is not a number ----------------------------------------------
@pytest.mark.parametrize("value", ["²", "1e3", "-5", " 12x", "9" * 40])
def test_13_a_content_length_that_is_not_a_number(api: Api, alice: str, value: str) -> None:
    from argus.api.limits import declared_length

    with pytest.raises(ValueError):
        declared_length(value)


def test_13_the_body_cap_answers_before_reading_and_before_auth(api: Api) -> None:
    """A declared 100 MiB body is refused at once, without a token being checked."""
    app = api.client.app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import anyio

    for headers in (
        [(b"content-length", str(100 * 1024 * 1024).encode())],
        [(b"content-length", "²".encode())],
    ):
        sent.clear()
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/v2/serve/models",
            "raw_path": b"/api/v2/serve/models",
            "query_string": b"",
            "headers": [(b"content-type", b"application/yaml"), *headers],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 1),
            "root_path": "",
        }
        anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] in (400, 413)
        body = json.loads(sent[1]["body"])
        assert body["error"]["code"] in ("bad_request", "payload_too_large")


def test_13_a_streamed_body_is_cut_at_the_cap(api: Api, alice: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(400):
            yield b"#" * 1024

    r = api.client.post(
        "/api/v2/users",
        content=chunks(),
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
