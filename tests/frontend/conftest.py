"""Browser tests: Debian's Chromium driven by Playwright against the live stack (uvicorn and
a real Celery worker on the test database). Screenshots of each page land in
test-artifacts/screenshots/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.bootstrap import REPO
from tests.factories import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

CHROMIUM = os.environ.get("LOUPE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
AXE = REPO / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
# A shop-floor screen.
VIEWPORT: ViewportSize = {"width": 1366, "height": 768}


# Module scope: Playwright's sync API runs an event loop in this thread while a module's tests
# run. Their own ORM calls are synchronous and safe, so Django's async guard is lifted for that
# time only; the rest of the suite keeps it, and the live server never gets the variable.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield from _launch(sync_playwright)


def _launch(sync_playwright: Any) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@dataclass
class Screen:
    """One person's browser tab, with what it saw go wrong."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical accessibility violations on the page (axe-core, WCAG 2 A/AA).
        The page's context must bypass CSP: axe is injected as a script."""
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate(
            "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
        )
        assert result["passes"], "axe checked nothing"
        return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.fixture
def open_screen(chromium: Browser, live: Any) -> Iterator[Any]:
    contexts = []

    def open_screen(user: Any, path: str = "", *, bypass_csp: bool = False) -> Screen:
        # bypass_csp: only for injecting axe-core; every other test runs under the page's CSP.
        context = chromium.new_context(viewport=VIEWPORT, base_url=live.base_url, bypass_csp=bypass_csp)
        contexts.append(context)
        page = context.new_page()
        screen = Screen(page)

        # Any alert() or confirm() means injected script ran (bad-inputs case 20).
        def on_dialog(dialog: Any) -> None:
            screen.dialogs.append(dialog.message)
            dialog.dismiss()

        def on_error(error: Any) -> None:
            screen.errors.append(str(error))

        page.on("dialog", on_dialog)
        page.on("pageerror", on_error)
        page.goto("/")
        page.fill("#username", user.username)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("header.topbar")
        if path:
            page.goto(f"/#/{path}")
        return screen

    yield open_screen
    for context in contexts:
        context.close()
