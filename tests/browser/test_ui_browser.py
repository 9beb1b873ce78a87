"""The web UI in real Chromium: log in, deploy from the editor, watch, try, scale, delete;
the admin issues and revokes a token. A screenshot of each page lands in
artifacts/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from argus.demo import DEMO_SPEC_YAML
from tests.browser.conftest import ANSWER, LiveArgus, screenshot
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.browser

TOKEN_RE = re.compile(r"^argus_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")


def log_in(page: Page, live: LiveArgus, token: str) -> None:
    page.goto(f"{live.url}/ui/login")
    page.fill("#token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page).to_have_url(f"{live.url}/ui/serving")


def badge(page: Page, scope: str = "#summary") -> str:
    return page.locator(f"{scope} .badge").first.inner_text()


def test_login_is_required_and_a_bad_token_is_refused(page: Page, live: LiveArgus) -> None:
    token = live.new_user("erin")
    page.goto(f"{live.url}/ui/serving")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Fserving$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    page.fill("#token", "argus_0123456789ab_not-a-real-token")
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("invalid token")
    screenshot(page, "login-error")

    page.fill("#token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page).to_have_url(f"{live.url}/ui/serving")
    expect(page.get_by_role("heading", name="No models yet")).to_be_visible()
    expect(page.locator("nav a.current")).to_have_text("Serving")
    expect(page.get_by_role("link", name="Users & Tokens")).to_have_count(0)
    screenshot(page, "serving-empty")

    page.click("nav a[href='/ui']")
    expect(page.locator("nav a.current")).to_have_text("Overview")
    screenshot(page, "overview")

    page.click("form[action='/ui/logout'] button")
    expect(page).to_have_url(f"{live.url}/ui/login")
    page.goto(f"{live.url}/ui/serving")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_deploy_watch_try_scale_and_delete(page: Page, live: LiveArgus) -> None:
    live.set_free_cpus(0)  # no room yet: the model waits in QUEUED
    token = live.new_user("alice")
    log_in(page, live, token)

    page.click("main .page-head a:has-text('Deploy a model')")
    expect(page).to_have_url(f"{live.url}/ui/serving/new")
    expect(page.locator("#spec")).to_have_value(DEMO_SPEC_YAML)
    screenshot(page, "deploy-editor")

    # A bad spec: the error sits under its line, and the text stays as typed.
    bad = DEMO_SPEC_YAML.replace("num_replicas: 1", "num_replicas: 0")
    page.fill("#spec", bad)
    page.click(".spec-form button[type=submit]")
    error = page.locator('.field-error[data-field="num_replicas"]')
    expect(error).to_contain_text("must be at least 1, got 0")
    expect(page.locator(".spec-line.has-error")).to_have_text(re.compile(r"num_replicas: 0"))
    expect(page.locator("#spec")).to_have_value(bad)
    screenshot(page, "deploy-error")

    page.fill("#spec", DEMO_SPEC_YAML)
    page.click(".spec-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/serving/mdl_[0-9a-f]{20}$"))
    model_id = page.locator("#model-id").inner_text()
    assert re.fullmatch(r"alice-\d{12}-smol", model_id)
    expect(page.locator(".alert-ok")).to_contain_text(f"Accepted {model_id}")
    assert badge(page) == "QUEUED"
    expect(page.locator('#events [data-event="PENDING_RESOURCES"]')).to_be_visible()
    screenshot(page, "model-queued")

    # The page follows the model by itself: QUEUED -> DEPLOYING -> RUNNING.
    live.set_free_cpus(16)
    expect(page.locator("#summary .badge")).to_have_text("DEPLOYING")
    live.fake.set_ready(model_id)
    expect(page.locator("#summary .badge")).to_have_text("RUNNING")
    expect(page.locator("#replica-count")).to_have_text("1 / 1")
    expect(page.locator("#base-url")).to_have_text(re.compile(r"^http://127\.0\.0\.1:\d+/v1$"))
    expect(page.locator("#example-curl")).to_contain_text(f'"model": "{model_id}"')
    expect(page.locator("#example-python")).to_contain_text(f'model="{model_id}"')
    screenshot(page, "model-running")
    screenshot(page, "model-running-narrow", narrow=True)

    # Copy buttons put the text on the clipboard.
    page.click("button[data-copy-target='base-url']")
    expect(page.locator("button[data-copy-target='base-url']")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#base-url").inner_text()

    # The playground: the answer streams in, then its usage and the settings it used.
    page.fill("#try-system", "Answer in one sentence.")
    page.fill("#try-message", "What is the capital of France?")
    page.fill("#try-max-tokens", "32")
    page.click("#try-form button[type=submit]")
    expect(page.locator("#try-output")).to_have_text(ANSWER)
    expect(page.locator("#try-output")).to_have_class("try-output answer")
    expect(page.locator("#try-usage")).to_contain_text(
        "9 prompt + 6 completion tokens · temperature 0 · max tokens 32 · with a system prompt"
    )
    screenshot(page, "model-playground")
    sent = live.openai.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Answer in one sentence."}
    assert (sent["temperature"], sent["max_tokens"], sent["stream"]) == (0, 32, True)
    # A setting out of range is refused with the field's reason, nothing sent.
    # (the browser's own check of min/max is switched off: the server's is what counts)
    page.evaluate("document.getElementById('try-form').noValidate = true")
    page.fill("#try-temperature", "7")
    page.click("#try-form button[type=submit]")
    expect(page.locator("#try-output")).to_have_text("temperature: a number from 0 to 2")
    expect(page.locator("#try-output")).to_have_class("try-output failed")
    page.fill("#try-temperature", "0")

    # Scale to 2: still RUNNING, 1 of 2 ready, then 2 of 2.
    page.fill("#replicas-detail-" + page.url.rsplit("/", 1)[1], "2")
    page.click(".actions-card .scale-form button")
    expect(page.locator(".alert-ok")).to_contain_text(f"Scaling {model_id} to 2 replica(s).")
    expect(page.locator('#events [data-event="SCALE_APPLIED"]')).to_be_visible()
    expect(page.locator("#replica-count")).to_have_text("1 / 2")
    assert badge(page) == "RUNNING"
    live.fake.set_ready(model_id)
    expect(page.locator("#replica-count")).to_have_text("2 / 2")

    # The list shows it too, and reads on a narrow window.
    page.click("nav a[href='/ui/serving']")
    row = page.locator("tr[data-state]").filter(has_text=model_id)
    expect(row.locator(".badge")).to_have_text("RUNNING")
    expect(row).to_contain_text("2 / 2")
    screenshot(page, "serving-list")
    screenshot(page, "serving-list-narrow", narrow=True)

    # Delete, after saying yes to the confirmation.
    row.locator("a").first.click()
    dialogs: list[str] = []

    def accept(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.once("dialog", accept)
    page.click(".actions-card button.danger")
    expect(page.locator(".alert-ok")).to_contain_text(f"Deleting {model_id}")
    assert dialogs and model_id in dialogs[0]
    expect(page.locator("#summary .badge")).to_have_text("DELETED")
    expect(page.locator('#events [data-event="REMOVED"]')).to_be_visible()
    screenshot(page, "model-deleted")
    page.click("nav a[href='/ui/serving']")
    expect(page.get_by_role("heading", name="No models yet")).to_be_visible()


def test_the_admin_issues_a_token_once_and_revokes_it(page: Page, live: LiveArgus) -> None:
    log_in(page, live, ADMIN_TOKEN)
    page.click("nav >> text=Users & Tokens")
    expect(page).to_have_url(f"{live.url}/ui/admin/users")
    expect(page.locator("nav a.current")).to_have_text("Users & Tokens")

    page.fill("#new-user-id", "dave")
    page.click("form[action='/ui/admin/users'] button[type=submit]")
    expect(page.locator(".alert-ok")).to_contain_text("Created user dave")
    dave = page.locator("#user-dave")
    expect(dave).to_be_visible()

    dave.get_by_role("button", name="Issue a token").click()
    token = page.locator("#new-token").inner_text()
    assert TOKEN_RE.match(token), token
    expect(page.locator("#issued-token")).to_contain_text("the only time it is shown")
    expect(page).to_have_url(f"{live.url}/ui/admin/users")  # a reload will not post again
    copy = page.get_by_role("button", name="Copy token to the clipboard")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot(page, "admin-token-issued")

    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    token_id = token.split("_")[1]
    row = page.locator(f"#token-{token_id}")
    expect(row).to_contain_text("active")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".alert-ok")).to_contain_text(f"Revoked token {token_id} of dave")
    expect(page.locator(f"#token-{token_id}")).to_contain_text("revoked")
    screenshot(page, "admin-users")
    screenshot(page, "admin-users-narrow", narrow=True)

    page.click("nav >> text=Cluster")
    expect(page.locator("nav a.current")).to_have_text("Cluster")
    expect(page.locator("#cpu-total")).to_have_text(re.compile(r"^\d+ / 16$"))
    expect(page.locator("#app-status")).to_be_visible()
    screenshot(page, "admin-cluster")

    page.click("form[action='/ui/logout'] button")
    page.fill("#token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("invalid token")
