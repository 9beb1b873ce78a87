"""The Tasks pages in real Chromium: submit the demo task from the editor, watch it in the
list, follow its log live on its page, then serve its checkpoint from the prefilled
serving editor; and cancel a task. A screenshot of each page lands in
artifacts/screenshots/.

The live argus of conftest.py gets a task scheduler over `FakeJobClient`: the test
starts and finishes the Ray job, and writes the log and checkpoint where the task's
driver would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from argus.demo import DEMO_TASK_YAML
from argus.runtime.bootstrap import build_loop
from tests.browser.conftest import LiveArgus, screenshot
from tests.conftest import make_model_folder
from tests.fake_cluster import FakeJobClient

pytestmark = pytest.mark.browser

TASK_URL_RE = re.compile(r"/ui/tasks/(tsk_[0-9a-f]{16})$")


@pytest.fixture(scope="module")
def jobs(live: LiveArgus) -> FakeJobClient:
    """Let the live reconciler run tasks too, on the fake Serve client's node."""
    client = FakeJobClient(serve=live.fake)
    scheduler = build_loop(live.ctx.settings, live.ctx.db, live.fake, client).tasks
    live.reconciler.tasks = scheduler
    live.reconciler.status.jobs = scheduler
    return client


def log_in(page: Page, live: LiveArgus, token: str) -> None:
    page.goto(f"{live.url}/ui/login?next=/ui/tasks")
    page.fill("#token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page).to_have_url(f"{live.url}/ui/tasks")


def task_folder(live: LiveArgus, user: str, task_id: str) -> Path:
    return live.ctx.settings.storage_root / "users" / user / "tasks" / task_id


def submit_from_editor(page: Page, live: LiveArgus) -> str:
    page.click("main .page-head a:has-text('New task')")
    expect(page).to_have_url(f"{live.url}/ui/tasks/new")
    expect(page.locator("#spec")).to_have_value(DEMO_TASK_YAML)
    page.click(".spec-form button[type=submit]")
    expect(page).to_have_url(TASK_URL_RE)
    match = TASK_URL_RE.search(page.url)
    assert match
    return match.group(1)


def test_submit_watch_follow_the_log_and_serve_the_checkpoint(
    page: Page, live: LiveArgus, jobs: FakeJobClient
) -> None:
    token = live.new_user("tara", commands=True)
    log_in(page, live, token)
    expect(page.locator("nav a.current")).to_have_text("Tasks")
    expect(page.get_by_role("heading", name="No tasks yet")).to_be_visible()
    screenshot(page, "tasks-empty")

    # A bad spec first: the error sits under its line, the text stays as typed.
    page.click("main .page-head a:has-text('New task')")
    expect(page.locator("#spec")).to_have_value(DEMO_TASK_YAML)
    screenshot(page, "task-editor")
    bad = DEMO_TASK_YAML.replace("max_steps: 20", "max_steps: 0")
    page.fill("#spec", bad)
    page.click(".spec-form button[type=submit]")
    expect(page.locator('.field-error[data-field="max_steps"]')).to_contain_text(
        "must be at least 1, got 0"
    )
    expect(page.locator(".spec-line.has-error")).to_have_text(re.compile(r"max_steps: 0"))
    expect(page.locator("#spec")).to_have_value(bad)
    screenshot(page, "task-editor-error")

    page.click("nav a[href='/ui/tasks']")
    task_id = submit_from_editor(page, live)
    expect(page.locator(".alert-ok")).to_contain_text(f"Submitted sft-smol ({task_id})")
    # The reconciler submits it to (fake) Ray; the page follows by itself.
    expect(page.locator("#summary .badge")).to_have_text("SUBMITTED")
    job_id = f"argus-{task_id}"
    assert job_id in jobs.submitted

    # The list follows the task too.
    page.click("nav a[href='/ui/tasks']")
    row = page.locator(f"#row-{task_id}")
    expect(row.locator(".badge")).to_have_text("SUBMITTED")
    expect(row).to_contain_text("sft-smol")
    jobs.start(job_id)
    expect(row.locator(".badge")).to_have_text("RUNNING")
    screenshot(page, "tasks-list")
    screenshot(page, "tasks-list-narrow", narrow=True)

    # Its page: the log grows while the page is open.
    row.get_by_role("link", name="sft-smol").click()
    expect(page).to_have_url(f"{live.url}/ui/tasks/{task_id}")
    expect(page.locator("#summary .badge")).to_have_text("RUNNING")
    expect(page.locator("#job-status")).to_contain_text("RUNNING")
    expect(page.locator("#log-status")).to_have_text("Following the log…")
    log = task_folder(live, "tara", task_id) / "task.log"
    with log.open("ab") as f:
        f.write(b"argus-sft: step 1/20 loss 2.41\n")
    expect(page.locator("#task-log")).to_contain_text("step 1/20 loss 2.41")
    with log.open("ab") as f:
        f.write(b"argus-sft: step 2/20 loss 2.17\n")
    expect(page.locator("#task-log")).to_contain_text("step 2/20 loss 2.17")
    expect(page.locator("#serve-checkpoint")).to_have_count(0)
    screenshot(page, "task-running")

    # It succeeds with a checkpoint: the page shows the way to serve it.
    make_model_folder(task_folder(live, "tara", task_id) / "checkpoint")
    with log.open("ab") as f:
        f.write(b"argus-sft: done steps 20\n")
    jobs.finish(job_id)
    expect(page.locator("#summary .badge")).to_have_text("SUCCEEDED")
    expect(page.locator("#log-status")).to_have_text("The task has finished.")
    expect(page.locator("#task-log")).to_contain_text("done steps 20")
    expect(page.locator('#events [data-event="SUCCEEDED"]')).to_be_visible()
    serve = page.get_by_role("link", name="Serve this checkpoint")
    expect(serve).to_be_visible()
    screenshot(page, "task-succeeded")
    screenshot(page, "task-succeeded-narrow", narrow=True)

    serve.click()
    expect(page).to_have_url(f"{live.url}/ui/serving/new?from_task={task_id}")
    expect(page.get_by_role("heading", name="Serve a checkpoint")).to_be_visible()
    tag = task_id.removeprefix("tsk_")[:8]
    spec = page.locator("#spec")
    expect(spec).to_have_value(re.compile(rf"^model_id: sft-smol-{tag}$", re.M))
    expect(spec).to_have_value(
        re.compile(rf"^model_source: \$HOME/tasks/{task_id}/checkpoint$", re.M)
    )
    screenshot(page, "serve-checkpoint-editor")

    page.click(".spec-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/serving/mdl_[0-9a-f]{20}$"))
    expect(page.locator("#model-id")).to_have_text(re.compile(rf"^tara-\d{{12}}-sft-smol-{tag}$"))
    expect(page.locator("#resolved-spec")).to_contain_text(
        str(task_folder(live, "tara", task_id) / "checkpoint")
    )


def test_cancel_a_running_task_from_its_page(
    page: Page, live: LiveArgus, jobs: FakeJobClient
) -> None:
    token = live.new_user("uma", commands=True)
    log_in(page, live, token)
    task_id = submit_from_editor(page, live)
    job_id = f"argus-{task_id}"
    expect(page.locator("#summary .badge")).to_have_text("SUBMITTED")
    jobs.start(job_id)
    expect(page.locator("#summary .badge")).to_have_text("RUNNING")

    dialogs: list[str] = []

    def accept(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.once("dialog", accept)
    page.click("#task-actions button.danger")
    expect(page.locator(".alert-ok")).to_contain_text(f"Canceling sft-smol ({task_id})")
    assert dialogs and task_id in dialogs[0]
    # The scheduler stops the Ray job; the page follows to CANCELED and stops following.
    expect(page.locator("#summary .badge")).to_have_text("CANCELED")
    assert job_id in jobs.stop_calls
    expect(page.locator('#events [data-event="CANCEL_REQUESTED"]')).to_be_visible()
    expect(page.locator("#log-status")).to_have_text("The task has finished.")
    expect(page.locator("#task-actions")).to_have_count(0)
    screenshot(page, "task-canceled")
