"""A real argus on a free port, a reconciler over the fake ServeClient, and Chromium.

The server is uvicorn in a thread with the app built as in the integration tier; the
reconciler ticks every 0.2 s against `FakeServeClient`, so a page sees a model move
as a user would, and a test steps Serve (`fake.set_ready`, the nodes' free CPUs).
An OpenAI stand-in on another port answers the "try it" box.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from argus import accounts
from argus.api.deps import AppContext
from argus.cluster.serve_client import NodeResources
from argus.demo import DEMO_MODEL_DIRNAME
from argus.runtime.bootstrap import build_context, build_loop
from argus.runtime.loop import ControlLoop
from argus.web import create_app
from tests.conftest import make_model_folder, make_settings
from tests.fake_cluster import FakeServeClient
from tests.openai_stub import FakeOpenAI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ANSWER = "The capital of France is Paris."
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 420, "height": 900}

# A limit against hangs: the browser tier runs niced beside the end-to-end line, and a
# deleted model's page took over 15 s to say DELETED once while the line started its stack.
expect.set_options(timeout=30_000)


@dataclass
class LiveArgus:
    url: str
    ctx: AppContext
    fake: FakeServeClient
    reconciler: ControlLoop
    openai: FakeOpenAI

    def new_user(self, user_id: str, *, commands: bool = False) -> str:
        now = datetime.now(UTC)
        accounts.create_user(self.ctx.db, user_id, now)
        if commands:
            change = accounts.UserUpdate(allow_commands=True)
            accounts.update_user(self.ctx.db, user_id, change, now, self.ctx.serving.quotas)
        token: str = accounts.issue_token(self.ctx.db, user_id, now)["token"]
        return token

    def set_free_cpus(self, free: float) -> None:
        self.fake.nodes = [NodeResources("node-1", {"CPU": 16.0}, {"CPU": free})]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveArgus]:
    openai = FakeOpenAI(ANSWER)
    settings = make_settings(
        tmp_path_factory.mktemp("argus") / "data",
        ARGUS_RECONCILE_INTERVAL_S="0.2",
        ARGUS_SERVE_PORT=str(openai.port),
    )
    fake = FakeServeClient()
    ctx = build_context(settings, ray=fake)
    make_model_folder(settings.storage_root / "hf" / DEMO_MODEL_DIRNAME)
    reconciler = build_loop(settings, ctx.db, fake)
    ctx.status = reconciler.status
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx), log_level="warning", access_log=False, ws="none", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    reconciler.start()
    try:
        yield LiveArgus(f"http://127.0.0.1:{port}", ctx, fake, reconciler, openai)
    finally:
        reconciler.stop()
        server.should_exit = True
        thread.join(15)
        sock.close()
        openai.close()
        ctx.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium; "
            "install it with scripts/setup-debian.sh (or `make debian`)",
            pytrace=False,
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser, live: LiveArgus) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str, *, narrow: bool = False) -> Path:
    """Save the whole page to artifacts/screenshots/<name>.png (at ~420 px when narrow)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if narrow:
        page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        if narrow:
            page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    return path
