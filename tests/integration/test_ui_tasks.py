"""The Tasks pages in-process: list, editor, a task's page, its live log, cancel, and
"Serve this checkpoint" into the serving editor.

Tasks move through the reconciler's tick against the fake Serve and job clients, as
in test_task_scheduler.py; a test writes the task's log and checkpoint where the
task's driver would.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from argus.demo import DEMO_MODEL_DIRNAME, DEMO_TASK_YAML
from argus.ids import MODEL_ID_SUFFIX_RE
from argus.runtime.bootstrap import build_loop
from argus.runtime.loop import ControlLoop
from argus.serving.control import checkpoint_spec_yaml
from argus.store import tasks as store
from argus.training.control import checkpoint_model_id
from argus.ui.routes_tasks import whole_chars
from tests.conftest import ADMIN_TOKEN, make_model_folder
from tests.fake_cluster import FakeJobClient, FakeServeClient
from tests.integration.conftest import Api
from tests.integration.test_ui import flash_of, get, login, page_csrf, post

pytestmark = pytest.mark.integration

TASK_ID_RE = r"tsk_[0-9a-f]{16}"


# -- helpers -------------------------------------------------------------------------
@pytest.fixture
def api(api: Api) -> Api:
    make_model_folder(api.storage_root / "hf" / DEMO_MODEL_DIRNAME)
    return api


@pytest.fixture
def alice(api: Api) -> str:
    return api.new_user("alice", commands=True)


@pytest.fixture
def bob(api: Api) -> str:
    return api.new_user("bob", commands=True)


@pytest.fixture
def jobs() -> FakeJobClient:
    return FakeJobClient(serve=FakeServeClient())


@pytest.fixture
def rec(api: Api, jobs: FakeJobClient) -> ControlLoop:
    assert jobs.serve is not None
    r = build_loop(api.settings, api.ctx.db, jobs.serve, jobs)
    r.clock = lambda: datetime.now(UTC)
    api.ctx.status = r.status
    return r


def submit_api(api: Api, token: str, text: str = DEMO_TASK_YAML) -> str:
    r = api.client.post(
        "/api/v2/tasks",
        content=text.encode(),
        headers={**api.headers(token), "Content-Type": "application/yaml"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


def task_json(api: Api, task_id: str) -> dict[str, Any]:
    r = api.client.get(f"/api/v2/tasks/{task_id}", headers=api.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def task_dir(api: Api, user: str, task_id: str) -> Path:
    return api.storage_root / "users" / user / "tasks" / task_id


def running(api: Api, token: str, rec: ControlLoop, jobs: FakeJobClient) -> str:
    task_id = submit_api(api, token)
    rec.tick()
    jobs.start(f"argus-{task_id}")
    rec.tick()
    assert task_json(api, task_id)["task"]["state"] == "RUNNING"
    return task_id


def succeeded(
    api: Api, token: str, rec: ControlLoop, jobs: FakeJobClient, *, checkpoint: bool = True
) -> str:
    task_id = running(api, token, rec, jobs)
    user = task_json(api, task_id)["task"]["user_id"]
    if checkpoint:  # what the sft workload leaves behind
        make_model_folder(task_dir(api, user, task_id) / "checkpoint")
    jobs.finish(f"argus-{task_id}")
    rec.tick()
    assert task_json(api, task_id)["task"]["state"] == "SUCCEEDED"
    return task_id


def editor_text(page: str) -> str:
    area = re.search(r'<textarea id="spec"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert area, "no editor on the page"
    return html.unescape(area.group(1))


def log_chunk(api: Api, task_id: str, offset: int) -> dict[str, Any]:
    r = get(api, f"/ui/tasks/{task_id}/log?offset={offset}")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


# -- the list and the sidebar ------------------------------------------------------------
def test_tasks_is_in_the_sidebar_and_every_page_needs_a_session(api: Api, alice: str) -> None:
    task_id = submit_api(api, alice)
    for path in ("/ui/tasks", "/ui/tasks/new", f"/ui/tasks/{task_id}", f"/ui/tasks/{task_id}/log"):
        r = get(api, path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next="), path
    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": "x"})
    assert r.headers["location"].startswith("/ui/login")
    assert task_json(api, task_id)["task"]["state"] == "QUEUED"
    login(api, alice)
    assert '<a href="/ui/tasks">Tasks</a>' in get(api, "/ui/serving").text
    page = get(api, "/ui/tasks").text
    assert '<a href="/ui/tasks" class="current" aria-current="page">Tasks</a>' in page


def test_the_list_shows_each_task_with_its_state_and_refreshes_while_one_is_active(
    api: Api, alice: str, bob: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    queued = submit_api(api, alice)
    login(api, alice)
    page = get(api, "/ui/tasks").text
    row = re.search(rf'<tr id="row-{queued}" data-state="QUEUED">.*?</tr>', page, re.S)
    assert row, page
    assert f'<a href="/ui/tasks/{queued}">sft-smol</a>' in row.group(0)
    assert f"<code>{queued}</code>" in row.group(0)
    assert '<td data-label="Workload">sft</td>' in row.group(0)
    assert '<span class="badge badge-queued">QUEUED</span>' in row.group(0)
    assert "2026-11-28 12:00:00 UTC" in row.group(0)
    assert f'action="/ui/tasks/{queued}/cancel"' in row.group(0)
    assert 'data-refresh="2000"' in page
    assert 'id="tasks" data-live' in page

    rec.tick()
    jobs.start(f"argus-{queued}")
    rec.tick()
    jobs.finish(f"argus-{queued}")
    rec.tick()
    page = get(api, "/ui/tasks").text
    assert '<span class="badge badge-succeeded">SUCCEEDED</span>' in page
    assert "data-refresh" not in page  # nothing left to watch
    assert f"/ui/tasks/{queued}/cancel" not in page

    login(api, bob)
    page = get(api, "/ui/tasks").text
    assert "No tasks yet" in page
    assert queued not in page
    login(api, ADMIN_TOKEN)
    page = get(api, "/ui/tasks").text
    assert queued in page and "owner alice" in page


# -- the editor ----------------------------------------------------------------------------
def test_the_editor_is_prefilled_with_the_demo_task(api: Api, alice: str) -> None:
    login(api, alice)
    r = get(api, "/ui/tasks/new")
    assert r.status_code == 200
    assert editor_text(r.text) == DEMO_TASK_YAML
    assert 'action="/ui/tasks/new"' in r.text
    assert 'class="current" aria-current="page">Tasks</a>' in r.text


def test_a_good_spec_submits_the_task_through_control_and_opens_its_page(
    api: Api, alice: str
) -> None:
    login(api, alice)
    typed = DEMO_TASK_YAML.replace("\n", "\r\n")
    r = post(api, "/ui/tasks/new", {"csrf": page_csrf(api, "/ui/tasks/new"), "spec": typed})
    assert r.status_code == 303, r.text
    task_id = r.headers["location"].removeprefix("/ui/tasks/")
    assert re.fullmatch(TASK_ID_RE, task_id)
    assert flash_of(api, r) == (
        f"Submitted sft-smol ({task_id}): it is QUEUED; this page follows it."
    )
    with api.ctx.db.read() as s:
        stored = store.get_task(s, task_id)
        assert stored is not None
        assert (stored.user_id, stored.spec_yaml) == ("alice", DEMO_TASK_YAML)  # no CRs
    got = task_json(api, task_id)  # the API sees the same task
    assert got["task"]["state"] == "QUEUED" and got["task"]["name"] == "sft-smol"

    page = get(api, f"/ui/tasks/{task_id}").text
    assert f'<code id="task-id">{task_id}</code>' in page
    assert '<span class="badge badge-queued">QUEUED</span>' in page
    assert 'data-event="CREATED"' in page
    assert "model_source: " + str(api.storage_root / "hf" / DEMO_MODEL_DIRNAME) in page
    assert "max_steps: 20" in page and "learning_rate: 5.0e-05" in page  # defaults filled
    assert 'data-refresh="2000"' in page
    assert '<p class="small muted" id="job-status">Ray job: not observed yet</p>' in page
    assert f"/ui/serving/new?from_task={task_id}" not in page


def test_a_bad_spec_is_shown_again_with_each_error_under_its_line(api: Api, alice: str) -> None:
    login(api, alice)
    csrf = page_csrf(api, "/ui/tasks/new")
    typed = DEMO_TASK_YAML.replace("max_steps: 20", "max_steps: 0") + (
        "env:\n  SEED: 1\n# <b>not bold</b>\n"
    )
    r = post(api, "/ui/tasks/new", {"csrf": csrf, "spec": typed})
    assert r.status_code == 422
    assert editor_text(r.text) == typed
    assert "<b>not bold</b>" not in r.text
    api_error = api.client.post(
        "/api/v2/tasks",
        content=typed.encode(),
        headers={**api.headers(alice), "Content-Type": "application/yaml"},
    ).json()["error"]
    by_field = {d["field"]: d["message"] for d in api_error["details"]}
    assert set(by_field) == {"max_steps", "env.SEED"}
    for number, text, field in (
        (7, "max_steps: 0", "max_steps"),
        (9, "  SEED: 1", "env.SEED"),
    ):
        line = re.search(
            rf'<div class="spec-line has-error"><span class="ln">{number}</span>'
            rf"<code>{text}</code></div>\s*"
            rf'<div class="field-error" data-field="{field}" data-line="{number}">(.*?)</div>',
            r.text,
            re.S,
        )
        assert line, (field, r.text)
        assert html.escape(by_field[field], quote=False) in line.group(1)

    # A path outside the user's roots: 403, under its line. A missing field: listed.
    r = post(
        api,
        "/ui/tasks/new",
        {"csrf": csrf, "spec": DEMO_TASK_YAML.replace("$HOME/common/datasets", "/etc")},
    )
    assert r.status_code == 403
    assert re.search(
        r"<code>train_file: /etc/demo-chat/train.jsonl</code></div>\s*"
        r'<div class="field-error" data-field="train_file"',
        r.text,
    )
    r = post(api, "/ui/tasks/new", {"csrf": csrf, "spec": "name: x\nworkload: sft\n"})
    assert r.status_code == 422
    assert '<li class="field-error" data-field="train_file"><code>train_file</code>: ' in r.text
    r = post(api, "/ui/tasks/new", {"csrf": csrf, "spec": "name: [x\n"})
    assert r.status_code == 400
    assert "not valid YAML" in r.text
    r = post(api, "/ui/tasks/new", {"csrf": csrf, "spec": "x" * (32 * 1024 + 1)})
    assert r.status_code == 413
    assert api.client.get("/api/v2/tasks", headers=api.headers()).json()["total"] == 0


def test_the_editor_refuses_a_post_without_csrf_or_from_another_site(api: Api, alice: str) -> None:
    login(api, alice)
    for data in ({}, {"csrf": "0" * 32}):
        r = post(api, "/ui/tasks/new", {**data, "spec": DEMO_TASK_YAML})
        assert r.status_code == 403
        assert "security token" in r.text
    csrf = page_csrf(api, "/ui/tasks/new")
    r = post(
        api, "/ui/tasks/new", {"csrf": csrf, "spec": DEMO_TASK_YAML}, origin="http://evil.example"
    )
    assert r.status_code == 403
    assert api.client.get("/api/v2/tasks", headers=api.headers()).json()["total"] == 0


def test_submit_again_opens_the_editor_with_the_tasks_spec(api: Api, alice: str, bob: str) -> None:
    spec = DEMO_TASK_YAML.replace("max_steps: 20", "max_steps: 3")
    task_id = submit_api(api, alice, spec)
    login(api, alice)
    page = get(api, f"/ui/tasks/{task_id}").text
    assert f'href="/ui/tasks/new?again={task_id}"' in page
    r = get(api, f"/ui/tasks/new?again={task_id}")
    assert editor_text(r.text) == spec
    login(api, bob)
    assert get(api, f"/ui/tasks/new?again={task_id}").status_code == 404


# -- a task's page and its log ---------------------------------------------------------------
def test_the_page_shows_the_job_and_the_log_and_the_log_endpoint_gives_what_is_new(
    api: Api, alice: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    task_id = running(api, alice, rec, jobs)
    log = task_dir(api, "alice", task_id) / "task.log"
    first = b"task starting on node-1\nstep 1/20 loss 2.50 <script>\n"
    log.write_bytes(first)
    login(api, alice)
    page = get(api, f"/ui/tasks/{task_id}").text
    assert '<span class="badge badge-running">RUNNING</span>' in page
    assert re.search(
        r'id="job-status">Ray job: <strong>RUNNING</strong> · <span class="pre-wrap">'
        r"Job is currently running\.</span></p>",
        page,
    )
    assert f"<code>argus-{task_id}</code>" in page
    pre = re.search(
        r'<pre class="log" id="task-log"([^>]*)><code id="task-log-text">(.*?)</code>', page, re.S
    )
    assert pre, page
    assert f'data-log-url="/ui/tasks/{task_id}/log"' in pre.group(1)
    assert f'data-offset="{len(first)}"' in pre.group(1)
    assert "data-follow" in pre.group(1)
    assert html.unescape(pre.group(2)) == first.decode()
    assert "<script>" not in pre.group(2)
    assert 'data-event="STARTED"' in page
    assert f'action="/ui/tasks/{task_id}/cancel"' in page

    assert log_chunk(api, task_id, 0) == {
        "text": first.decode(),
        "offset": len(first),
        "done": False,
    }
    assert log_chunk(api, task_id, len(first)) == {"text": "", "offset": len(first), "done": False}
    # A character cut in two by the writer comes whole with the next poll.
    with log.open("ab") as f:
        f.write("step 2/20 loss 2.10 ✓".encode()[:-1])
    got = log_chunk(api, task_id, len(first))
    assert got["text"] == "step 2/20 loss 2.10 "
    with log.open("ab") as f:
        f.write("✓".encode()[-1:] + b"\n")
    got = log_chunk(api, task_id, got["offset"])
    assert got == {"text": "✓\n", "offset": log.stat().st_size, "done": False}
    r = get(api, f"/ui/tasks/{task_id}/log?offset=-1")
    assert r.status_code == 422

    with log.open("ab") as f:
        f.write(b"done steps 20\n")
    jobs.finish(f"argus-{task_id}")
    rec.tick()
    end = log_chunk(api, task_id, got["offset"])
    assert end == {"text": "done steps 20\n", "offset": log.stat().st_size, "done": True}
    page = get(api, f"/ui/tasks/{task_id}").text
    assert '<span class="badge badge-succeeded">SUCCEEDED</span>' in page
    assert "data-refresh" not in page  # the task finished: the page stops following it
    assert "data-follow" not in page
    assert "<strong>SUCCEEDED</strong> (exit code 0)" in page
    assert f'action="/ui/tasks/{task_id}/cancel"' not in page


def test_a_failed_task_shows_its_error_summary(
    api: Api, alice: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    task_id = running(api, alice, rec, jobs)
    jobs.finish(f"argus-{task_id}", exit_code=1, message="ValueError: train.jsonl line 7")
    rec.tick()
    login(api, alice)
    page = get(api, f"/ui/tasks/{task_id}").text
    assert '<span class="badge badge-failed">FAILED</span>' in page
    summary = re.search(
        r'<div class="alert alert-error" role="alert" id="error-summary">(.*?)</div>', page, re.S
    )
    assert summary and "ValueError: train.jsonl line 7" in summary.group(1)
    assert log_chunk(api, task_id, 0) == {"text": "", "offset": 0, "done": True}


# -- cancel ------------------------------------------------------------------------------
def test_cancel_needs_csrf_and_says_so_when_the_task_has_finished(api: Api, alice: str) -> None:
    task_id = submit_api(api, alice)
    login(api, alice)
    for data in ({}, {"csrf": "0" * 32}):
        r = post(api, f"/ui/tasks/{task_id}/cancel", data)
        assert r.status_code == 403
        assert "security token" in r.text
    csrf = page_csrf(api, f"/ui/tasks/{task_id}")
    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": csrf}, origin="http://evil.example")
    assert r.status_code == 403
    assert task_json(api, task_id)["task"]["state"] == "QUEUED"

    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": csrf})
    assert r.headers["location"] == f"/ui/tasks/{task_id}"
    assert flash_of(api, r) == f"Canceled sft-smol ({task_id})."
    assert task_json(api, task_id)["task"]["state"] == "CANCELED"
    page = get(api, f"/ui/tasks/{task_id}").text
    assert '<span class="badge badge-canceled">CANCELED</span>' in page
    assert 'data-event="CANCELED"' in page

    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": csrf, "back": "list"})
    assert r.headers["location"] == "/ui/tasks"
    assert flash_of(api, r) == (
        f"Could not cancel sft-smol: task {task_id} is already CANCELED; there is nothing to cancel"
    )


def test_cancel_a_running_task_stops_its_job(
    api: Api, alice: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    task_id = running(api, alice, rec, jobs)
    login(api, alice)
    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": page_csrf(api, "/ui/tasks")})
    assert flash_of(api, r) == f"Canceling sft-smol ({task_id}): its Ray job is being stopped."
    page = get(api, f"/ui/tasks/{task_id}").text
    assert 'id="cancel-note"' in page
    assert f'action="/ui/tasks/{task_id}/cancel"' not in page  # asked once
    rec.tick()
    rec.tick()
    assert jobs.stop_calls == [f"argus-{task_id}"]
    assert task_json(api, task_id)["task"]["state"] == "CANCELED"


# -- another user's task, the admin --------------------------------------------------------
def test_another_users_task_is_a_404_everywhere_and_the_admin_sees_it(
    api: Api, alice: str, bob: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    task_id = succeeded(api, alice, rec, jobs)
    login(api, bob)
    csrf = page_csrf(api, "/ui/tasks")
    for path in (f"/ui/tasks/{task_id}", f"/ui/serving/new?from_task={task_id}"):
        r = get(api, path)
        assert r.status_code == 404, path
        assert "Task not found" in r.text
        assert "sft-smol" not in r.text and "checkpoint" not in r.text
    r = get(api, f"/ui/tasks/{task_id}/log")
    assert (r.status_code, r.json()) == (404, {"error": "no such task of yours"})
    r = post(api, f"/ui/tasks/{task_id}/cancel", {"csrf": csrf})
    assert r.status_code == 404

    login(api, ADMIN_TOKEN)
    page = get(api, f"/ui/tasks/{task_id}").text
    assert '<span class="label">Owner</span> alice' in page
    assert "/ui/serving/new?from_task=" not in page  # the checkpoint is in alice's home
    assert "only its owner, alice, can serve it" in page
    assert get(api, f"/ui/serving/new?from_task={task_id}").status_code == 404
    assert log_chunk(api, task_id, 0)["done"] is True


# -- serve this checkpoint --------------------------------------------------------------------
def test_serve_this_checkpoint_opens_the_serving_editor_prefilled(
    api: Api, alice: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    task_id = succeeded(api, alice, rec, jobs)
    login(api, alice)
    page = get(api, f"/ui/tasks/{task_id}").text
    link = f'id="serve-checkpoint" href="/ui/serving/new?from_task={task_id}">'
    assert link + "Serve this checkpoint</a>" in page
    assert f'<code id="checkpoint-source">$HOME/tasks/{task_id}/checkpoint</code>' in page

    r = get(api, f"/ui/serving/new?from_task={task_id}")
    assert r.status_code == 200
    assert "<h1>Serve a checkpoint</h1>" in r.text
    assert f'href="/ui/tasks/{task_id}">sft-smol</a>' in r.text
    text = editor_text(r.text)
    tag = task_id.removeprefix("tsk_")[:8]
    assert f"model_id: sft-smol-{tag}\n" in text
    assert f"model_source: $HOME/tasks/{task_id}/checkpoint\n" in text
    assert 'action="/ui/serving/new"' in r.text

    # Deploying it as prefilled works: the checkpoint is a model folder in alice's home.
    r = post(api, "/ui/serving/new", {"csrf": page_csrf(api), "spec": text})
    assert r.status_code == 303, r.text
    key = r.headers["location"].removeprefix("/ui/serving/")
    model = api.client.get(f"/api/v2/serve/models/{key}", headers=api.headers()).json()["model"]
    assert model["model_id"] == f"alice-202611281200-sft-smol-{tag}"
    assert model["model_source"] == str(task_dir(api, "alice", task_id) / "checkpoint")


def test_no_serve_button_without_a_checkpoint_and_the_editor_says_why(
    api: Api, alice: str, rec: ControlLoop, jobs: FakeJobClient
) -> None:
    done = succeeded(api, alice, rec, jobs, checkpoint=False)
    active = running(api, alice, rec, jobs)
    login(api, alice)
    for task_id, state in ((done, "SUCCEEDED"), (active, "RUNNING")):
        assert "Serve this checkpoint" not in get(api, f"/ui/tasks/{task_id}").text
        r = get(api, f"/ui/serving/new?from_task={task_id}")
        assert r.status_code == 409
        assert "No checkpoint to serve" in r.text
        assert f"is {state} and has no checkpoint at $HOME/tasks/{task_id}/checkpoint" in r.text
    assert get(api, "/ui/serving/new?from_task=tsk_0000000000000000").status_code == 404
    assert get(api, "/ui/serving/new?from_task=../../etc").status_code == 404


# -- pure helpers ------------------------------------------------------------------------------
def test_checkpoint_model_id_follows_the_model_id_rule() -> None:
    assert checkpoint_model_id("sft-smol", "tsk_3f9a2c41d0b7e655") == "sft-smol-3f9a2c41"
    long = checkpoint_model_id("a" * 64, "tsk_3f9a2c41d0b7e655")
    assert len(long) == 64 and long.endswith("-3f9a2c41")
    for name in ("1.e", "x", "A_b.c-d"):
        assert MODEL_ID_SUFFIX_RE.fullmatch(checkpoint_model_id(name, "tsk_00ff00ff00ff00ff"))
    # A name and tag that YAML would read as a number stay a string in the spec.
    suffix = checkpoint_model_id("1.e", "tsk_1234567800000000")
    spec = yaml.safe_load(checkpoint_spec_yaml("1.e", "tsk_1234567800000000", suffix))
    assert spec["model_id"] == "1.e-12345678"
    assert spec["model_source"] == "$HOME/tasks/tsk_1234567800000000/checkpoint"


def test_whole_chars_holds_back_a_cut_character() -> None:
    text = "a✓é😀".encode()
    assert whole_chars(text) == text
    assert whole_chars(b"") == b""
    for cut in range(1, 4):
        assert whole_chars("x😀".encode()[:-cut]) == b"x"
    assert whole_chars("x✓".encode()[:-1]) == b"x"
    assert whole_chars(b"ab\xff") == b"ab\xff"  # never UTF-8: shown now, as a replacement
    assert whole_chars(b"\x80\x80\x80\x80\x80") == b"\x80\x80\x80\x80\x80"
