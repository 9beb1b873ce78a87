"""The web UI once against the real stack: real Ray Serve LLM and vLLM behind the pages."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, WIDE
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_a_running_model_answers_from_its_page(stack: Stack, smol: tuple[str, str]) -> None:
    assert CHROMIUM.exists(), "Chromium is missing: run scripts/setup-debian.sh"
    key, model_id = smol
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=WIDE)
            page.goto(f"{stack.api_url}/ui/login")
            page.fill("#token", stack.token)
            page.click("form[action='/ui/login'] button[type=submit]")
            expect(page).to_have_url(f"{stack.api_url}/ui/serving")
            row = page.locator("tr[data-state]").filter(has_text=model_id)
            expect(row.locator(".badge")).to_have_text("RUNNING")
            expect(page.locator("body")).to_contain_text(stack.openai_url)
            page.goto(f"{stack.api_url}/ui/serving/{key}")
            expect(page.locator("#summary .badge")).to_have_text("RUNNING")
            page.fill("#try-message", "What is the capital of France?")
            page.click("#try-form button[type=submit]")
            # The box uses the model's own sampling defaults (temperature 0.2), so the
            # words vary; a real answer from vLLM, not an error, is what counts here.
            output = page.locator("#try-output")
            expect(output).to_have_class("try-output answer", timeout=120_000)
            assert output.inner_text().strip()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "real-model-try-it.png"), full_page=True)
        finally:
            browser.close()
