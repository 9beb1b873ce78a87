"""The web UI once against the real stack: real Ray Serve LLM and vLLM behind the pages."""

from __future__ import annotations

import re

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
            # The playground sends temperature 0 unless told otherwise: at the model's own
            # defaults the demo model once looped on "la femme"; at 0 it answers right.
            output = page.locator("#try-output")
            expect(output).to_have_class("try-output answer", timeout=120_000)
            assert "Paris" in output.inner_text()
            usage = page.locator("#try-usage").inner_text()
            assert re.fullmatch(
                r"\d+ prompt \+ [1-9]\d* completion tokens · temperature 0 · max tokens 128"
                r" · finished: (stop|length) · [\d.]+ s",
                usage,
            ), usage
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "real-model-try-it.png"), full_page=True)
        finally:
            browser.close()
