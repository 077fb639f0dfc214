"""Every page passes axe-core's WCAG 2 A/AA rules (no serious or critical violation) on a
1366x768 shop-floor screen, and can be worked from the keyboard."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import LiveStack
from tests.factories import make_project, make_user
from tests.frontend.conftest import VIEWPORT, Screen

pytestmark = pytest.mark.django_db(transaction=True)


def summary(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)" for v in violations]


def test_the_sign_in_page_is_accessible(live: LiveStack, chromium: Any) -> None:
    context = chromium.new_context(viewport=VIEWPORT, base_url=live.base_url, bypass_csp=True)
    try:
        screen = Screen(context.new_page())
        screen.page.goto("/")
        screen.page.wait_for_selector("#username")
        screen.shot("login")

        assert summary(screen.axe()) == []
        # The form is reachable and usable from the keyboard alone, in order.
        assert screen.page.evaluate("document.activeElement.id") == "username"
        screen.page.keyboard.press("Tab")
        assert screen.page.evaluate("document.activeElement.id") == "password"
    finally:
        context.close()


@pytest.mark.parametrize(
    ("role", "page"),
    [
        ("reviewer", "review"),
        ("annotator", "annotate"),
        ("manager", "training"),
        ("manager", "dashboard"),
        ("manager", "settings"),
        ("admin", "settings"),
    ],
)
def test_each_page_is_accessible_and_fits_the_shop_floor_screen(
    live: LiveStack, open_screen: Any, role: str, page: str
) -> None:
    project = make_project()
    user = make_user(project, role=role)
    screen = open_screen(user, page, bypass_csp=True)
    screen.page.wait_for_selector("#live-status[data-state=live]")
    screen.page.wait_for_timeout(500)  # the page's first data load

    assert summary(screen.axe()) == []
    # Nothing wider than the screen: no horizontal scrolling at 1366 px.
    assert screen.page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    # The first Tab lands on the skip link, which leads to the page's content.
    screen.page.keyboard.press("Tab")
    assert screen.page.evaluate("document.activeElement.textContent") == "Skip to content"
