"""The web studio end to end: a real `pictor serve` on loopback and headless Chromium driven by Playwright.

Chromium is Debian's `chromium` package (`/usr/bin/chromium`, or `PICTOR_CHROMIUM`), never a browser that
Playwright downloads. Each test ends with a screenshot in `tests/artifacts/` (kept by CI, ignored by git), and
fails if the page threw an uncaught error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api.helpers import Server, start_server

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1366, "height": 820}  # a laptop screen


def chromium_path() -> str:
    path = os.environ.get("PICTOR_CHROMIUM", "/usr/bin/chromium")
    if not (Path(path).exists() or shutil.which(path)):
        pytest.fail(f"The studio tests need Chromium at {path} (Debian: apt-get install -y chromium; or set "
                    "PICTOR_CHROMIUM to another Chromium executable).", pytrace=False)
    return path


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("studio"))
    assert running.demo_key.startswith("pk-"), running.log()
    yield running
    metrics = httpx.get(f"{running.url}/metrics", timeout=10).text
    running.stop()
    assert 'status="5' not in metrics, "a request got a 5xx answer"
    assert "Traceback" not in running.log(), running.log()


@pytest.fixture(scope="session")
def api(studio_server: Server) -> Iterator[httpx.Client]:
    """The same server over plain HTTP with the demo key, to check what the studio did."""
    with httpx.Client(base_url=studio_server.url, headers={"authorization": f"Bearer {studio_server.demo_key}"},
                      timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, studio_server: Server, request):
    """A fresh browser tab on the studio, not signed in; its screenshot is saved when the test ends."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(studio_server.url + "/")
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"studio-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def signed_in(page, studio_server: Server):
    """The tab signed in with the demo key, on the studio view."""
    page.fill("#api-key", studio_server.demo_key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#view-studio:not([hidden])")
    page.wait_for_selector("#p-model option", state="attached")
    return page
